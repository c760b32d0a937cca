import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache
from rest_framework.test import APIClient

from api.services import store_key_create, tokens_issue
from loyalty.models import Tier
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import StaffProfile


@pytest.fixture(autouse=True)
def fresh_throttles():
    """Throttle counters live in the cache; every test starts with none."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def tiers(db):
    bronze = Tier.objects.create(code="bronze", name="Bronze", rank=0, is_default=True)
    gold = Tier.objects.create(code="gold", name="Gold", rank=1, qualify_threshold=1000, retain_threshold=800)
    return {"bronze": bronze, "gold": gold}


@pytest.fixture
def store(db):
    return StoreFactory(code="sh001", name="Jing'an")


@pytest.fixture
def other_store(db):
    return StoreFactory(code="bj001", name="Chaoyang")


@pytest.fixture
def member(db):
    return MemberFactory(phone="+8613800138000", birthday=None)


@pytest.fixture
def other_member(db):
    return MemberFactory(phone="+8613900139000")


def client_for_member(member) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens_issue(member=member).access}")
    return client


@pytest.fixture
def member_client(member):
    return client_for_member(member)


@pytest.fixture
def other_member_client(other_member):
    return client_for_member(other_member)


ALL_ACTIONS = ["lookup", "earn", "refund", "adjust", "verify_coupon", "checkout"]


def client_for_key(store, actions=ALL_ACTIONS, acting_user=None) -> APIClient:
    _key, raw = store_key_create(store=store, name="till 1", actions=actions, acting_user=acting_user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    return client


@pytest.fixture
def key_client(store, adjuster):
    return client_for_key(store, acting_user=adjuster)


@pytest.fixture
def pos_staff(django_user_model, store):
    """A staff user working at ``store`` (members.scoping: a profile names the stores)."""
    user = django_user_model.objects.create_user("till-staff", password="not-a-real-password-42", is_staff=True)
    codenames = ["pos_lookup", "pos_earn", "pos_refund", "pos_verify_coupon", "pos_checkout"]
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames, content_type__app_label="api"))
    StaffProfile.objects.create(user=user).stores.set([store])
    return user


@pytest.fixture
def staff_client(pos_staff):
    client = APIClient()
    response = client.post(
        "/api/v1/auth/staff-token/", {"username": "till-staff", "password": "not-a-real-password-42"}, format="json"
    )
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['token']}")
    return client
