import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.test import APIClient

from api.models import StoreApiKey, secret_hash

pytestmark = pytest.mark.django_db


def test_admin_makes_a_key_shows_it_once_and_keeps_only_its_hash(client, store):
    admin = get_user_model().objects.create_superuser("root", password="not-a-real-password-42")
    client.force_login(admin)
    response = client.post(
        "/admin/api/storeapikey/add/",
        {"store": store.pk, "name": "till 9", "actions": ["lookup", "earn"], "is_active": "on"},
        follow=True,
    )
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    raw = next(word for m in shown for word in m.split() if word.startswith("sk_")).rstrip(".")
    key = StoreApiKey.objects.get()
    assert key.key_hash == secret_hash(raw) and raw not in key.key_hash
    assert key.actions == ["earn", "lookup"]
    listing = client.get("/admin/api/storeapikey/")
    assert raw not in listing.content.decode()


def test_demo_credentials_let_curl_users_in(capsys, store):
    call_command("api_demo_credentials")
    raw = capsys.readouterr().out.strip().splitlines()[-1]
    tokens = APIClient().post("/api/v1/auth/miniprogram/", {"code": "demo"}, format="json")
    assert tokens.status_code == 200
    me = APIClient(HTTP_AUTHORIZATION=f"Bearer {tokens.json()['access']}")
    assert me.get("/api/v1/me/balances/").json()["points"]["balance"] == 2000
    till = APIClient(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    assert till.get("/api/v1/pos/members/lookup/", {"phone": "13800138000"}).status_code == 200
    call_command("api_demo_credentials")  # a second run: a new key, the old one disabled, no double points
    assert till.get("/api/v1/pos/members/lookup/", {"phone": "13800138000"}).status_code == 401
    assert me.get("/api/v1/me/balances/").json()["points"]["balance"] == 2000
