"""members.notifications.notices_enqueue: the one way a notice gets into the outbox."""

import datetime as dt

import pytest
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy

from loyalty.tests.factories import MemberFactory
from members.models import Member, Notification
from members.notifications import Notice, notices_enqueue, notify

pytestmark = pytest.mark.django_db


def notice(member, key, **fields):
    return Notice(
        member_id=member.pk, kind=Notification.Kind.OTHER, title=fields.pop("title", "Hi"), dedupe_key=key, **fields
    )


def test_one_insert_for_many_and_a_rerun_writes_nothing(django_assert_num_queries):
    members = MemberFactory.create_batch(3)
    with django_assert_num_queries(1):
        assert notices_enqueue([notice(m, f"k:{m.pk}") for m in members]) == 3
    assert notices_enqueue([notice(m, f"k:{m.pk}") for m in members]) == 0
    assert Notification.objects.count() == 3
    assert notices_enqueue([]) == 0


def test_erased_and_closed_members_get_nothing():
    active, closed, erased, frozen = MemberFactory.create_batch(4)
    Member.objects.filter(pk=closed.pk).update(status=Member.Status.CLOSED)
    Member.objects.filter(pk=erased.pk).update(erased_at=timezone.now())
    Member.objects.filter(pk=frozen.pk).update(status=Member.Status.FROZEN)
    assert notices_enqueue([notice(m, f"k:{m.pk}") for m in (active, closed, erased, frozen)]) == 2
    assert set(Notification.objects.values_list("member_id", flat=True)) == {active.pk, frozen.pk}
    assert notify(member_id=closed.pk, kind="other", title="t", dedupe_key="closed") is False


def test_marketing_needs_consent_on_some_channel():
    without, by_sms, by_wechat = MemberFactory.create_batch(3)
    Member.objects.filter(pk=by_sms.pk).update(sms_consent_at=timezone.now())
    Member.objects.filter(pk=by_wechat.pk).update(wechat_consent_at=timezone.now())
    offered = [notice(m, f"m:{m.pk}") for m in (without, by_sms, by_wechat)]
    assert notices_enqueue(offered, marketing=True) == 2
    assert not Notification.objects.filter(member=without).exists()
    assert notices_enqueue([notice(without, "service")]) == 1  # a service notice needs none


def test_texts_are_written_in_the_members_language_whatever_the_caller_speaks(settings):
    settings.LANGUAGE_CODE = "zh-hans"
    member = MemberFactory()
    with translation.override("en"):
        notices_enqueue(
            [
                notice(
                    member,
                    "tier",
                    title=gettext_lazy("Welcome to %(tier)s"),
                    body=gettext_lazy("Our staff set your tier to %(tier)s."),
                    params={"tier": "Gold"},
                    data={"x": 1},
                )
            ],
            now=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        )
    row = Notification.objects.get()
    with translation.override("zh-hans"):
        assert row.title == str(gettext_lazy("Welcome to %(tier)s")) % {"tier": "Gold"} != "Welcome to Gold"
    # The values travel in data["params"] too, for the channels' templates (outreach.routing).
    # The text itself is kept as written, with its values, to render again when delivered.
    text = {"title": "Welcome to %(tier)s", "body": "Our staff set your tier to %(tier)s.", "params": {"tier": "Gold"}}
    assert (row.data, row.created_at) == (
        {"x": 1, "params": {"tier": "Gold"}, "text": text},
        dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )


def test_plain_text_is_kept_as_written_and_long_titles_are_cut():
    member = MemberFactory()
    notices_enqueue([notice(member, "plain", title="100% off {name} " + "x" * 300, body="50% today")])
    row = Notification.objects.get()
    assert row.title.startswith("100% off {name} ") and len(row.title) == 200 and row.body == "50% today"
