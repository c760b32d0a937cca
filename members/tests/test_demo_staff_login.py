"""manage.py demo_staff_login: one login per role, each landing where the role works."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from loyalty.tests.factories import StoreFactory
from members.scoping import CLERK, STORE_MANAGER

pytestmark = pytest.mark.django_db


def test_three_logins_one_password_scoped_to_the_first_store(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    call_command("setup_roles", stdout=StringIO())
    first, _other = StoreFactory(code="s1"), StoreFactory(code="s2")
    out = StringIO()
    call_command("demo_staff_login", stdout=out)
    call_command("demo_staff_login", stdout=StringIO())  # twice: the same users, the same password
    password = (tmp_path / "demo-staff-login.txt").read_text().strip()
    assert password in out.getvalue() and "manager" in out.getvalue() and "clerk" in out.getvalue()
    User = get_user_model()
    assert User.objects.count() == 3
    for name, role in (("manager", STORE_MANAGER), ("clerk", CLERK)):
        user = User.objects.get(username=name)
        assert user.is_staff and not user.is_superuser and user.check_password(password)
        assert list(user.groups.values_list("name", flat=True)) == [role]
        assert list(user.staff_profile.stores.all()) == [first]
    assert User.objects.get(username="admin").is_superuser


def test_each_role_lands_where_it_works(client, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    call_command("setup_roles", stdout=StringIO())
    StoreFactory(code="s1")
    call_command("demo_staff_login", stdout=StringIO())
    password = (tmp_path / "demo-staff-login.txt").read_text().strip()
    landed = {}
    for name in ("admin", "manager", "clerk"):
        client.logout()
        # As the sign-in form posts it (its hidden "next" is the index).
        answer = client.post("/admin/login/", {"username": name, "password": password, "next": "/admin/"})
        landed[name] = answer.headers.get("Location", "")
    assert "till" in landed["clerk"], landed
    assert "dashboard" in landed["manager"], landed
