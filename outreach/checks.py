"""System checks of the delivery settings (docs/channels.md). ``manage.py deploy`` fails on
a warning in production, so a brand cannot go live with sign-in codes going nowhere."""

from django.conf import settings
from django.core.checks import Error, Warning, register

from members.models import Notification

from .routing import DEFAULT_SMS_TEMPLATES, sms_template

# Settings each provider cannot sign a request without.
REQUIRED = {
    "aliyun": ("OUTREACH_ALIYUN", {"access_key_id": "ALIYUN_SMS_ACCESS_KEY_ID",
                                   "access_key_secret": "ALIYUN_SMS_ACCESS_KEY_SECRET",
                                   "sign_name": "ALIYUN_SMS_SIGN_NAME"}),
    "tencent": ("OUTREACH_TENCENT", {"secret_id": "TENCENT_SMS_SECRET_ID", "secret_key": "TENCENT_SMS_SECRET_KEY",
                                     "sdk_app_id": "TENCENT_SMS_SDK_APP_ID", "sign_name": "TENCENT_SMS_SIGN_NAME"}),
}  # fmt: skip
KNOWN = {"aliyun", "tencent", "log"}


@register()
def sms_settings(app_configs, **kwargs):
    problems = []
    providers = list(settings.OUTREACH_SMS_PROVIDERS)
    for name in providers:
        if name not in KNOWN:
            problems.append(
                Error(f"OUTREACH_SMS_PROVIDERS names {name!r}, not one of aliyun, tencent, log.", id="outreach.E001")
            )
        elif name in REQUIRED:
            setting, variables = REQUIRED[name]
            missing = [env for key, env in variables.items() if not getattr(settings, setting).get(key)]
            if missing:
                problems.append(
                    Error(
                        f"The {name} SMS provider is on but {', '.join(missing)} is not set.",
                        hint="Set them from the provider console, or drop the provider from OUTREACH_SMS_PROVIDERS.",
                        id="outreach.E002",
                    )
                )
    if not getattr(settings, "PRODUCTION", False):
        return problems
    real = [name for name in providers if name in REQUIRED]
    if not real:
        problems.append(
            Warning(
                "No SMS provider is configured (OUTREACH_SMS_PROVIDERS is "
                f"{','.join(providers) or 'empty'}): in production the log provider sends nothing, so members "
                "cannot get a sign-in code by SMS and SMS notices fall back to the next channel.",
                hint="Set OUTREACH_SMS_PROVIDERS=aliyun,tencent (one or both) and their ALIYUN_SMS_* / TENCENT_SMS_* "
                "settings.",
                id="outreach.W001",
            )
        )
    code = Notification.Kind.ONE_TIME_CODE
    placeholder = DEFAULT_SMS_TEMPLATES[code]
    template = sms_template(code) or {}
    for name in real:
        if not template.get(name) or template.get(name) == placeholder.get(name):
            problems.append(
                Warning(
                    f"No approved {name} template for the sign-in code: the provider will refuse every code.",
                    hint='Set OUTREACH_SMS_TEMPLATES=\'{"one_time_code": {"' + name + '": "<template code>", '
                    '"params": ["code"]}, ...}\' (docs/channels.md).',
                    id="outreach.W002",
                )
            )
    wechat = settings.OUTREACH_WECHAT_TEMPLATES and settings.OUTREACH_WECHAT.get("app_id")
    if wechat and settings.CACHES["default"]["BACKEND"].endswith("LocMemCache"):
        problems.append(
            Warning(
                "WeChat messages are on but the cache is per process: every web and worker process "
                "fetches its own access token; each fetch replaces the last one (valid five more minutes, then "
                "error 40001) and counts against the app's daily quota.",
                hint="Set CACHE_URL=redis://HOST:6379/2.",
                id="outreach.W003",
            )
        )
    return problems
