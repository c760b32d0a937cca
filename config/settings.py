"""One settings module. Every deployment knob comes from an environment variable.

Development defaults need no server: SQLite in ./var and kombu's filesystem transport.
`DJANGO_ENV=production` refuses to start without a real secret key and allowed hosts,
and turns on the HTTPS-only settings that `manage.py check --deploy` asks for.
"""

import datetime as dt
import ipaddress
import json
from pathlib import Path

import dj_database_url
from corsheaders.defaults import default_headers as default_cors_headers
from django.core.exceptions import ImproperlyConfigured
from django.templatetags.static import static
from django.utils.translation import gettext_lazy as _

from .env import env, env_bool, env_int, env_list

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env("LOYALTY_VAR_DIR", str(BASE_DIR / "var")))

DJANGO_ENV = env("DJANGO_ENV", "development")
if DJANGO_ENV not in ("development", "production"):
    raise ImproperlyConfigured(f"DJANGO_ENV must be development or production, not {DJANGO_ENV!r}.")
PRODUCTION = DJANGO_ENV == "production"

_DEV_SECRET = "dev-only-insecure-key-do-not-use-in-production"
SECRET_KEY = env("DJANGO_SECRET_KEY", "" if PRODUCTION else _DEV_SECRET)
if PRODUCTION and (len(SECRET_KEY) < 50 or SECRET_KEY == _DEV_SECRET or SECRET_KEY.startswith("django-insecure")):
    raise ImproperlyConfigured(
        "DJANGO_ENV=production needs DJANGO_SECRET_KEY set to a random string of at least 50 characters, "
        'e.g. python -c "import secrets; print(secrets.token_urlsafe(64))".'
    )

DEBUG = env_bool("DJANGO_DEBUG", not PRODUCTION)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DJANGO_DEBUG must be off when DJANGO_ENV=production.")

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "" if PRODUCTION else "localhost,127.0.0.1,[::1],testserver")
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("DJANGO_ENV=production needs DJANGO_ALLOWED_HOSTS, e.g. members.example.com.")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "core",
    # The admin's theme (django-unfold, settings in UNFOLD below): before the admin, whose
    # templates it replaces, and before import_export, whose pages it styles. The basic config:
    # admin.site stays our LoyaltyAdminSite (core.admin_site), an UnfoldAdminSite.
    "unfold.apps.BasicAppConfig",
    "unfold.contrib.import_export",
    # Content stored per language (tier, benefit, rule, reward, store names; docs/tiers.md):
    # before the admin, as django-modeltranslation asks.
    "modeltranslation",
    # Django's admin with the two-factor step (core.admin_site); admin.site is that site.
    "core.apps.LoyaltyAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "corsheaders",
    "django_celery_beat",
    "import_export",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "members",
    "loyalty",
    "rewards",
    "api",
    "center",
    "engagement",
    "operations",
    "console",
    "programme",
    "outreach",
    "webhooks",
    "bulk",
    "foresight",
]

MIDDLEWARE = [
    # First: every response (health ones too) carries the request id, every log line has it.
    "config.logging.RequestIdMiddleware",
    # Before SecurityMiddleware and CommonMiddleware: answers /healthz and /readyz before
    # the host check and the https redirect (config.health).
    "config.health.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Right after SecurityMiddleware, as whitenoise asks: static files without a web server.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    # Before the session and auth middleware: their database errors are answered 503 too.
    "config.middleware.DatabaseUnavailableMiddleware",
    "config.middleware.ApiErrorShapeMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    # A member's language switch on the member pages is kept for their notices (members.language).
    "members.language.MemberLanguageMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as axes asks: turns a locked-out admin sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
DATABASE_URL = env("DATABASE_URL", "")
if PRODUCTION and not DATABASE_URL.startswith(("postgres://", "postgresql://")):
    raise ImproperlyConfigured("DJANGO_ENV=production needs DATABASE_URL=postgres://USER:PASSWORD@HOST:5432/NAME.")
if not DATABASE_URL:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASE_URL = f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
DATABASE_CONN_MAX_AGE = env_int("DATABASE_CONN_MAX_AGE", 0)
# A persistent connection is checked before its first use in each request or task: after a
# database restart an idle worker's stale connection is replaced instead of answering 500.
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=DATABASE_CONN_MAX_AGE, conn_health_checks=DATABASE_CONN_MAX_AGE > 0
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default runs web, worker and beat on one file: WAL lets readers go on
    # while one writer works, and IMMEDIATE transactions take the write lock up front,
    # which stands in for SELECT ... FOR UPDATE (a no-op on SQLite).
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ATOMIC_REQUESTS = False  # services own their transactions

# --- Auth -----------------------------------------------------------------------------
# The lockout backend refuses a locked-out admin sign-in before any password is checked
# (core.lockout); it authenticates no one itself.
AUTHENTICATION_BACKENDS = ["core.lockout.AdminLockoutBackend", "django.contrib.auth.backends.ModelBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Language and time ----------------------------------------------------------------
LANGUAGE_CODE = env("DJANGO_LANGUAGE_CODE", "zh-hans")
LANGUAGES = [("zh-hans", _("Simplified Chinese")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
# Content per language (django-modeltranslation, each app's translation.py): a ``name_en`` and
# a ``name_zh_hans`` column beside ``name``; reading ``name`` gives the active language's,
# falling back to the other when it is empty. Fixed here, not from LANGUAGE_CODE: the
# columns are in the migrations.
MODELTRANSLATION_DEFAULT_LANGUAGE = "zh-hans"
MODELTRANSLATION_LANGUAGES = ("zh-hans", "en")
MODELTRANSLATION_FALLBACK_LANGUAGES = ("zh-hans", "en")
TIME_ZONE = env("DJANGO_TIME_ZONE", "Asia/Shanghai")
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(env("DJANGO_STATIC_ROOT", str(VAR_DIR / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]
# Static files are served by the app itself (whitenoise), compressed and with hashed
# names so they can be cached for ever; `manage.py collectstatic` writes them
# (docs/deploy.md). With DEBUG on, they are served from the apps' folders as they are
# edited (no collectstatic needed); the tests run on those settings too.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "config.static.StaticFilesStorage"
    },
}
if DEBUG:
    # whitenoise warns at every start when the folder collectstatic writes is missing.
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Uploads (reward images). The web server serves MEDIA_ROOT at MEDIA_URL; in development
# ``django.conf.urls.static.static(MEDIA_URL, document_root=MEDIA_ROOT)`` in the root URLs.
MEDIA_URL = env("DJANGO_MEDIA_URL", "media/")
MEDIA_ROOT = Path(env("DJANGO_MEDIA_ROOT", str(VAR_DIR / "media")))

# --- Security (production) ------------------------------------------------------------
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", PRODUCTION)
# Load balancers probe over plain http (config.health answers these first anyway).
SECURE_REDIRECT_EXEMPT = [r"^healthz/?$", r"^readyz/?$"]
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = PRODUCTION
SECURE_HSTS_PRELOAD = PRODUCTION
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# --- Client address and proxies (core.client_ip; docs/api.md) --------------------------
# Every throttle and lockout counts per client address: the connection's peer, unless it
# is one of these proxies (addresses or networks, comma-separated), whose X-Forwarded-For
# is then read from the right past our own proxies. Or a count: the number of proxies
# every request passes through (only when the app cannot be reached around them).
# Off by default: X-Forwarded-For and X-Real-IP from anyone else are ignored.
LOYALTY_TRUSTED_PROXIES = env_list("LOYALTY_TRUSTED_PROXIES")
for _proxy in LOYALTY_TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"LOYALTY_TRUSTED_PROXIES: {_proxy!r} is not an address or network (e.g. 10.0.0.0/8,127.0.0.1)."
        ) from None
LOYALTY_TRUSTED_PROXY_COUNT = env_int("LOYALTY_TRUSTED_PROXY_COUNT", 0)
if LOYALTY_TRUSTED_PROXY_COUNT < 0 or (LOYALTY_TRUSTED_PROXY_COUNT and LOYALTY_TRUSTED_PROXIES):
    raise ImproperlyConfigured(
        "Set LOYALTY_TRUSTED_PROXIES (the proxies' addresses) or LOYALTY_TRUSTED_PROXY_COUNT (a positive count), "
        "not both."
    )
# X-Forwarded-Proto from the proxy tells Django the request came over HTTPS. On by
# default once a proxy is named; the proxy must set the header on every request.
if env_bool("DJANGO_BEHIND_PROXY", bool(LOYALTY_TRUSTED_PROXIES or LOYALTY_TRUSTED_PROXY_COUNT)):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Admin sign-in: lockout (django-axes) and two-factor (django-otp); docs/roles.md -----
# Failed admin sign-ins are counted per username and, separately, per client address:
# after LOYALTY_ADMIN_LOGIN_FAILURES of either, that username (from anywhere) or that
# address (for any username) is locked for LOYALTY_ADMIN_LOCKOUT_MINUTES.
AXES_FAILURE_LIMIT = env_int("LOYALTY_ADMIN_LOGIN_FAILURES", 5)
AXES_COOLOFF_TIME = dt.timedelta(minutes=env_int("LOYALTY_ADMIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_CLIENT_IP_CALLABLE = "core.lockout.lockout_address"
AXES_HANDLER = "core.lockout.AdminOnlyHandler"
AXES_ONLY_ADMIN_SITE = True
AXES_RESET_ON_SUCCESS = True
# Tries during a lockout do not push its end further back, so the page can say when.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "core.lockout.lockout_response"
AXES_VERBOSE = False
# Roles (group names, comma-separated) that must use two-factor sign-in to open the
# admin; superusers with them. Brand admins in production; nobody by default otherwise.
LOYALTY_ADMIN_2FA_REQUIRED_GROUPS = env_list("LOYALTY_ADMIN_2FA_REQUIRED_GROUPS", "Brand admin" if PRODUCTION else "")
# The name authenticator apps show next to the code.
OTP_TOTP_ISSUER = env("LOYALTY_ADMIN_2FA_ISSUER", "Loyalty admin")

# --- Import/export (django-import-export) -----------------------------------------------
# Exported cells that start with = + - @ are escaped, so a member who names themselves
# "=HYPERLINK(...)" cannot run a formula in the spreadsheet of the staff who export.
IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT = True

# --- REST framework -------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.authentication.BearerTokenAuthentication",
        "api.authentication.StoreKeyAuthentication",
        "api.authentication.TwoFactorSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # Per client address (core.client_ip) for sign-in and one-time codes, per member for
    # redemptions (api.throttles). NUM_PROXIES stays unset: our throttles never read it.
    "DEFAULT_THROTTLE_RATES": {
        "sign_in": env("API_THROTTLE_SIGN_IN", "20/minute"),
        "otp_send": env("API_THROTTLE_OTP_SEND", "5/minute"),
        "redeem": env("API_THROTTLE_REDEEM", "30/minute"),
        "staff_username": env("API_THROTTLE_STAFF_USERNAME", "10/hour"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Loyalty API",
    "DESCRIPTION": "Members, points, tiers, rewards and coupons for mini-programs, tills and shop systems. "
    "Walk-through with curl: docs/api.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI (/api/docs/swagger/): its scripts are served from our own static files
    # (swagger-ui-dist 5.17.14 in static/vendor/swagger-ui), so it works without a CDN.
    "SWAGGER_UI_DIST": env("API_SWAGGER_UI_DIST", "/" + STATIC_URL + "vendor/swagger-ui"),
    "SWAGGER_UI_FAVICON_HREF": env("API_SWAGGER_UI_FAVICON", "/" + STATIC_URL + "vendor/swagger-ui/favicon-32x32.png"),
}
# Token lifetimes of the REST API (minutes / days).
API_ACCESS_TOKEN_LIFETIME = dt.timedelta(minutes=env_int("API_ACCESS_TOKEN_MINUTES", 30))
API_REFRESH_TOKEN_LIFETIME = dt.timedelta(days=env_int("API_REFRESH_TOKEN_DAYS", 30))
API_STAFF_TOKEN_LIFETIME = dt.timedelta(days=env_int("API_STAFF_TOKEN_DAYS", 7))
# The mini-program's origin(s) that may call the API from a browser context, comma-separated.
CORS_ALLOWED_ORIGINS = env_list("API_CORS_ALLOWED_ORIGINS")
CORS_URLS_REGEX = r"^/api/.*$"
CORS_ALLOW_HEADERS = (*default_cors_headers, "idempotency-key")
# Mini-program sign-in: members.miniprogram.FakeAdapter (development) or .WeChatAdapter.
LOYALTY_MINIPROGRAM_ADAPTER = env(
    "LOYALTY_MINIPROGRAM_ADAPTER",
    "members.miniprogram.WeChatAdapter" if PRODUCTION else "members.miniprogram.FakeAdapter",
)
WECHAT_APP_ID = env("WECHAT_APP_ID", "")
WECHAT_APP_SECRET = env("WECHAT_APP_SECRET", "")
# Shared cache (throttle counters, the WeChat access token): redis://... in production so
# every web process counts together; a per-process memory cache otherwise.
CACHE_URL = env("CACHE_URL", "")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
    if CACHE_URL.startswith(("redis://", "rediss://"))
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}

# --- Celery ---------------------------------------------------------------------------
# Production and CI: redis://... or amqp://...; the default needs no server.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", "" if PRODUCTION else "filesystem://")
if PRODUCTION and not CELERY_BROKER_URL.startswith(("redis://", "rediss://", "amqp://", "amqps://")):
    raise ImproperlyConfigured("DJANGO_ENV=production needs CELERY_BROKER_URL=redis://HOST:6379/0 or amqp://...")
if CELERY_BROKER_URL == "filesystem://":
    _queue_dir = VAR_DIR / "celery-queue"
    for _folder in (_queue_dir, VAR_DIR / "celery-processed", VAR_DIR / "celery-control"):
        _folder.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(VAR_DIR / "celery-processed"),
        # kombu 5.7 keeps its exchange table here; left unset it writes ./control.
        "control_folder": str(VAR_DIR / "celery-control"),
        "store_processed": False,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # With late acks a task stays unacknowledged while it runs; Redis hands it to another
    # worker after this many seconds (and a worker killed with its task gets it back after
    # as long). Every job task's hard time limit (core.jobs.JOB_OPTIONS, 9 min; chunk
    # tasks 3 min) and the longest retry countdown (300 s) stay under it. The long jobs
    # are chunk tasks of about a second (docs/jobs.md). The member import's task runs
    # longer: a copy Redis hands out meanwhile finds the import's lock and ends.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 600),
        # How often a worker looks for tasks whose worker died: every interval x throttle
        # seconds (kombu's 10 x 10 by default); the fault tests set 1 x 1.
        "unacked_restore_interval": env_int("CELERY_UNACKED_RESTORE_INTERVAL", 10),
        "unacked_restore_throttle": env_int("CELERY_UNACKED_RESTORE_THROTTLE", 10),
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 300)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 360)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Workers on a shared broker can be kept apart by queue (the end-to-end test does this).
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_TASK_DEFAULT_QUEUE", "celery")
# Queues by kind of work, so a bulk import never holds back the expiry or the till's
# notices: `celery -A config worker -Q ledger`, `-Q contact`, `-Q bulk` (one or more
# workers each; `make run` has one worker on all of them and the default queue). A
# chunked job's chunk tasks follow their dispatcher's queue. A new task joins the list
# of its kind: ledger (points, tiers, benefits, coupons), contact (notices, journeys,
# broadcasts), bulk (imports, exports, segment and lifecycle refreshes).
CELERY_TASK_ROUTES = {
    **{
        name: {"queue": "ledger"}
        for name in (
            "loyalty.release_matured_points",
            "loyalty.expire_due_points",
            "loyalty.evaluate_tiers",
            "loyalty.issue_birthday_benefits",
            "loyalty.job_chunk",
            "rewards.issue_birthday_coupons",
            "rewards.issue_monthly_benefits",
            "rewards.expire_coupons",
            "rewards.job_chunk",
            "engagement.reward_referrals",
            "operations.watch_jobs",
        )
    },
    **{
        name: {"queue": "contact"}
        for name in (
            "members.send_notifications",
            "loyalty.send_expiry_notices",
            "engagement.run_journeys",
            "engagement.run_journey",
        )
    },
    **{
        name: {"queue": "bulk"}
        for name in (
            "members.check_import",
            "members.run_import",
            "members.refresh_lifecycle",
            "operations.refresh_auto_tags",
        )
    },
}
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)

# --- Loyalty rules --------------------------------------------------------------------
# Points and growth earned per yuan of the part of an order paid with money.
LOYALTY_POINTS_PER_YUAN = env_int("LOYALTY_POINTS_PER_YUAN", 1)
LOYALTY_GROWTH_PER_YUAN = env_int("LOYALTY_GROWTH_PER_YUAN", 1)
# Order lines in these categories never earn (gift cards), comma-separated.
LOYALTY_NON_EARNING_CATEGORIES = env_list("LOYALTY_NON_EARNING_CATEGORIES", "gift_card,礼品卡")
# Which currencies a tier's earn multiplier applies to; growth qualifies tiers, so
# multiplying it by tier would feed back on itself.
LOYALTY_TIER_MULTIPLIER_CURRENCIES = env_list("LOYALTY_TIER_MULTIPLIER_CURRENCIES", "points")
# An order's points stay pending for its return window (days after the order).
LOYALTY_PENDING_DAYS = env_int("LOYALTY_PENDING_DAYS", 7)
# Expiry policy per currency: "rolling:N" (N months after earning), "calendar:N"
# (31 December of the Nth calendar year after the year of earning) or "never".
LOYALTY_POINTS_EXPIRY = env("LOYALTY_POINTS_EXPIRY", "rolling:12")
LOYALTY_GROWTH_EXPIRY = env("LOYALTY_GROWTH_EXPIRY", "rolling:12")
# Tiers: a tier can only go down at its review date, this many months after it started;
# with soft landing on, by at most one step. The qualification window is the growth
# expiry: rolling:12 is a rolling 12-month window, calendar:0 the calendar year.
LOYALTY_TIER_REVIEW_MONTHS = env_int("LOYALTY_TIER_REVIEW_MONTHS", 12)
LOYALTY_TIER_SOFT_LANDING = env_bool("LOYALTY_TIER_SOFT_LANDING", True)
# A refund that takes back growth reviews the tier at once (down to what the growth left
# still earns, unless staff pinned it); off: the tier only falls at its review date.
LOYALTY_TIER_REEVALUATE_ON_REFUND = env_bool("LOYALTY_TIER_REEVALUATE_ON_REFUND", True)
# A refund shortfall (points the member had spent) is a debt. Points given back always pay
# it first; with this on, new earns and awards pay it too as they become available. On by
# default: otherwise a member keeps spending new points while the debt waits for a
# reversal that may never come, i.e. the refunded purchase's points were free.
LOYALTY_SHORTFALL_SETTLE_FROM_EARNS = env_bool("LOYALTY_SHORTFALL_SETTLE_FROM_EARNS", True)
# Members are told about points that expire within this many days, once per lot.
LOYALTY_EXPIRY_NOTICE_DAYS = env_int("LOYALTY_EXPIRY_NOTICE_DAYS", 30)
# Connections the nightly expiry and release run their member-id chunks on side by side
# (PostgreSQL). 1 leaves the database's other cores to the tills.
LOYALTY_JOB_WORKERS = env_int("LOYALTY_JOB_WORKERS", 1)
# The admin dashboard computes its figures at most this often (operations.dashboard).
LOYALTY_DASHBOARD_CACHE_SECONDS = env_int("LOYALTY_DASHBOARD_CACHE_SECONDS", 600)
# Delivers notifications from the outbox; the default writes them to the log.
LOYALTY_NOTIFICATION_SENDER = env("LOYALTY_NOTIFICATION_SENDER", "outreach.sender.RoutingSender")
# Phone numbers without a country code are read as numbers of this region.
LOYALTY_PHONE_REGION = env("LOYALTY_PHONE_REGION", "CN")
# Checkout points deduction (积分抵扣): yuan one point is worth, and the largest share of
# an order that points may pay.
LOYALTY_POINT_VALUE = env("LOYALTY_POINT_VALUE", "0.01")
LOYALTY_MAX_DEDUCTION_SHARE = env("LOYALTY_MAX_DEDUCTION_SHARE", "0.5")

# --- Consumer operations (docs/lifecycle.md, docs/engagement.md) ----------------------
# Lifecycle stages, from counted orders (not fully refunded), first match wins: new
# (joined within NEW_DAYS, fewer than two orders), churned (no order for CHURNED_DAYS;
# never ordered: counted from joining), dormant (likewise DORMANT_DAYS), mature (at least
# MATURE_ORDERS orders in the last 365 days); growing otherwise.
LOYALTY_STAGE_NEW_DAYS = env_int("LOYALTY_STAGE_NEW_DAYS", 30)
LOYALTY_STAGE_MATURE_ORDERS = env_int("LOYALTY_STAGE_MATURE_ORDERS", 3)
LOYALTY_STAGE_DORMANT_DAYS = env_int("LOYALTY_STAGE_DORMANT_DAYS", 90)
LOYALTY_STAGE_CHURNED_DAYS = env_int("LOYALTY_STAGE_CHURNED_DAYS", 180)
# RFM scores are quantiles over members with an order in this many days.
LOYALTY_RFM_WINDOW_DAYS = env_int("LOYALTY_RFM_WINDOW_DAYS", 365)
# Marketing channels this deployment has a sender for: the FAST panel's reachable base
# counts members on these only (operations.fast, docs/fast.md).
LOYALTY_MARKETING_CHANNELS = env_list("LOYALTY_MARKETING_CHANNELS", "sms,email,wechat")
# Marketing contact cap across journeys and broadcasts (docs/journeys.md): "N/D", at most
# N marketing contacts per member within D days; "off" for none. Transactional notices are not capped.
MARKETING_CONTACT_CAP = env("MARKETING_CONTACT_CAP", "4/7")
# Daily check-in: points for day 1, 2, ... of a streak; past the list, the last value.
LOYALTY_CHECKIN_POINTS = env_list("LOYALTY_CHECKIN_POINTS", "5,5,10,10,10,10,30")
# Referral: points the referrer and the new member each get once the new member's first
# order is past its return window and not refunded.
LOYALTY_REFERRAL_POINTS = env_int("LOYALTY_REFERRAL_POINTS", 200)
# How long staff can undo a member merge (docs/merge.md).
LOYALTY_MERGE_UNDO_DAYS = env_int("LOYALTY_MERGE_UNDO_DAYS", 7)
# Erasure keeps a keyed hash of the phone number (members.ErasedPhone, docs/privacy.md):
# a member who joins again with it within this many days gets no signup bonus, no
# first-purchase bonus and no referral; 0 keeps no hashes at all. The key: a random
# string; empty derives one from DJANGO_SECRET_KEY. Changing either forgets the list.
LOYALTY_REJOIN_BONUS_BLOCK_DAYS = env_int("LOYALTY_REJOIN_BONUS_BLOCK_DAYS", 365)
LOYALTY_ERASED_PHONE_KEY = env("LOYALTY_ERASED_PHONE_KEY", "")
# Uploaded member files wait here for the background import (never under MEDIA_ROOT:
# they hold personal data); each is deleted once its job is done or found invalid.
LOYALTY_IMPORT_ROOT = Path(env("LOYALTY_IMPORT_ROOT", str(VAR_DIR / "imports")))

# --- Paid membership (programme; docs/programme.md) --------------------------------------
# The payment adapter new plan orders use, and the adapters by name (programme.payments).
# Production defaults to WeChat Pay, which refuses in words until its PROGRAMME_WECHAT_*
# settings are there; the fake adapter is for development and tests (programme.W001 warns
# when production names it).
PROGRAMME_PAYMENT_ADAPTER = env("PROGRAMME_PAYMENT_ADAPTER", "wechat" if PRODUCTION else "fake")
PROGRAMME_PAYMENT_ADAPTERS = {
    "fake": "programme.payments.FakeAdapter",
    "wechat": "programme.payments.WeChatPayAdapter",
}
# The fake adapter's signing secret (empty: SECRET_KEY).
PROGRAMME_FAKE_PAYMENT_SECRET = env("PROGRAMME_FAKE_PAYMENT_SECRET", "")
PROGRAMME_WECHAT_PAY = {
    "api_base": env("PROGRAMME_WECHAT_API_BASE", "https://api.mch.weixin.qq.com"),
    "mch_id": env("PROGRAMME_WECHAT_MCH_ID", ""),
    "app_id": env("PROGRAMME_WECHAT_APP_ID", ""),
    "merchant_serial": env("PROGRAMME_WECHAT_MERCHANT_SERIAL", ""),
    "merchant_private_key": env("PROGRAMME_WECHAT_MERCHANT_PRIVATE_KEY", ""),
    "platform_serial": env("PROGRAMME_WECHAT_PLATFORM_SERIAL", ""),
    "platform_public_key": env("PROGRAMME_WECHAT_PLATFORM_PUBLIC_KEY", ""),
    "api_v3_key": env("PROGRAMME_WECHAT_API_V3_KEY", ""),
    "notify_url": env("PROGRAMME_WECHAT_NOTIFY_URL", ""),
}
# How a paid plan's benefits combine with the tier's: "best" (the better one) or "multiply".
PROGRAMME_MULTIPLIERS = env("PROGRAMME_MULTIPLIERS", "best")
if PROGRAMME_MULTIPLIERS not in ("best", "multiply"):
    raise ImproperlyConfigured(f"PROGRAMME_MULTIPLIERS must be best or multiply, not {PROGRAMME_MULTIPLIERS!r}.")
# Days after payment in which a plan order can be refunded (the membership then ends).
PROGRAMME_COOL_OFF_DAYS = env_int("PROGRAMME_COOL_OFF_DAYS", 7)
# Renewal notice this many days before a period ends; automatic renewal this many hours before.
PROGRAMME_RENEWAL_NOTICE_DAYS = env_int("PROGRAMME_RENEWAL_NOTICE_DAYS", 3)
PROGRAMME_RENEW_AHEAD_HOURS = env_int("PROGRAMME_RENEW_AHEAD_HOURS", 24)
# Points transfers between members (赠送积分): points a member may give and receive per
# local day and calendar month (0: no limit), the lowest tier that may give (a tier code;
# empty: any), whether the receiver confirms, whether the points keep their expiry dates,
# the hours in which the same two members cannot send points back the other way (0: off).
PROGRAMME_TRANSFER_GIVE_PER_DAY = env_int("PROGRAMME_TRANSFER_GIVE_PER_DAY", 2000)
PROGRAMME_TRANSFER_GIVE_PER_MONTH = env_int("PROGRAMME_TRANSFER_GIVE_PER_MONTH", 10000)
PROGRAMME_TRANSFER_RECEIVE_PER_DAY = env_int("PROGRAMME_TRANSFER_RECEIVE_PER_DAY", 2000)
PROGRAMME_TRANSFER_RECEIVE_PER_MONTH = env_int("PROGRAMME_TRANSFER_RECEIVE_PER_MONTH", 10000)
PROGRAMME_TRANSFER_MIN_TIER = env("PROGRAMME_TRANSFER_MIN_TIER", "")
PROGRAMME_TRANSFER_CONFIRM = env_bool("PROGRAMME_TRANSFER_CONFIRM", False)
# A transfer waiting for the receiver this many days goes back to the giver (daily housekeeping).
PROGRAMME_TRANSFER_CONFIRM_DAYS = env_int("PROGRAMME_TRANSFER_CONFIRM_DAYS", 7)
PROGRAMME_TRANSFER_KEEP_EXPIRY = env_bool("PROGRAMME_TRANSFER_KEEP_EXPIRY", True)
PROGRAMME_TRANSFER_PING_PONG_HOURS = env_int("PROGRAMME_TRANSFER_PING_PONG_HOURS", 72)
# The programme's tasks give points and coupons: they run on the ledger jobs' queue (a
# worker must consume it: celery -A config worker -Q celery,ledger).
PROGRAMME_QUEUE = env("PROGRAMME_QUEUE", "ledger")
CELERY_TASK_ROUTES["programme.*"] = {"queue": PROGRAMME_QUEUE}
# Webhook deliveries are customer contact; bulk awards and batches are bulk work.
CELERY_TASK_ROUTES |= {"webhooks.*": {"queue": "contact"}, "bulk.*": {"queue": "bulk"}}
# Foresight's nightly scan reads the ledger in bulk (docs/foresight.md).
CELERY_TASK_ROUTES["foresight.*"] = {"queue": "bulk"}
# Dual membership: the names of the two tracks (members who bought, and fans who have not),
# "Chinese|English" (one name alone serves both languages), and the contribution value
# (贡献值) each non-purchase action earns.
PROGRAMME_TRACK_OWNER = env("PROGRAMME_TRACK_OWNER", "车主|Owner")
PROGRAMME_TRACK_FAN = env("PROGRAMME_TRACK_FAN", "粉丝|Fan")
PROGRAMME_CONTRIBUTION_CHECK_IN = env_int("PROGRAMME_CONTRIBUTION_CHECK_IN", 1)
PROGRAMME_CONTRIBUTION_REFERRAL = env_int("PROGRAMME_CONTRIBUTION_REFERRAL", 20)
PROGRAMME_CONTRIBUTION_PROFILE = env_int("PROGRAMME_CONTRIBUTION_PROFILE", 10)
PROGRAMME_CONTRIBUTION_MAX_PER_ACTION = env_int("PROGRAMME_CONTRIBUTION_MAX_PER_ACTION", 1000)
# Badges: evaluate a member's badges (a queued task) after their orders, check-ins and tier changes.
PROGRAMME_BADGES_ON_EVENTS = env_bool("PROGRAMME_BADGES_ON_EVENTS", True)

# --- Logging --------------------------------------------------------------------------
# json: one JSON object a line with the request id (config.logging), for a log shipper;
# text: the same fields for a terminal. JSON by default in production.
DJANGO_LOG_FORMAT = env("DJANGO_LOG_FORMAT", "json" if PRODUCTION else "text")
if DJANGO_LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured(f"DJANGO_LOG_FORMAT must be json or text, not {DJANGO_LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "config.logging.RequestIdFilter"}},
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "config.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": DJANGO_LOG_FORMAT, "filters": ["request_id"]}
    },
    "root": {"handlers": ["console"], "level": env("DJANGO_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
# /readyz fails when beat has sent no task for this long (config.health).
LOYALTY_READYZ_BEAT_MAX_AGE_MINUTES = env_int("LOYALTY_READYZ_BEAT_MAX_AGE_MINUTES", 30)

# --- Going live on several machines (docs/deploy.md; config.routers, config.metrics) ----
# A streaming replica for reporting reads: GET requests to the dashboard, the segment
# list with its counts, exports, the staff figures, member data exports and /metrics
# (paths below). Every other read, and every read after a write in the same request,
# goes to the primary (config.routers).
DATABASE_REPLICA_URL = env("DATABASE_REPLICA_URL", "")
if DATABASE_REPLICA_URL:
    if not DATABASE_REPLICA_URL.startswith(("postgres://", "postgresql://")):
        raise ImproperlyConfigured("DATABASE_REPLICA_URL must be postgres://USER:PASSWORD@HOST:5432/NAME.")
    DATABASES["replica"] = dj_database_url.parse(
        DATABASE_REPLICA_URL, conn_max_age=DATABASE_CONN_MAX_AGE, conn_health_checks=DATABASE_CONN_MAX_AGE > 0
    )
    # The test run reads the primary through this alias: no second test database.
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
    DATABASE_ROUTERS = ["config.routers.ReplicaRouter"]
# Past this lag (seconds) the replica is left aside and reporting reads go to the primary;
# /readyz shows the lag.
DATABASE_REPLICA_MAX_LAG_SECONDS = env_int("DATABASE_REPLICA_MAX_LAG_SECONDS", 30)
DATABASE_REPLICA_PATHS = env_list(
    "DATABASE_REPLICA_PATHS",
    r"^/admin/dashboard/,^/admin/members/segment/$,^/admin/[a-z_]+/[a-z_]+/(?:[^/]+/)?export/,"
    r"^/api/v1/metrics/,^/api/v1/segments/,^/api/v1/me/export/,^/me/profile/export/,^/metrics$",
)
# pgbouncer in transaction mode (DATABASE_POOLER=transaction): a server connection serves
# another client between transactions, so no server-side cursors (they live across
# transactions); docs/deploy.md lists what else was checked.
DATABASE_POOLER = env("DATABASE_POOLER", "")
if DATABASE_POOLER not in ("", "session", "transaction"):
    raise ImproperlyConfigured(f"DATABASE_POOLER must be empty, session or transaction, not {DATABASE_POOLER!r}.")
if DATABASE_POOLER == "transaction":
    for _database in DATABASES.values():
        _database["DISABLE_SERVER_SIDE_CURSORS"] = True
# The earn's and the spend's own statements are prepared once per connection and run
# with generic plans (core.db.prepared_cursor): planning was half of PostgreSQL's time on
# them (bench/README.md). psycopg's threshold is never reached, so nothing else is
# prepared, and plan_cache_mode touches prepared statements only. Not behind a transaction
# pooler, whose next transaction may run on a server connection that never prepared the
# statement; DATABASE_PREPARED_STATEMENTS=0 turns it off anywhere.
DATABASE_PREPARED_STATEMENTS = (
    DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    and DATABASE_POOLER != "transaction"
    and env_bool("DATABASE_PREPARED_STATEMENTS", True)
)
if DATABASE_PREPARED_STATEMENTS:
    for _database in DATABASES.values():
        _options = _database.setdefault("OPTIONS", {})
        _options["prepare_threshold"] = 2**31 - 1
        # A startup parameter: no statement of its own (pgbouncer in session mode drops it).
        _options["options"] = f"{_options.get('options', '')} -c plan_cache_mode=force_generic_plan".strip()

# Prometheus metrics at /metrics (config.metrics): served to a request that brings
# "Authorization: Bearer <METRICS_TOKEN>" or comes from METRICS_ALLOWED_NETWORKS (the
# connection's own address, not a forwarded header). Neither set: 404.
METRICS_TOKEN = env("METRICS_TOKEN", "")
METRICS_ALLOWED_NETWORKS = env_list("METRICS_ALLOWED_NETWORKS")
for _network in METRICS_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"METRICS_ALLOWED_NETWORKS: {_network!r} is not an address or network (e.g. 10.0.0.0/8)."
        ) from None
if METRICS_TOKEN and len(METRICS_TOKEN) < 24:
    raise ImproperlyConfigured("METRICS_TOKEN must be at least 24 characters.")
# gunicorn runs several processes: each writes its figures here, /metrics adds them up
# (prometheus-client's multiprocess mode; config/gunicorn.py empties it at start).
PROMETHEUS_MULTIPROC_DIR = env("PROMETHEUS_MULTIPROC_DIR", "")
MIDDLEWARE.insert(MIDDLEWARE.index("config.health.HealthCheckMiddleware") + 1, "config.metrics.MetricsMiddleware")

# Errors to Sentry when SENTRY_DSN is set (Django and Celery integrations).
SENTRY_DSN = env("SENTRY_DSN", "")
SENTRY_ENVIRONMENT = env("SENTRY_ENVIRONMENT", DJANGO_ENV)
SENTRY_TRACES_SAMPLE_RATE = float(env("SENTRY_TRACES_SAMPLE_RATE", "0") or 0)
if SENTRY_DSN:
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=SENTRY_DSN,
        environment=SENTRY_ENVIRONMENT,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE,
        send_default_pii=False,  # members' phone numbers stay out of error reports
    )

# Uploads every machine sees: MEDIA_S3_BUCKET puts media (reward images) in an
# S3-compatible bucket through django-storages (credentials: AWS_ACCESS_KEY_ID and
# AWS_SECRET_ACCESS_KEY, read by boto3). Unset: MEDIA_ROOT, which on several machines is
# a shared volume (docs/deploy.md), like LOYALTY_IMPORT_ROOT.
MEDIA_S3_BUCKET = env("MEDIA_S3_BUCKET", "")
if MEDIA_S3_BUCKET:
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": MEDIA_S3_BUCKET,
            "endpoint_url": env("MEDIA_S3_ENDPOINT_URL", "") or None,
            "region_name": env("MEDIA_S3_REGION", "") or None,
            "custom_domain": env("MEDIA_S3_CUSTOM_DOMAIN", "") or None,
            "default_acl": None,
            "file_overwrite": False,
            "querystring_auth": env_bool("MEDIA_S3_SIGNED_URLS", False),
        },
    }
if "replica" in DATABASES:
    MIDDLEWARE.insert(MIDDLEWARE.index("config.metrics.MetricsMiddleware") + 1, "config.routers.ReplicaScopeMiddleware")
# The workers record each task run for /metrics (config.metrics_celery); a production
# worker or beat checks its database and broker at start (config.startup).
CELERY_IMPORTS = ["config.metrics_celery", "config.startup"]
# /metrics reads the database and the broker at most this often (seconds).
METRICS_CACHE_SECONDS = env_int("METRICS_CACHE_SECONDS", 15)
# --- Outreach: delivery channels and webhooks (docs/channels.md, docs/webhooks.md) ----
# SMS providers in the order they are tried: aliyun, tencent; "log" writes to the log and
# refuses to send in production, so no code ever reaches a production log.
OUTREACH_SMS_PROVIDERS = env_list("OUTREACH_SMS_PROVIDERS", "log")
OUTREACH_ALIYUN = {
    "access_key_id": env("ALIYUN_SMS_ACCESS_KEY_ID", ""),
    "access_key_secret": env("ALIYUN_SMS_ACCESS_KEY_SECRET", ""),
    "sign_name": env("ALIYUN_SMS_SIGN_NAME", ""),
    "region": env("ALIYUN_SMS_REGION", "cn-hangzhou"),
    "endpoint": env("ALIYUN_SMS_ENDPOINT", "https://dysmsapi.aliyuncs.com/"),
}
OUTREACH_TENCENT = {
    "secret_id": env("TENCENT_SMS_SECRET_ID", ""),
    "secret_key": env("TENCENT_SMS_SECRET_KEY", ""),
    "sdk_app_id": env("TENCENT_SMS_SDK_APP_ID", ""),
    "sign_name": env("TENCENT_SMS_SIGN_NAME", ""),
    "region": env("TENCENT_SMS_REGION", "ap-guangzhou"),
    "endpoint": env("TENCENT_SMS_ENDPOINT", "https://sms.tencentcloudapi.com/"),
}
OUTREACH_WECHAT = {
    "app_id": WECHAT_APP_ID,
    "app_secret": WECHAT_APP_SECRET,
    "endpoint": env("WECHAT_API_ENDPOINT", "https://api.weixin.qq.com"),
    "state": env("WECHAT_MINIPROGRAM_STATE", "formal"),
}


# Per notice kind: channels in fallback order, SMS templates (provider template code and
# parameter names), WeChat templates (id, page, keyword -> field). JSON in the
# environment replaces the defaults of outreach.routing (DEFAULT_ROUTES ...) kind by kind.
def _env_json_object(name: str) -> dict:
    try:
        value = json.loads(env(name, "") or "{}")
    except ValueError as error:
        raise ImproperlyConfigured(f"{name} must be a JSON object: {error}") from None
    if not isinstance(value, dict):
        raise ImproperlyConfigured(f"{name} must be a JSON object, not {type(value).__name__}.")
    return value


OUTREACH_ROUTES = _env_json_object("OUTREACH_ROUTES")
OUTREACH_SMS_TEMPLATES = _env_json_object("OUTREACH_SMS_TEMPLATES")
OUTREACH_WECHAT_TEMPLATES = _env_json_object("OUTREACH_WECHAT_TEMPLATES")
# Marketing notices wait out the quiet hours (local time, start-end); each member gets at
# most OUTREACH_DAILY_CAP messages a day (SMS, WeChat, email; service notices count but
# are never held back, one-time codes do not count).
OUTREACH_QUIET_HOURS = env("OUTREACH_QUIET_HOURS", "21:00-09:00")
OUTREACH_DAILY_CAP = env_int("OUTREACH_DAILY_CAP", 3)
# Temporary errors are retried this many times, after 1, 5, 25 ... minutes.
OUTREACH_MAX_ATTEMPTS = env_int("OUTREACH_MAX_ATTEMPTS", 5)
OUTREACH_RETRY_BASE_SECONDS = env_int("OUTREACH_RETRY_BASE_SECONDS", 60)
OUTREACH_HTTP_TIMEOUT = env_int("OUTREACH_HTTP_TIMEOUT", 5)
OUTREACH_BRAND_NAME = env("OUTREACH_BRAND_NAME", "Loyalty")
# The secret path part of the SMS delivery-report callbacks (/api/v1/outreach/reports/...);
# empty: the callbacks answer 404.
OUTREACH_REPORT_TOKEN = env("OUTREACH_REPORT_TOKEN", "")
# Webhooks: seconds a receiver has to answer; an endpoint failing this long is disabled.
WEBHOOK_TIMEOUT = env_int("WEBHOOK_TIMEOUT", 5)
WEBHOOK_DISABLE_AFTER = env_int("WEBHOOK_DISABLE_AFTER_SECONDS", 24 * 3600)
# Production sends webhooks only to https URLs on public addresses (no requests into the
# brand's own network from the admin); development allows http://127.0.0.1 receivers.
WEBHOOK_ALLOW_PRIVATE_URLS = env_bool("WEBHOOK_ALLOW_PRIVATE_URLS", not PRODUCTION)
# One delivery run of one endpoint sends for at most this long (a slow receiver then
# waits for the next run instead of holding a worker).
WEBHOOK_RUN_SECONDS = env_int("WEBHOOK_RUN_SECONDS", 60)
DEFAULT_FROM_EMAIL = env("DJANGO_DEFAULT_FROM_EMAIL", "noreply@localhost")
EMAIL_BACKEND = env(
    "DJANGO_EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if PRODUCTION else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = env("DJANGO_EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("DJANGO_EMAIL_PORT", 25)
EMAIL_HOST_USER = env("DJANGO_EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("DJANGO_EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("DJANGO_EMAIL_USE_TLS", False)

# --- The admin's theme (django-unfold) ------------------------------------------------------
# Sidebar grouped by task (console.navigation.sidebar, per user and language); a staff
# user signing in lands where their role works (console.navigation.landing_url).
LOYALTY_ADMIN_LANDING = "console.navigation.landing_url"
UNFOLD = {
    "SITE_TITLE": _("Loyalty admin"),
    "SITE_HEADER": _("Membership and loyalty"),
    "SITE_SYMBOL": "loyalty",
    "SITE_SUBHEADER": "console.navigation.subheader",
    "DASHBOARD_CALLBACK": "console.landing.index_context",
    "ACCOUNT": {"navigation": "console.navigation.account_links"},
    "SITE_URL": "/me/",
    "SITE_FAVICONS": [{"rel": "icon", "type": "image/x-icon", "href": "/favicon.ico"}],
    "SHOW_HISTORY": True,
    "SHOW_VIEW_ON_SITE": True,
    "SHOW_BACK_BUTTON": True,
    "BORDER_RADIUS": "8px",
    "COLORS": {
        "primary": {
            "50": "oklch(96.2% .018 272.314)",
            "100": "oklch(93% .034 272.788)",
            "200": "oklch(87% .065 274.039)",
            "300": "oklch(78.5% .115 274.713)",
            "400": "oklch(67.3% .182 276.935)",
            "500": "oklch(58.5% .233 277.117)",
            "600": "oklch(51.1% .262 276.966)",
            "700": "oklch(45.7% .24 277.023)",
            "800": "oklch(39.8% .195 277.366)",
            "900": "oklch(35.9% .144 278.697)",
            "950": "oklch(25.7% .09 281.288)",
        },
    },
    "SIDEBAR": {
        "show_search": True,
        "show_all_applications": True,
        "navigation": "console.navigation.sidebar",
    },
    "STYLES": [lambda request: static("console/admin.css")],
}
# Files served at the site's root by whitenoise: favicon.ico (browsers ask for it there).
WHITENOISE_ROOT = BASE_DIR / "static" / "root"
