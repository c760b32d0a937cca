"""The delivery settings checks: a production deploy without an SMS provider fails loudly."""

import pytest

from config.startup import delivery_problems
from outreach.checks import sms_settings

ALIYUN = {"access_key_id": "LTAI", "access_key_secret": "s3cret", "sign_name": "Brand", "region": "cn-hangzhou"}


def ids(settings):
    return sorted(check.id for check in sms_settings(None))


@pytest.fixture
def production(settings):
    settings.PRODUCTION = True
    settings.OUTREACH_SMS_TEMPLATES = {}
    settings.OUTREACH_WECHAT_TEMPLATES = {}
    return settings


def test_development_with_the_log_provider_is_fine(settings):
    settings.PRODUCTION = False
    settings.OUTREACH_SMS_PROVIDERS = ["log"]
    assert ids(settings) == []


def test_production_without_an_sms_provider_warns_and_deploy_fails_on_it(production):
    production.OUTREACH_SMS_PROVIDERS = ["log"]
    [check] = sms_settings(None)
    assert check.id == "outreach.W001" and "sign-in code" in check.msg


def test_a_provider_without_its_keys_is_an_error_that_stops_the_start(production, capsys):
    production.OUTREACH_SMS_PROVIDERS = ["aliyun"]
    production.OUTREACH_ALIYUN = {**ALIYUN, "access_key_secret": ""}
    assert "outreach.E002" in ids(production)
    problems = delivery_problems()
    assert any("ALIYUN_SMS_ACCESS_KEY_SECRET" in p for p in problems)


def test_the_placeholder_code_template_is_a_warning_printed_at_start(production, capsys):
    production.OUTREACH_SMS_PROVIDERS = ["aliyun"]
    production.OUTREACH_ALIYUN = ALIYUN
    assert ids(production) == ["outreach.W002"]
    assert delivery_problems() == []  # it starts ...
    assert "outreach.W002" in capsys.readouterr().err  # ... and says why codes will fail
    production.OUTREACH_SMS_TEMPLATES = {"one_time_code": {"aliyun": "SMS_4812", "params": ["code"]}}
    assert ids(production) == []


def test_an_unknown_provider_name_is_an_error(settings):
    settings.OUTREACH_SMS_PROVIDERS = ["aliyn"]
    assert ids(settings) == ["outreach.E001"]


def test_wechat_with_a_per_process_cache_warns(production):
    production.OUTREACH_SMS_PROVIDERS = ["aliyun"]
    production.OUTREACH_ALIYUN = ALIYUN
    production.OUTREACH_SMS_TEMPLATES = {"one_time_code": {"aliyun": "SMS_4812", "params": ["code"]}}
    production.OUTREACH_WECHAT = {"app_id": "wx1", "app_secret": "x", "endpoint": "http://x", "state": "formal"}
    production.OUTREACH_WECHAT_TEMPLATES = {"expiry_warning": {"template_id": "T", "fields": {}}}
    production.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert ids(production) == ["outreach.W003"]
