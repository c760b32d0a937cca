"""Points transfers through the API, the member pages and the admin."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from rest_framework.test import APIClient

from api.tests.conftest import client_for_member
from center.services import member_user_for_sign_in
from loyalty import services as ledger
from loyalty.models import Account
from loyalty.tests.factories import MemberFactory
from programme.models import Transfer

pytestmark = pytest.mark.django_db


def _balance(member) -> int:
    return Account.objects.filter(member=member, currency="points").values_list("balance", flat=True).first() or 0


@pytest.fixture
def giver(db):
    member = MemberFactory()
    ledger.points_award(member=member, currency="points", amount=500, reason="seed", idempotency_key="seed")
    return member


@pytest.fixture
def receiver(db):
    return MemberFactory()


def test_api_give_list_and_refusals(giver, receiver):
    client = client_for_member(giver)
    url = reverse("api:me-transfers")
    answer = client.post(url, {"to": receiver.phone, "points": 120, "message": "hi"}, format="json")
    assert answer.status_code == 201 and answer.json()["status"] == "completed"
    assert client.get(url).json()[0]["points"] == 120
    assert client_for_member(receiver).get(url).json()[0]["giver"]["member_number"] == giver.member_number
    for body, status, code in [
        ({"to": "+8613000000000", "points": 1}, 404, "receiver_not_found"),
        ({"to": receiver.phone, "points": 0}, 400, "invalid"),
        ({"to": receiver.phone, "points": 1000}, 409, "insufficient_balance"),
        ({"to": giver.phone, "points": 1}, 409, "transfer_to_self"),
        ({"to": "nobody", "points": 1}, 400, "invalid_receiver"),
    ]:
        answer = client.post(url, body, format="json")
        assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), body
    back = client_for_member(receiver).post(url, {"to": giver.phone, "points": 10}, format="json")
    assert back.status_code == 409 and back.json()["error"]["code"] == "transfer_ping_pong"
    assert Transfer.objects.count() == 1 and _balance(giver) == 380


def test_api_confirmation_flow_and_other_members_cannot_touch_it(giver, receiver, settings):
    settings.PROGRAMME_TRANSFER_CONFIRM = True
    transfer_id = (
        client_for_member(giver)
        .post(reverse("api:me-transfers"), {"to": receiver.member_number, "points": 50}, format="json")
        .json()["id"]
    )
    stranger = client_for_member(MemberFactory())
    assert stranger.post(reverse("api:me-transfer-accept", args=[transfer_id])).status_code == 404
    assert client_for_member(giver).post(reverse("api:me-transfer-accept", args=[transfer_id])).status_code == 404
    answer = client_for_member(receiver).post(reverse("api:me-transfer-accept", args=[transfer_id]))
    assert answer.status_code == 200 and answer.json()["status"] == "completed" and _balance(receiver) == 50
    again = client_for_member(receiver).post(reverse("api:me-transfer-decline", args=[transfer_id]))
    assert again.status_code == 409 and again.json()["error"]["code"] == "transfer_not_pending"


def test_api_staff_list_and_reverse(giver, receiver, admin_user, staff_user):
    client_for_member(giver).post(reverse("api:me-transfers"), {"to": receiver.phone, "points": 70}, format="json")
    transfer = Transfer.objects.get()
    staff = APIClient()
    staff.force_authenticate(staff_user)
    url = reverse("api:programme-transfer-reverse", args=[transfer.pk])
    assert staff.post(url, {"reason": "x"}, format="json").status_code == 403
    staff.force_authenticate(admin_user)
    assert staff.post(url, {"reason": ""}, format="json").json()["error"]["code"] == "reason_required"
    assert staff.post(url, {"reason": "fraud"}, format="json").json()["status"] == "reversed"
    listed = staff.get(reverse("api:programme-transfers"), {"status": "reversed", "member": receiver.phone}).json()
    assert [row["id"] for row in listed] == [transfer.pk]
    assert staff.get(reverse("api:programme-transfers"), {"status": "lost"}).status_code == 400
    assert _balance(giver) == 500 and _balance(receiver) == 0


def test_member_page_give_and_refusal(client, giver, receiver, django_assert_max_num_queries):
    client.force_login(member_user_for_sign_in(member=giver))
    with django_assert_max_num_queries(10):
        assert client.get(reverse("center:transfers")).status_code == 200
    client.post(reverse("center:transfer_give"), {"to": receiver.phone, "points": "abc"})
    assert not Transfer.objects.exists()
    client.post(reverse("center:transfer_give"), {"to": receiver.phone, "points": "40", "message": "hi"})
    page = client.get(reverse("center:transfers"), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "赠送积分" in page and _balance(receiver) == 40


def test_member_page_confirm_and_take_back(client, giver, receiver, settings):
    settings.PROGRAMME_TRANSFER_CONFIRM = True
    client.force_login(member_user_for_sign_in(member=giver))
    client.post(reverse("center:transfer_give"), {"to": receiver.phone, "points": "40"})
    transfer = Transfer.objects.get()
    client.post(reverse("center:transfer_cancel", args=[transfer.pk]))
    assert Transfer.objects.get().status == "cancelled" and _balance(giver) == 500


def test_admin_lists_filters_and_reverses(admin_client, giver, receiver, django_user_model):
    client_for_member(giver).post(reverse("api:me-transfers"), {"to": receiver.phone, "points": 70}, format="json")
    url = reverse("admin:programme_transfer_changelist")
    page = admin_client.get(url, {"status": "completed", "q": receiver.phone})
    assert page.status_code == 200 and "70" in page.content.decode()
    transfer = Transfer.objects.get()
    admin_client.post(url, {"action": "reverse", "_selected_action": [transfer.pk], "reason": ""})
    assert Transfer.objects.get().status == "completed"
    admin_client.post(url, {"action": "reverse", "_selected_action": [transfer.pk], "reason": "fraud"})
    assert Transfer.objects.get().status == "reversed"
    assert Permission.objects.filter(codename="reverse_transfer").exists()
