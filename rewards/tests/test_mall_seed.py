"""The demo's points mall: seeded with pictures, every kind of offer, and real redemptions."""

import re
from io import StringIO

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.utils import translation

from loyalty.models import Benefit, EarnRule, Tier
from loyalty.selectors import ledger_violations
from members.models import Member, Store
from operations.management.commands.seed_demo import DEMO_REDEMPTIONS, MALL
from rewards.models import Coupon, Redemption, Reward
from rewards.selectors import reward_offers

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def test_seed_demo_fills_the_mall_and_some_members_redeem():
    out = StringIO()
    call_command("seed_demo", members=30, stdout=out)

    rewards = list(Reward.objects.order_by("sort_order"))
    # In English (the tests' language): the English names, the Chinese ones beside them.
    assert [r.name for r in rewards] == [row[1][1] for row in MALL]
    assert [r.name_zh_hans for r in rewards] == [row[1][0] for row in MALL]
    assert all(r.image and default_storage.exists(r.image.name) for r in rewards)
    member = Member.objects.order_by("id").first()
    codes = {offer.reward.name: offer.code for offer in reward_offers(member=member)}
    assert codes["Limited-edition tumbler"] == "out_of_stock"
    assert codes["Two cinema tickets"] == "reward_unavailable"
    redemptions = Redemption.objects.filter(status=Redemption.Status.COMPLETED)
    assert 1 <= redemptions.count() <= DEMO_REDEMPTIONS
    assert Coupon.objects.filter(source=Coupon.Source.REDEMPTION, status=Coupon.Status.ISSUED).count() == (
        redemptions.count()
    )
    assert ledger_violations() == []
    assert "rewards in the mall: 8" in out.getvalue()


CHINESE = re.compile(r"[\u3400-\u9fff]")


def test_seed_demo_writes_every_name_in_both_languages():
    call_command("seed_demo", members=5, stdout=StringIO())
    content = [
        (Tier, "name"),
        (Benefit, "title"),
        (EarnRule, "name"),
        (Reward, "name"),
        (Reward, "description"),
        (Store, "name"),
        (Coupon, "title"),
    ]
    for model, field in content:
        for row in model.objects.all():
            with translation.override("en"):
                english = getattr(row, field)
            with translation.override("zh-hans"):
                chinese = getattr(row, field)
            assert english and not CHINESE.search(english), (model.__name__, english)
            assert CHINESE.search(chinese), (model.__name__, chinese)
    with translation.override("en"):
        assert "Diamond" in Tier.objects.values_list("name", flat=True)
