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
from django_celery_beat.models import PeriodicTask

from loyalty.services import order_earn, points_adjust
from loyalty.tests.factories import MemberFactory, StoreFactory

pytestmark = pytest.mark.django_db

CATALOGUE = Path(settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"
# Names that stay as they are in Chinese: brands, units, codes.
ALLOWED = {"REST API", "RFM", "WeChat", "openid", "Webhook", "API", "SMS", "CSV", "Excel", "FAST", "PLUS", "JSON"}


def _phrases() -> list[str]:
    ids = re.findall(r'^msgid "((?:[^"\\]|\\.)+)"', CATALOGUE.read_text(encoding="utf-8"), re.M)
    return [
        i for i in set(ids) if re.fullmatch(r"[A-Za-z][A-Za-z ,'’-]+", i) and len(i.split()) >= 2 and i not in ALLOWED
    ]


def _words() -> list[str]:
    """Single capitalised words of our catalogue ("Coupon", "Timeline"): the labels a page
    shows alone, where a missed translation reads as one English word."""
    ids = re.findall(r'^msgid "((?:[^"\\]|\\.)+)"', CATALOGUE.read_text(encoding="utf-8"), re.M)
    return sorted({i for i in ids if re.fullmatch(r"[A-Z][a-z]{3,}", i) and i not in ALLOWED})


def _english_in(page: str, phrases: list[str]) -> list[str]:
    page = re.sub(r"<script.*?</script>", "", page, flags=re.S)
    visible = html.unescape(re.sub(r"<[^>]+>", " ", page))
    attributes = " ".join(html.unescape(a) for a in re.findall(r'(?:placeholder|title|aria-label)="([^"]*)"', page))
    text = f"{visible} {attributes}"
    return sorted(p for p in phrases if re.search(rf"(?<![A-Za-z]){re.escape(p)}(?![A-Za-z])", text))


def test_chinese_admin_pages_have_no_english_sentences_of_ours(admin_client, admin_user):
    call_command("setup_periodic_tasks", stdout=io.StringIO())
    member = MemberFactory(name="王芳", home_store=StoreFactory(name="静安店"))
    points_adjust(member=member, currency="points", amount=500, reason="welcome", actor=admin_user)
    order_earn(member=member, store=member.home_store, number="A-1", amount="88")
    phrases = _phrases()
    assert len(phrases) > 300  # the scan has something to look for
    phrases += _words()
    job = PeriodicTask.objects.order_by("pk").first()
    pages = [
        reverse("admin:index"),
        reverse("loyalty_till") + f"?q={member.member_number}",
        reverse("loyalty_dashboard"),
        reverse("admin:members_member_changelist"),
        reverse("admin:members_member_change", args=[member.pk]),
        reverse("admin:members_member_adjust", args=[member.pk]),
        reverse("admin:members_member_act", args=[member.pk, "freeze"]),
        reverse("admin:members_member_act", args=[member.pk, "add_tags"]),
        reverse("admin:django_celery_beat_periodictask_changelist"),
        reverse("admin:django_celery_beat_periodictask_change", args=[job.pk]),
        reverse("admin:members_segment_add"),
        reverse("admin:members_importjob_add"),
        reverse("admin:loyalty_ledgerentry_changelist"),
        reverse("admin:loyalty_order_changelist"),
    ]
    found = {}
    for url in pages:
        response = admin_client.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans")
        assert response.status_code == 200, url
        english = _english_in(response.content.decode(), phrases)
        if english:
            found[url] = english
    assert found == {}


def test_the_scan_finds_an_english_word_of_ours():
    phrases = _phrases() + _words()
    assert _english_in("<p>时间线 Timeline</p>", phrases) == ["Timeline"]
    assert _english_in('<p title="Adjust points">调整</p>', phrases) == ["Adjust points"]
    assert _english_in("<p>RFM 分层</p><script>Timeline</script>", phrases) == []
