import datetime as dt

import pytest
from django.core.cache import cache
from django.utils import timezone

from center.services import member_user_for_sign_in
from center.tests.helpers import OutboxSender
from loyalty.models import Tier
from loyalty.tests.factories import MemberFactory, StoreFactory


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def outbox(settings):
    settings.LOYALTY_NOTIFICATION_SENDER = "center.tests.helpers.OutboxSender"
    OutboxSender.sent.clear()
    return OutboxSender.sent


@pytest.fixture
def tiers(db):
    return {
        "regular": Tier.objects.create(code="regular", name="Classic", rank=0, is_default=True),
        "silver": Tier.objects.create(
            code="silver", name="Silver", rank=1, qualify_threshold=1000, retain_threshold=800
        ),
        "gold": Tier.objects.create(code="gold", name="Gold", rank=2, qualify_threshold=3000, retain_threshold=2400),
    }


@pytest.fixture
def store(db):
    return StoreFactory(code="sh-jingan", name="Jing'an store")


@pytest.fixture
def member(db):
    return MemberFactory(name="Li Wei", joined_at=timezone.now() - dt.timedelta(days=400))


@pytest.fixture
def member_client(client, member):
    client.force_login(member_user_for_sign_in(member=member))
    return client


@pytest.fixture
def other_member(db):
    return MemberFactory(name="Wang Fang")
