"""The demo's stores and the staff user its adjustments are attributed to."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from members.models import Store

from .programme import both
from .run import DemoRun

DEMO_STAFF_USERNAME = "demo-ops"

STORES = [
    # code, name (Chinese, English), city, address, order-number prefix, share of members at home there
    ("sh-jingan", ("上海静安店", "Shanghai Jing'an"), "上海", "上海市静安区南京西路 1266 号 2 楼", "SHJA", 45),
    ("bj-sanlitun", ("北京三里屯店", "Beijing Sanlitun"), "北京", "北京市朝阳区三里屯路 19 号院 3 号楼", "BJSL", 30),
    ("gz-tianhe", ("广州天河店", "Guangzhou Tianhe"), "广州", "广州市天河区天河路 208 号 1 楼", "GZTH", 25),
]
DEMO_STORE_CODES = [code for code, *_rest in STORES]
STORE_SHARES = [share for *_rest, share in STORES]


def store_prefix(store_code: str) -> str:
    """The order-number prefix of a demo store."""
    return next(prefix for code, _name, _city, _address, prefix, _share in STORES if code == store_code)


def stores_seed(run: DemoRun) -> dict[str, Store]:
    # There is no store service yet: stores are reference data the admin edits directly.
    stores = {}
    for code, name, city, address, _prefix, _share in STORES:
        stores[code], _created = Store.objects.get_or_create(
            code=code, defaults={**both("name", name), "city": city, "address": address, "created_at": run.start}
        )
    return stores


def staff_user_seed():
    user, created = get_user_model().objects.get_or_create(
        username=DEMO_STAFF_USERNAME,
        defaults={"first_name": "演示", "last_name": "运营", "is_staff": True, "email": "demo-ops@example.com"},
    )
    if created:
        # Attributes the demo's adjustments; nobody signs in as this user.
        user.set_unusable_password()
        user.save(update_fields=["password"])
        user.user_permissions.add(Permission.objects.get(codename="adjust_points", content_type__app_label="loyalty"))
    return user
