import datetime as dt

import factory
from django.utils import timezone

from loyalty.tests.factories import MemberFactory
from rewards.models import Coupon


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
