"""Notices in the member's own language: written in it, delivered in it, switched with it."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import translation
from django.utils.translation import gettext_lazy

from loyalty.tests.factories import MemberFactory
from members.language import member_language_set
from members.models import Member, Notification
from members.notifications import Notice, in_languages, notices_enqueue, notification_text, notifications_send_pending

pytestmark = pytest.mark.django_db

SENT = []


class RecordingSender:
    def send(self, notification):
        SENT.append((notification.member_id, notification.title, notification.body, dict(notification.data)))


class Named:
    """Content stored per language, as a tier is (modeltranslation reads the active one)."""

    @property
    def name(self):
        return {"en": "Diamond", "zh-hans": "钻石会员"}[translation.get_language()]


def tier_notice(member, key):
    return Notice(
        member_id=member.pk,
        kind=Notification.Kind.TIER_UP,
        title=gettext_lazy("Welcome to %(tier)s"),
        body=gettext_lazy("Our staff set your tier to %(tier)s."),
        params={"tier": in_languages(Named(), "name"), "growth": 5},
        dedupe_key=key,
    )


def test_an_english_member_gets_english_and_a_chinese_member_chinese():
    english = MemberFactory(language="en")
    chinese = MemberFactory(language="zh-hans")
    with translation.override("zh-hans"):  # the caller's language does not matter
        assert notices_enqueue([tier_notice(english, "en"), tier_notice(chinese, "zh")]) == 2
    en = Notification.objects.get(member=english)
    zh = Notification.objects.get(member=chinese)
    assert (en.title, en.body) == ("Welcome to Diamond", "Our staff set your tier to Diamond.")
    assert zh.title == "欢迎成为钻石会员"
    assert "钻石会员" in zh.body and "staff" not in zh.body
    # The channels' template values are in the member's language too.
    assert en.data["params"] == {"tier": "Diamond", "growth": 5}
    assert zh.data["params"] == {"tier": "钻石会员", "growth": 5}


def test_a_member_without_a_language_gets_the_sites(settings):
    settings.LANGUAGE_CODE = "en"
    member = MemberFactory()
    notices_enqueue([tier_notice(member, "site")])
    assert Notification.objects.get().title == "Welcome to Diamond"


def test_delivery_renders_again_in_the_language_the_member_has_now(settings):
    settings.LOYALTY_NOTIFICATION_SENDER = f"{__name__}.RecordingSender"
    SENT.clear()
    member = MemberFactory(language="zh-hans")
    notices_enqueue([tier_notice(member, "switch")])
    assert "钻石会员" in Notification.objects.get().title
    Member.objects.filter(pk=member.pk).update(language="en")
    assert notifications_send_pending()["sent"] == 1
    assert SENT[0][1:3] == ("Welcome to Diamond", "Our staff set your tier to Diamond.")
    assert SENT[0][3]["params"]["tier"] == "Diamond"
    row = Notification.objects.get()
    assert (row.title, row.data["params"]["tier"]) == ("Welcome to Diamond", "Diamond")


def test_plain_text_notices_are_the_same_in_every_language():
    english, chinese = MemberFactory(language="en"), MemberFactory(language="zh-hans")
    notices_enqueue(
        [
            Notice(member_id=m.pk, kind="other", title="20% off", body="Show this.", dedupe_key=f"p{m.pk}")
            for m in (english, chinese)
        ]
    )
    assert set(Notification.objects.values_list("title", "body")) == {("20% off", "Show this.")}
    assert "text" not in Notification.objects.first().data


def test_pages_and_the_api_can_show_a_notice_in_the_readers_language():
    member = MemberFactory(language="zh-hans")
    notices_enqueue([tier_notice(member, "read")])
    row = Notification.objects.get()
    assert notification_text(row, "en") == ("Welcome to Diamond", "Our staff set your tier to Diamond.")
    with translation.override("zh-hans"):
        assert "钻石会员" in notification_text(row)[0]


def test_lazy_parameters_are_kept_in_every_language():
    member = MemberFactory(language="en")
    notice = Notice(
        member_id=member.pk,
        kind="other",
        title=gettext_lazy("Welcome to %(tier)s"),
        params={"tier": gettext_lazy("points")},
        dedupe_key="lazy",
    )
    notices_enqueue([notice])
    row = Notification.objects.get()
    assert row.title == "Welcome to points"
    assert set(row.data["text"]["params"]["tier"]["i18n"]) == {"en", "zh-hans"}


def test_signing_in_and_switching_language_record_the_members_language():
    member = MemberFactory()
    user = get_user_model().objects.create_user(username=f"m{member.pk}", password="x" * 12)
    Member.objects.filter(pk=member.pk).update(user=user)
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    member.refresh_from_db()
    assert member.language in {"", "en"}  # force_login has no page language; a real sign-in has
    response = client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/me/"})
    assert response.status_code == 302
    member.refresh_from_db()
    assert member.language == "zh-hans"
    client.post("/i18n/setlang/", {"language": "en", "next": "/me/"})
    member.refresh_from_db()
    assert member.language == "en"


def test_an_unknown_language_is_not_recorded():
    member = MemberFactory(language="en")
    user = get_user_model().objects.create_user(username=f"u{member.pk}", password="x" * 12)
    Member.objects.filter(pk=member.pk).update(user=user)
    assert member_language_set(user_id=user.pk, language="xx") == 0
    assert member_language_set(user_id=user.pk, language="zh-hans") == 1
    assert member_language_set(user_id=user.pk, language="zh-hans") == 0  # nothing to change
    member.refresh_from_db()
    assert member.language == "zh-hans"
