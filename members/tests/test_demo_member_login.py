from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from loyalty import services
from loyalty.tests.factories import MemberFactory, StoreFactory


@pytest.mark.django_db
def test_prints_the_active_member_with_the_most_points():
    store = StoreFactory()
    poor, rich, frozen = MemberFactory(), MemberFactory(), MemberFactory(status="frozen")
    services.points_award(member=poor, currency="points", amount=10, reason="demo", idempotency_key="p", store=store)
    services.points_award(member=rich, currency="points", amount=500, reason="demo", idempotency_key="r", store=store)
    services.points_award(member=rich, currency="growth", amount=1, reason="demo", idempotency_key="g", store=store)
    out = StringIO()
    call_command("demo_member_login", "--url", "http://x/me/", stdout=out)
    assert f"phone: {rich.phone}" in out.getvalue() and "http://x/me/" in out.getvalue()
    assert frozen.phone not in out.getvalue()


@pytest.mark.django_db
def test_says_what_to_do_without_members():
    out = StringIO()
    call_command("demo_member_login", stdout=out)
    assert "seed_demo" in out.getvalue()


def test_refuses_production(settings):
    settings.PRODUCTION = True
    with pytest.raises(CommandError):
        call_command("demo_member_login")
