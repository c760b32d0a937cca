"""Member pages, the admin, the scheduled jobs and their schedules, both languages."""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone, translation
from django_celery_beat.models import PeriodicTask

from center.services import member_user_for_sign_in
from loyalty.tests.factories import MemberFactory
from members.models import Notification
from programme import jobs, services
from programme.models import Membership, PlanGrant, PlanOrder
from programme.tasks import membership_housekeeping, renew_memberships
from rewards.models import Coupon

from .conftest import DAY

pytestmark = pytest.mark.django_db


@pytest.fixture
def member_client(client, member):
    client.force_login(member_user_for_sign_in(member=member))
    return client


def test_member_page_buy_pay_cancel(member_client, member, plan, django_assert_max_num_queries):
    with django_assert_max_num_queries(12):
        page = member_client.get(reverse("center:plus"))
    assert page.status_code == 200 and "PLUS" in page.content.decode()
    member_client.post(reverse("center:plus_buy"), {"plan": "plus", "auto_renew": "1"})
    assert not PlanOrder.objects.exists()  # no consent: refused, nothing written
    member_client.post(reverse("center:plus_buy"), {"plan": "plus", "auto_renew": "1", "consent": "1"})
    order = PlanOrder.objects.get()
    assert "Pay (test payment)" in member_client.get(reverse("center:plus")).content.decode()
    member_client.post(reverse("center:plus_pay", args=[order.number]))
    assert Membership.objects.get(member=member).auto_renew
    member_client.post(reverse("center:plus_cancel"))
    assert not Membership.objects.get(member=member).auto_renew
    assert "Does not renew automatically." in member_client.get(reverse("center:plus")).content.decode()


def test_member_page_cannot_pay_another_members_order(member_client, plan):
    other = services.plan_purchase_start(member=MemberFactory(), plan=plan).order
    assert member_client.post(reverse("center:plus_pay", args=[other.number])).status_code == 404
    assert PlanOrder.objects.get().status == "pending"


def test_member_page_in_chinese(member_client, plan):
    page = member_client.get(reverse("center:plus"), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "付费会员" in page


def test_notice_texts_are_translated(paid):
    with translation.override("zh-hans"):
        from django.utils.translation import gettext

        assert gettext("Welcome to %(plan)s") != "Welcome to %(plan)s"
        assert gettext("The %(days)s days in which a paid membership can be refunded are over.") != (
            "The %(days)s days in which a paid membership can be refunded are over."
        )


def test_admin_lists_and_refunds_with_a_reason(admin_client, paid):
    page = admin_client.get(reverse("admin:programme_planorder_changelist"))
    html = page.content.decode()
    assert page.status_code == 200 and "Paying members now</dt><dd>1</dd>" in html and "¥99.00" in html
    url = reverse("admin:programme_planorder_changelist")
    admin_client.post(url, {"action": "refund", "_selected_action": [paid.pk], "reason": ""})
    assert PlanOrder.objects.get().status == "paid"
    admin_client.post(url, {"action": "refund", "_selected_action": [paid.pk], "reason": "asked within 7 days"})
    assert PlanOrder.objects.get().status == "refunded"
    for name in ("plan", "membership", "plangrant"):
        assert admin_client.get(reverse(f"admin:programme_{name}_changelist")).status_code == 200


def test_renewal_job_charges_once_with_consent(paid, member, plan):
    membership = Membership.objects.get(member=member)
    soon = membership.ends_at - dt.timedelta(hours=2)
    assert jobs.memberships_renew(now=soon) == {"charged": 1, "waiting": 0, "failed": 0}
    assert jobs.memberships_renew(now=soon) == {"charged": 0, "waiting": 0, "failed": 0}
    renewal = PlanOrder.objects.get(kind=PlanOrder.Kind.RENEWAL)
    assert renewal.status == "paid" and renewal.period_start == membership.ends_at
    assert Membership.objects.get(member=member).ends_at == renewal.period_end


def test_renewal_job_skips_cancelled_and_unconsented(paid, member):
    services.membership_cancel(member=member)
    membership = Membership.objects.get(member=member)
    assert jobs.memberships_renew(now=membership.ends_at - DAY / 2)["charged"] == 0
    assert PlanOrder.objects.count() == 1


def test_renewal_failure_tells_the_member(paid, member, settings):
    settings.PROGRAMME_PAYMENT_ADAPTER = "wechat"
    settings.PROGRAMME_WECHAT_PAY = {}
    membership = Membership.objects.get(member=member)
    assert jobs.memberships_renew(now=membership.ends_at - DAY / 2)["failed"] == 1
    assert PlanOrder.objects.get(kind="renewal").status == "failed"
    assert Notification.objects.filter(member=member, dedupe_key__startswith="programme:renewal-failed").exists()


def test_trial_ends_in_a_charge_that_brings_the_welcome_gift(member, plan):
    membership = services.trial_start(member=member, plan=plan, consent=True)
    jobs.memberships_renew(now=membership.ends_at - dt.timedelta(hours=1))
    order = PlanOrder.objects.get()
    assert order.kind == "purchase" and order.status == "paid"
    assert PlanGrant.objects.filter(kind="welcome_points", member=member).exists()


def test_housekeeping_notices_ends_and_gives_coupons(paid, member):
    membership = Membership.objects.get(member=member)
    notice_time = membership.ends_at - 2 * DAY
    assert jobs.memberships_housekeeping(now=notice_time)["noticed"] == 1
    assert jobs.memberships_housekeeping(now=notice_time)["noticed"] == 0
    services.membership_cancel(member=member)
    after = membership.ends_at + dt.timedelta(minutes=1)
    assert jobs.memberships_housekeeping(now=after)["ended"] == 1
    assert Membership.objects.get(member=member).status == "ended"
    next_month = timezone.now() + 35 * DAY
    Membership.objects.filter(member=member).update(status="active", ends_at=next_month + 30 * DAY)
    assert jobs.memberships_housekeeping(now=next_month)["coupons"] == 2
    assert jobs.memberships_housekeeping(now=next_month)["coupons"] == 0
    assert Coupon.objects.filter(member=member).count() == 6  # now, the renewal notice month, next month


def test_tasks_are_on_the_ledger_queue_and_scheduled():
    from config.celery import app

    for task in (renew_memberships, membership_housekeeping):
        assert app.amqp.router.route({}, task.name, (), {})["queue"].name == "ledger"
    # The data migrations write the schedules; a transactional test elsewhere may have
    # flushed them, so write them again here (get_or_create: harmless when present).
    from importlib import import_module

    from django.apps import apps

    for name in ("0002_schedules", "0005_badge_schedule"):
        import_module(f"programme.migrations.{name}").create(apps, None)
    tasks = dict(PeriodicTask.objects.filter(task__startswith="programme.").values_list("task", "queue"))
    assert tasks == {
        "programme.renew_memberships": "ledger",
        "programme.membership_housekeeping": "ledger",
        "programme.badges_sweep": "ledger",
    }


def test_checks_refuse_an_unknown_adapter_and_warn_of_the_fake_one_in_production(settings):
    from programme.checks import payment_settings

    settings.PROGRAMME_PAYMENT_ADAPTER = "cash"
    assert [p.id for p in payment_settings(None)] == ["programme.E001"]
    settings.PROGRAMME_PAYMENT_ADAPTER, settings.PRODUCTION = "fake", True
    assert [p.id for p in payment_settings(None)] == ["programme.W001"]


def test_demo_seed_shows_a_paying_member_a_transfer_and_badges(db):
    from django.core.management import call_command

    from loyalty import services as ledger
    from loyalty.tests.factories import StoreFactory
    from programme.models import MemberBadge, Transfer

    for i in range(3):
        member = MemberFactory()
        ledger.points_award(member=member, currency="points", amount=1000, reason="seed", idempotency_key=f"s{i}")
        ledger.order_earn(member=member, store=StoreFactory(code="d1"), number=f"D{i}", amount="50.00")
    fan = MemberFactory()
    call_command("seed_programme_demo")
    call_command("seed_programme_demo")  # twice: nothing new
    assert Membership.objects.filter(status="active").count() == 1
    assert fan.contributions.count() == 1
    assert Transfer.objects.count() == 1 and MemberBadge.objects.count() == 3
    from programme.models import Partner, PartnerEarn, PartnerVoucher
    from programme.partners import parse_month, partner_settlement

    carwash = Partner.objects.get(code="sparkle-wash")
    assert PartnerEarn.objects.count() == 12 and PartnerVoucher.objects.filter(status="used").count() == 1
    last_month = parse_month(None).replace(day=1) - dt.timedelta(days=1)
    settled = partner_settlement(partner=carwash, month=last_month.replace(day=1))
    assert (settled.orders, settled.points_issued) == (6, 648)  # 3 members × (88 + 128)
