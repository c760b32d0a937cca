"""Seeds the contract tests' database and prints what they need as JSON.

Run by scripts/sdk_check.sh on a fresh copy of the migrated test database:
``python clients/typescript/test/seed.py > seed.json``. Members are not seeded: the tests
make them through the API (mini-program sign-in with the fake adapter), as a client would.
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Permission  # noqa: E402

from api.models import StoreApiKey  # noqa: E402
from api.services import store_key_create  # noqa: E402
from members.models import Store  # noqa: E402
from rewards.models import Reward  # noqa: E402


def main() -> None:
    if settings.PRODUCTION or not settings.LOYALTY_MINIPROGRAM_ADAPTER.endswith("FakeAdapter"):
        raise SystemExit("The SDK contract seed runs in development with the fake mini-program adapter only.")
    store = Store.objects.create(code="sdk01", name="SDK test store")
    other = Store.objects.create(code="sdk02", name="SDK other store")
    user = get_user_model().objects.create(username="sdk-till", is_staff=True, is_active=True)
    user.user_permissions.add(Permission.objects.get(codename="adjust_points", content_type__app_label="loyalty"))
    _key, raw = store_key_create(
        store=store, name="SDK contract tests", actions=list(StoreApiKey.Action.values), acting_user=user
    )
    rewards = [
        Reward.objects.create(name="SDK latte voucher", points_cost=100, stock=1000, coupon_kind="gift"),
        Reward.objects.create(name="SDK tote bag", points_cost=300, stock=1000, coupon_kind="gift"),
    ]
    json.dump(
        {
            "store_key": raw,
            "store": store.code,
            "other_store": other.code,
            "rewards": [{"id": r.pk, "name": r.name, "points_cost": r.points_cost} for r in rewards],
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
