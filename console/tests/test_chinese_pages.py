"""The Chinese admin pages show no English sentence of our own catalogue (a small scan of
rendered pages: every English msgid of two words or more, searched in the page's text)."""

import html
import io
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.urls import reverse

from loyalty.services import order_earn, points_adjust
from loyalty.tests.factories import MemberFactory

pytestmark = pytest.mark.django_db

CATALOGUE = Path(settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"
# Names that stay as they are in Chinese.
ALLOWED = {"REST API"}


def _phrases() -> list[str]:
    ids = re.findall(r'^msgid "((?:[^"\\]|\\.)+)"', CATALOGUE.read_text(encoding="utf-8"), re.M)
    return [
        i for i in set(ids) if re.fullmatch(r"[A-Za-z][A-Za-z ,'’-]+", i) and len(i.split()) >= 2 and i not in ALLOWED
    ]


def _english_in(page: str, phrases: list[str]) -> list[str]:
    page = re.sub(r"<script.*?</script>", "", page, flags=re.S)
    visible = html.unescape(re.sub(r"<[^>]+>", " ", page))
    attributes = " ".join(html.unescape(a) for a in re.findall(r'(?:placeholder|title|aria-label)="([^"]*)"', page))
    text = f"{visible} {attributes}"
    return sorted(p for p in phrases if re.search(rf"(?<![A-Za-z]){re.escape(p)}(?![A-Za-z])", text))


def test_chinese_admin_pages_have_no_english_sentences_of_ours(admin_client, admin_user):
    call_command("setup_periodic_tasks", stdout=io.StringIO())
    member = MemberFactory(name="王芳")
    points_adjust(member=member, currency="points", amount=500, reason="welcome", actor=admin_user)
    order_earn(member=member, store=member.home_store, number="A-1", amount="88")
    phrases = _phrases()
    assert len(phrases) > 300  # the scan has something to look for
    pages = [
        reverse("admin:index"),
        reverse("loyalty_till") + f"?q={member.member_number}",
        reverse("loyalty_dashboard"),
        reverse("admin:members_member_changelist"),
        reverse("admin:members_member_change", args=[member.pk]),
        reverse("admin:django_celery_beat_periodictask_changelist"),
    ]
    found = {}
    for url in pages:
        english = _english_in(admin_client.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode(), phrases)
        if english:
            found[url] = english
    assert found == {}
