"""Create the demo's staff logins once and print them (development only).

Three people, one per role, so a new user can see where each lands (docs/roles.md): the
superuser ``admin`` (brand admin: the dashboard and its "needs attention" list), ``manager``
(Store manager of the first store: that store's dashboard) and ``clerk`` (Clerk at the same
store: the till). They share one password, kept in ``var/demo-staff-login.txt``.
"""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from members.models import StaffProfile, Store
from members.scoping import CLERK, STORE_MANAGER

# (username, role group or None for the superuser, adjustment limit)
SCOPED = (("manager", STORE_MANAGER, 2000), ("clerk", CLERK, 200))


class Command(BaseCommand):
    help = "Create the demo's staff logins (admin, manager, clerk) on first run and print them every run."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--url", default="http://127.0.0.1:8000/admin/")

    @transaction.atomic
    def handle(self, *args, username, url, **options):
        if settings.PRODUCTION:
            raise CommandError("demo_staff_login is for development; use createsuperuser in production.")
        secret_file = settings.VAR_DIR / "demo-staff-login.txt"
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        password = secret_file.read_text().strip() if secret_file.exists() else ""
        if user is None or not password or not user.check_password(password):
            password = secrets.token_urlsafe(12)
            user = user or User(username=username, email=f"{username}@example.com")
            user.is_staff = user.is_superuser = True
            user.set_password(password)
            user.save()
            settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
            secret_file.write_text(password + "\n")
            secret_file.chmod(0o600)
        self.stdout.write(self.style.SUCCESS(f"Staff login: {url}  user: {username}  password: {password}"))
        store = Store.objects.order_by("pk").first()
        if store is None:
            return
        for name, role, limit in SCOPED:
            group = Group.objects.filter(name=role).first()
            if group is None:  # setup_roles has not run
                continue
            scoped = User.objects.filter(username=name).first() or User(username=name, email=f"{name}@example.com")
            scoped.is_staff, scoped.is_superuser = True, False
            if not scoped.check_password(password):
                scoped.set_password(password)
            scoped.save()
            scoped.groups.set([group])
            profile, _created = StaffProfile.objects.get_or_create(user=scoped, defaults={"adjust_limit": limit})
            profile.stores.set([store])
            self.stdout.write(f"             user: {name}  ({role}, {store.name})  same password")
