import datetime as dt

import factory
from django.utils import timezone

from loyalty.tests.factories import MemberFactory
from rewards.models import Coupon, Reward


class CouponFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Coupon

    member = factory.SubFactory(MemberFactory)
    title = "10 yuan off"
    kind = Coupon.Kind.AMOUNT_OFF
    value = 10
    source = Coupon.Source.STAFF
    valid_from = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(days=1))
    expires_at = factory.LazyFunction(lambda: timezone.now() + dt.timedelta(days=30))


class RewardFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Reward

    name = factory.Sequence(lambda n: f"Reward {n}")
    points_cost = 100
    coupon_kind = Coupon.Kind.GIFT
    coupon_valid_days = 30
