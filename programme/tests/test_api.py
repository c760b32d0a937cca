"""The paid membership API, and the WeChat Pay adapter against a local stub."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from api.tests.conftest import client_for_member
from loyalty.tests.factories import MemberFactory
from programme.models import Membership, PlanOrder
from programme.payments import FakeAdapter

from .wechat_stub import WeChatPayStub

pytestmark = pytest.mark.django_db


def _notify(adapter: str, headers: dict, body: bytes):
    extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
    return APIClient().post(
        reverse("api:programme-notify", args=[adapter]), data=body, content_type="application/json", **extra
    )


def test_plans_are_listed_for_members(member, plan):
    assert APIClient().get(reverse("api:programme-plans")).status_code == 401
    answer = client_for_member(member).get(reverse("api:programme-plans"))
    assert answer.status_code == 200 and answer.json()[0]["code"] == "plus"


def test_buy_pay_by_notification_then_see_it(member, plan):
    client = client_for_member(member)
    assert client.get(reverse("api:me-membership")).json() == {"membership": None}
    answer = client.post(
        reverse("api:me-membership-orders"), {"plan": "plus", "auto_renew": True, "consent": True}, format="json"
    )
    assert answer.status_code == 201, answer.content
    number = answer.json()["order"]["number"]
    order = PlanOrder.objects.get(number=number)
    signed = FakeAdapter().sign(order_number=number, payment_id="pay-1", amount=order.amount)
    assert _notify("fake", signed.headers, signed.body).status_code == 200
    assert _notify("fake", signed.headers, signed.body).status_code == 200  # repeated: same answer, nothing new
    mine = client.get(reverse("api:me-membership")).json()["membership"]
    assert mine["active"] and mine["auto_renew"] and mine["plan"]["code"] == "plus"
    assert client.get(reverse("api:me-membership-orders")).json()[0]["status"] == "paid"
    assert client.post(reverse("api:me-membership-cancel")).json()["auto_renew"] is False
    assert client.post(reverse("api:me-membership-cancel")).json()["error"]["code"] == "membership_cancelled"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"plan": "gold"}, 404, "plan_not_found"),
        ({"plan": "plus", "auto_renew": True}, 400, "consent_required"),
        ({"plan": "plus", "adapter": "cash"}, 400, "payment_adapter_unknown"),
        ({"plan": "bad code!"}, 400, "invalid"),
    ],
)
def test_buy_refusals(member, plan, body, status, code):
    answer = client_for_member(member).post(reverse("api:me-membership-orders"), body, format="json")
    assert answer.status_code == status and answer.json()["error"]["code"] == code
    assert not PlanOrder.objects.exists()


def test_member_endpoints_need_a_member(plan):
    assert APIClient().get(reverse("api:me-membership")).status_code == 401


def test_a_forged_notification_is_400_and_changes_nothing(member, plan):
    client = client_for_member(member)
    number = client.post(reverse("api:me-membership-orders"), {"plan": "plus"}, format="json").json()["order"]["number"]
    signed = FakeAdapter().sign(order_number=number, payment_id="p", amount=plan.price)
    headers = dict(signed.headers, **{"X-Fake-Signature": "f" * 64})
    answer = _notify("fake", headers, signed.body)
    assert answer.status_code == 400 and "payment_signature_invalid" in answer.json()["message"]
    assert _notify("paypal", signed.headers, signed.body).status_code == 404
    assert PlanOrder.objects.get(number=number).status == "pending" and not Membership.objects.exists()


def test_staff_refund_and_dashboard(paid, member, refunder, staff_user):
    client = APIClient()
    client.force_authenticate(staff_user)
    url = reverse("api:programme-refund", args=[paid.number])
    assert client.post(url, {"reason": "x"}, format="json").json()["error"]["code"] == "permission_denied"
    client.force_authenticate(refunder)
    assert client.post(url, {"reason": ""}, format="json").json()["error"]["code"] == "reason_required"
    answer = client.post(url, {"reason": "changed mind"}, format="json")
    assert answer.status_code == 200 and answer.json()["points_taken_back"] == 500
    assert client.post(url, {"reason": "again"}, format="json").status_code == 409
    assert (
        client.post(reverse("api:programme-refund", args=["nope"]), {"reason": "x"}, format="json").status_code == 404
    )
    refunder.is_superuser = True
    refunder.save()
    figures = client.get(reverse("api:programme-dashboard")).json()
    assert figures["paying_members"] == 0
    assert figures["months"][0]["new"] == 1 and figures["months"][0]["churned"] == 1
    assert figures["months"][0]["welcome_points"] == 500


def test_wechat_pay_against_a_local_stub(member, plan, settings, refunder):
    member.wechat_openid = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
    member.save()
    with WeChatPayStub() as stub:
        settings.PROGRAMME_WECHAT_PAY = stub.config
        client = client_for_member(member)
        answer = client.post(reverse("api:me-membership-orders"), {"plan": "plus", "adapter": "wechat"}, format="json")
        assert answer.status_code == 201, answer.content
        payment, number = answer.json()["payment"], answer.json()["order"]["number"]
        assert payment["package"] == f"prepay_id=wx{number}" and payment["signType"] == "RSA"
        assert stub.requests[0][1]["amount"] == {"total": 9900, "currency": "CNY"}

        # A notification signed by someone else, or altered, changes nothing.
        headers, body = stub.notification(order_number=number, transaction_id="4200001", total=9900)
        forged = dict(headers, **{"Wechatpay-Signature": stub.sign_headers(b"other")["Wechatpay-Signature"]})
        assert _notify("wechat", forged, body).json()["code"] == "FAIL"
        stale = stub.sign_headers(body, timestamp=1_000_000_000)
        assert _notify("wechat", stale, body).status_code == 400
        cheap_headers, cheap = stub.notification(order_number=number, transaction_id="4200001", total=1)
        assert "payment_amount_mismatch" in _notify("wechat", cheap_headers, cheap).json()["message"]
        assert not Membership.objects.exists()

        answer = _notify("wechat", headers, body)
        assert answer.status_code == 200 and answer.json() == {"code": "SUCCESS", "message": "OK"}
        assert _notify("wechat", headers, body).status_code == 200
        order = PlanOrder.objects.get(number=number)
        assert order.status == "paid" and order.payment_id == "4200001"
        assert Membership.objects.get(member=member).is_active_at(order.paid_at)

        staff = APIClient()
        staff.force_authenticate(refunder)
        refund = staff.post(reverse("api:programme-refund", args=[number]), {"reason": "changed mind"}, format="json")
        assert refund.status_code == 200 and refund.json()["refund_id"] == "50000000382019052709732678859"
        assert stub.requests[-1] == (
            "/v3/refund/domestic/refunds",
            {
                "transaction_id": "4200001",
                "out_refund_no": f"{number}R",
                "amount": {"refund": 9900, "total": 9900, "currency": "CNY"},
            },
        )


def test_wechat_needs_an_openid_and_reports_a_platform_down(member, plan, settings):
    with WeChatPayStub() as stub:
        settings.PROGRAMME_WECHAT_PAY = stub.config
    client = client_for_member(member)
    assert (
        client.post(
            reverse("api:me-membership-orders"), {"plan": "plus", "adapter": "wechat"}, format="json"
        ).status_code
        == 409
    )
    member.wechat_openid = "o1"
    member.save()
    down = client.post(reverse("api:me-membership-orders"), {"plan": "plus", "adapter": "wechat"}, format="json")
    assert down.status_code == 503 and down.json()["error"]["code"] == "payment_unavailable"


def test_trial_and_auto_renew_endpoints_with_their_refusals(member, plan):
    client = client_for_member(member)
    trial = reverse("api:me-membership-trial")
    assert client.post(trial, {"plan": "plus"}, format="json").json()["error"]["code"] == "consent_required"
    answer = client.post(trial, {"plan": "plus", "consent": True}, format="json")
    assert answer.status_code == 201 and answer.json()["on_trial"] is True
    assert client.post(trial, {"plan": "plus", "consent": True}, format="json").status_code == 409
    auto = reverse("api:me-membership-auto-renew")
    assert client.post(auto, {"on": False}, format="json").json()["auto_renew"] is False
    assert client.post(auto, {"on": True}, format="json").json()["error"]["code"] == "consent_required"
    assert client.post(auto, {"on": "maybe"}, format="json").status_code == 400
    assert client.post(auto, {"on": True, "consent": True}, format="json").json()["auto_renew"] is True
    other = client_for_member(MemberFactory())
    assert other.post(auto, {"on": False}, format="json").json()["error"]["code"] == "membership_not_found"


def test_a_retried_purchase_with_its_idempotency_key_gets_the_first_answer(member, plan):
    client = client_for_member(member)
    url = reverse("api:me-membership-orders")
    first = client.post(url, {"plan": "plus"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = client.post(url, {"plan": "plus"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    other = client.post(
        url, {"plan": "plus", "auto_renew": True, "consent": True}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert other.status_code == 422 and PlanOrder.objects.count() == 1


def test_an_unconfigured_wechat_pay_refuses_in_words_and_writes_nothing(member, plan, settings):
    """Production's default adapter before the merchant's keys are set: a clear 503, no order."""
    settings.PROGRAMME_PAYMENT_ADAPTER = "wechat"
    settings.PROGRAMME_WECHAT_PAY = {"api_base": "http://127.0.0.1:9", "mch_id": "", "app_id": ""}
    answer = client_for_member(member).post(
        reverse("api:me-membership-orders"), {"plan": "plus", "auto_renew": False}, format="json"
    )
    assert answer.status_code == 503, answer.content
    assert answer.json()["error"]["code"] == "payments_not_configured"
    assert not PlanOrder.objects.exists()
    assert not Membership.objects.exists()
