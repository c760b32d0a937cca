import pytest

from core.errors import LoyaltyError
from members.miniprogram import FakeAdapter, WeChatAdapter, get_adapter


def test_fake_adapter_maps_codes_to_fixed_openids():
    adapter = FakeAdapter()
    first, second = adapter.code_to_session("alice"), adapter.code_to_session("alice")
    assert first.openid == second.openid == "fake-openid-alice"
    assert first.unionid == "fake-unionid-alice"
    assert "session_key" not in repr(first) or "***" in repr(first)
    assert first.session_key not in repr(first)


@pytest.mark.parametrize(
    ("code", "error_code"),
    [
        ("fail-40029", "miniprogram_invalid_code"),
        ("fail-45011", "miniprogram_rate_limited"),
        ("fail--1", "miniprogram_unavailable"),
        ("fail-99999", "miniprogram_error"),
        ("bad code with spaces", "miniprogram_invalid_code"),
    ],
)
def test_fake_adapter_acts_out_platform_errors(code, error_code):
    with pytest.raises(LoyaltyError) as error:
        FakeAdapter().code_to_session(code)
    assert error.value.code == error_code


def test_fake_adapter_phone_code_is_the_phone():
    assert FakeAdapter().phone_from_code("13800138000") == "+8613800138000"
    with pytest.raises(LoyaltyError):
        FakeAdapter().phone_from_code("not-a-phone")


def test_adapter_is_chosen_by_setting(settings):
    settings.LOYALTY_MINIPROGRAM_ADAPTER = "members.miniprogram.FakeAdapter"
    assert isinstance(get_adapter(), FakeAdapter)


class StubTransport:
    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def __call__(self, method, url, body):
        self.calls.append((method, url, body))
        for prefix, answer in self.answers.items():
            if prefix in url:
                return answer
        raise AssertionError(url)


def test_wechat_adapter_calls_jscode2session(settings):
    transport = StubTransport({"/sns/jscode2session": {"openid": "o1", "unionid": "u1", "session_key": "sk"}})
    session = WeChatAdapter(transport=transport, app_id="wxapp", secret="s3cret").code_to_session("abc")
    assert (session.openid, session.unionid) == ("o1", "u1")
    method, url, _ = transport.calls[0]
    assert method == "GET" and url.startswith("https://api.weixin.qq.com/sns/jscode2session?")
    assert "js_code=abc" in url and "appid=wxapp" in url and "grant_type=authorization_code" in url


@pytest.mark.parametrize(
    ("errcode", "code"), [(40029, "miniprogram_invalid_code"), (45011, "miniprogram_rate_limited")]
)
def test_wechat_adapter_maps_errors(errcode, code):
    transport = StubTransport({"/sns/jscode2session": {"errcode": errcode, "errmsg": "x"}})
    with pytest.raises(LoyaltyError) as error:
        WeChatAdapter(transport=transport, app_id="a", secret="b").code_to_session("abc")
    assert error.value.code == code


def test_wechat_adapter_gets_the_phone_with_a_cached_access_token():
    from django.core.cache import cache

    cache.clear()
    transport = StubTransport(
        {
            "/cgi-bin/token": {"access_token": "AT", "expires_in": 7200},
            "/wxa/business/getuserphonenumber": {
                "errcode": 0,
                "phone_info": {"purePhoneNumber": "13800138000", "countryCode": "86"},
            },
        }
    )
    adapter = WeChatAdapter(transport=transport, app_id="a", secret="b")
    assert adapter.phone_from_code("pc1") == "+8613800138000"
    assert adapter.phone_from_code("pc2") == "+8613800138000"
    token_calls = [c for c in transport.calls if "/cgi-bin/token" in c[1]]
    assert len(token_calls) == 1
    method, url, body = transport.calls[1]
    assert method == "POST" and "access_token=AT" in url and body == {"code": "pc1"}


def test_wechat_adapter_without_credentials_is_unavailable():
    with pytest.raises(LoyaltyError) as error:
        WeChatAdapter(transport=StubTransport({}), app_id="", secret="")
    assert error.value.code == "miniprogram_unavailable"
