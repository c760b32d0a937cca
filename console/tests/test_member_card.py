"""The member page's header card (operations.admin_member_page.MemberPageMixin.member_card)
and its cost: the same queries whatever the member's history."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import translation

from loyalty.services import order_earn, points_adjust
from loyalty.tests.factories import MemberFactory
from members.services import member_set_consent

pytestmark = pytest.mark.django_db


def test_the_card_shows_who_points_tier_stage_tags_and_consent(admin_client, admin_user):
    member = MemberFactory(phone="+8613800138000", name="王芳")
    points_adjust(member=member, currency="points", amount=12345, reason="seed", actor=admin_user)
    member_set_consent(member=member, channel="sms", granted=True, source="web")
    page = admin_client.get(reverse("admin:members_member_change", args=[member.pk])).content.decode()
    assert 'id="member-card"' in page and "王芳" in page
    assert 'id="member-card-phone">+86138****8000<' in page  # masked
    assert 'id="member-card-points">12,345<' in page
    assert "SMS ✓" in page and "Email ✗" in page


def test_the_card_is_in_chinese_for_chinese_staff(admin_client, admin_user):
    member = MemberFactory()
    with translation.override("zh-hans"):
        page = admin_client.get(
            reverse("admin:members_member_change", args=[member.pk]), HTTP_ACCEPT_LANGUAGE="zh-hans"
        ).content.decode()
    assert "可用积分" in page and "30 天内到期" in page and "营销授权" in page


def test_a_long_history_costs_no_more_queries(admin_client, admin_user):
    member = MemberFactory()
    url = reverse("admin:members_member_change", args=[member.pk])
    points_adjust(member=member, currency="points", amount=5, reason="first", actor=admin_user)
    with CaptureQueriesContext(connection) as short:
        admin_client.get(url)
    for n in range(40):
        points_adjust(member=member, currency="points", amount=5, reason=f"gift {n}", actor=admin_user)
        order_earn(member=member, store=member.home_store, number=f"B-{n}", amount="10")
    with CaptureQueriesContext(connection) as long:
        assert admin_client.get(url).status_code == 200
    assert len(long) == len(short)
