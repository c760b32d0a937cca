import pytest
from django.core.cache import cache

from outreach.providers import wechat
from outreach.tests import stubs


@pytest.fixture
def aliyun(settings):
    stub = stubs.Stub(stubs.AliyunHandler)
    settings.OUTREACH_ALIYUN = {
        "access_key_id": stubs.ALIYUN_ID,
        "access_key_secret": stubs.ALIYUN_SECRET,
        "sign_name": "测试品牌",
        "endpoint": stub.url + "/",
    }
    yield stub
    stub.stop()


@pytest.fixture
def tencent(settings):
    stub = stubs.Stub(stubs.TencentHandler)
    settings.OUTREACH_TENCENT = {
        "secret_id": stubs.TENCENT_ID,
        "secret_key": stubs.TENCENT_KEY,
        "sdk_app_id": "1400000001",
        "sign_name": "测试品牌",
        "endpoint": stub.url + "/",
    }
    yield stub
    stub.stop()


@pytest.fixture
def wechat_api(settings):
    stub = stubs.Stub(stubs.WechatHandler)
    settings.OUTREACH_WECHAT = {"app_id": stubs.WECHAT_APPID, "app_secret": stubs.WECHAT_SECRET, "endpoint": stub.url}
    cache.delete(wechat.TOKEN_KEY)
    cache.delete(wechat.LOCK_KEY)
    yield stub
    cache.delete(wechat.TOKEN_KEY)
    stub.stop()


@pytest.fixture(autouse=True)
def outreach_defaults(settings):
    """Every test starts from the routing defaults, outside quiet hours, with no cap in the way."""
    settings.LOYALTY_NOTIFICATION_SENDER = "outreach.sender.RoutingSender"
    settings.OUTREACH_SMS_PROVIDERS = ["log"]
    settings.OUTREACH_QUIET_HOURS = ""
    settings.OUTREACH_DAILY_CAP = 3
    settings.OUTREACH_ROUTES = {}
    settings.OUTREACH_SMS_TEMPLATES = {}
    settings.OUTREACH_WECHAT_TEMPLATES = {}
    settings.OUTREACH_HTTP_TIMEOUT = 2
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
