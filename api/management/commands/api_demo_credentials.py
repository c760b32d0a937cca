"""Credentials to try the API with curl (docs/api.md): a demo member and a demo store key.

The demo member signs in with the fake mini-program adapter's code ``demo``; the store
key acts for the first demo store. Refused in production.
"""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand, CommandError

from api.models import StoreApiKey
from api.services import store_key_create
from loyalty.services import points_award
from members.models import Store
from members.services import member_bind_miniprogram
from operations.actions import member_for_phone_sign_in
from rewards.models import Reward

DEMO_PHONE = "+8613800138000"
DEMO_CODE = "demo"
KEY_NAME = "demo till (docs/api.md)"


class Command(BaseCommand):
    help = "Print a demo member's sign-in code and a new demo store API key for trying the API."

    def handle(self, *args, **options):
        if settings.PRODUCTION:
            raise CommandError("Refused in production: demo credentials are for development only.")
        if not settings.LOYALTY_MINIPROGRAM_ADAPTER.endswith("FakeAdapter"):
            raise CommandError("The demo sign-in needs LOYALTY_MINIPROGRAM_ADAPTER=members.miniprogram.FakeAdapter.")
        store = Store.objects.filter(is_active=True).order_by("code").first()
        if store is None:
            store = Store.objects.create(code="demo", name="Demo store")
        member = member_for_phone_sign_in(phone=DEMO_PHONE)
        member_bind_miniprogram(member=member, openid=f"fake-openid-{DEMO_CODE}", unionid=f"fake-unionid-{DEMO_CODE}")
        points_award(
            member=member, currency="points", amount=2000, reason="API demo", idempotency_key="api-demo-welcome"
        )
        if not Reward.objects.filter(is_active=True, points_cost__lte=500).exists():
            Reward.objects.create(name="Demo latte voucher", points_cost=500, stock=100, coupon_kind="gift")
        user, _created = get_user_model().objects.get_or_create(
            username="api-demo-till", defaults={"is_staff": True, "is_active": True}
        )
        user.user_permissions.add(Permission.objects.get(codename="adjust_points", content_type__app_label="loyalty"))
        StoreApiKey.objects.filter(name=KEY_NAME).update(is_active=False)
        _key, raw = store_key_create(
            store=store, name=KEY_NAME, actions=list(StoreApiKey.Action.values), acting_user=user
        )
        self.stdout.write(
            f"Demo member {member.member_number} ({member.phone}): sign in with mini-program code {DEMO_CODE!r}"
        )
        self.stdout.write(f"Demo store key for store {store.code} (all actions; earlier demo keys disabled):")
        self.stdout.write(raw)
