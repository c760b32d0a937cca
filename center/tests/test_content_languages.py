"""Content stored per language (issue 17): tier, benefit, reward, rule and store names in
the reader's language on the member pages, the API and the admin."""

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone, translation

from api.tests.conftest import client_for_member
from center.tests.data import earn
from loyalty.models import Benefit, EarnRule, LedgerEntry, MemberTier, Tier, line_name
from rewards.models import Reward

pytestmark = pytest.mark.django_db


def _text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


@pytest.fixture
def diamond(db):
    tier = Tier.objects.create(code="diamond", name_zh_hans="钻石会员", name_en="Diamond", rank=0, is_default=True)
    Benefit.objects.create(
        tier=tier, kind=Benefit.Kind.CUSTOM_TEXT, title_zh_hans="专属顾问", title_en="A personal adviser"
    )
    return tier


@pytest.fixture
def content(db, member, diamond, store):
    from members.models import Store

    Store.objects.filter(pk=store.pk).update(name_zh_hans="上海静安店", name_en="Shanghai Jing'an")
    MemberTier.objects.create(
        member=member, tier=diamond, started_at=timezone.now(), review_at=timezone.now() + dt.timedelta(days=300)
    )
    Reward.objects.create(
        name_zh_hans="咖啡券", name_en="Coffee voucher", description_zh_hans="任意一杯", description_en="Any coffee",
        points_cost=100,
    )  # fmt: skip
    EarnRule.objects.create(
        name_zh_hans="基础积分", name_en="Base rate: 1 point per yuan", kind=EarnRule.Kind.BASE,
        value=Decimal("1"), valid_from=timezone.now() - dt.timedelta(days=1),
    )  # fmt: skip
    earn(member, store, "SHJA-1", "50.00")


def test_the_model_reads_the_active_language_and_falls_back_to_the_other(diamond):
    with translation.override("en"):
        assert diamond.name == "Diamond"
    with translation.override("zh-hans"):
        assert diamond.name == "钻石会员"
    only_chinese = Tier.objects.create(code="x", name_zh_hans="金卡", rank=5)
    with translation.override("en"):
        assert only_chinese.name == "金卡"  # until staff write the English name


@pytest.mark.parametrize(
    ("language", "seen", "unseen"),
    [
        ("en", ["Diamond", "Coffee voucher"], ["钻石会员", "咖啡券"]),
        ("zh-hans", ["钻石会员", "咖啡券"], ["Diamond", "Coffee voucher"]),
    ],
)
def test_member_pages_show_content_in_the_members_language(member_client, content, language, seen, unseen):
    member_client.cookies["django_language"] = language
    pages = "".join(_text(member_client.get(reverse(name))) for name in ("center:home", "center:rewards"))
    for text in seen:
        assert text in pages, text
    for text in unseen:
        assert text not in pages, text


@pytest.mark.parametrize(("language", "store_name"), [("en", "Shanghai Jing&#x27;an"), ("zh-hans", "上海静安店")])
def test_history_shows_the_store_in_the_members_language(member_client, content, language, store_name):
    member_client.cookies["django_language"] = language
    assert store_name in _text(member_client.get(reverse("center:history")))


@pytest.mark.parametrize(
    ("language", "tier", "rule", "store_name", "reward"),
    [
        ("en", "Diamond", "Base rate: 1 point per yuan", "Shanghai Jing'an", "Coffee voucher"),
        ("zh-hans", "钻石会员", "基础积分", "上海静安店", "咖啡券"),
    ],
)
def test_the_api_honours_accept_language(member, content, language, tier, rule, store_name, reward):
    client = client_for_member(member)
    headers = {"HTTP_ACCEPT_LANGUAGE": language}
    assert client.get("/api/v1/me/tier/", **headers).json()["tier"]["name"] == tier
    entries = client.get("/api/v1/me/entries/", **headers).json()["results"]
    earned = next(entry for entry in entries if entry["breakdown"])
    assert earned["store_name"] == store_name
    assert rule  # the rule's name per line: test_a_breakdown_line_keeps_the_rule_name_in_both_languages
    rewards = client.get("/api/v1/rewards/", **headers).json()
    rewards = rewards.get("results", rewards) if isinstance(rewards, dict) else rewards
    assert reward in [offer["name"] for offer in rewards]


def test_a_breakdown_line_keeps_the_rule_name_in_both_languages(content):
    from loyalty.rules import _names

    rule = EarnRule.objects.get(name_zh_hans="基础积分")
    line = {"rule": rule.pk, "name": rule.name, "names": _names(rule)}
    assert line["names"] == {"zh-hans": "基础积分", "en": "Base rate: 1 point per yuan"}
    assert line_name(line, "en") == "Base rate: 1 point per yuan"
    with translation.override("zh-hans"):
        assert line_name(line) == "基础积分"
    entry = LedgerEntry(detail={"lines": [line]})
    with translation.override("en"):
        assert entry.breakdown[0]["name"] == "Base rate: 1 point per yuan"
    assert line_name({"rule": "base", "name": "base rate"}, "en") == "Base rate"


def test_admin_edits_each_language(admin_client, diamond):
    url = reverse("admin:loyalty_tier_change", args=[diamond.pk])
    page = admin_client.get(url).content.decode()
    assert 'name="name_zh_hans"' in page and 'name="name_en"' in page
    for name in ("admin:rewards_reward_add", "admin:members_store_add", "admin:loyalty_earnrule_add"):
        page = admin_client.get(reverse(name)).content.decode()
        assert 'name="name_zh_hans"' in page and 'name="name_en"' in page, name


def _rule_form(**overrides):
    now = timezone.localtime()
    data = {
        "name_zh_hans": "周末双倍",
        "name_en": "Weekend double",
        "kind": "multiplier",
        "applies_to": "points",
        "value": "2",
        "priority": "50",
        "is_active": "on",
        "valid_from_0": now.strftime("%Y-%m-%d"),
        "valid_from_1": "00:00:00",
        "valid_until_0": "",
        "valid_until_1": "",
        "weekdays": ["6", "7"],
        "include_categories": "drinks, food",
        "exclude_categories": "",
        "include_skus": "",
        "exclude_skus": "",
        "cap_per_order": "",
        "cap_per_day": "",
        "_save": "Save",
    }
    data.update(overrides)
    return data


def test_the_earning_rule_form_needs_no_json(admin_client):
    response = admin_client.post(reverse("admin:loyalty_earnrule_add"), _rule_form())
    assert response.status_code == 302
    rule = EarnRule.objects.get()
    assert (rule.name_en, rule.name_zh_hans, rule.weekdays) == ("Weekend double", "周末双倍", "67")
    assert rule.include_categories == ["drinks", "food"]


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"valid_until_0": "2000-01-01", "valid_until_1": "00:00:00"}, "valid_until", "The end must come after"),
        ({"kind": "bonus", "value": "2.5"}, "value", "whole number of points"),
        ({"exclude_categories": "Drinks"}, "exclude_categories", "Included and excluded at once: drinks"),
        ({"weekdays": ["8"]}, "weekdays", "8"),
    ],
)
def test_the_earning_rule_form_says_what_is_wrong(admin_client, overrides, field, message):
    response = admin_client.post(reverse("admin:loyalty_earnrule_add"), _rule_form(**overrides))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert field in errors and message in " ".join(errors[field])
    assert not EarnRule.objects.exists()


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_signing_in_records_the_language_the_member_reads(client, member, outbox, language):
    from center.tests.helpers import last_code
    from members.models import Member

    client.cookies["django_language"] = language
    client.post(reverse("center:sign_in"), {"phone": member.phone})
    client.post(reverse("center:sign_in_code"), {"code": last_code(member.phone)})
    assert Member.objects.get(pk=member.pk).language == language


@pytest.mark.parametrize(("language", "title"), [("en", "Welcome to Diamond"), ("zh-hans", "欢迎成为钻石会员")])
def test_the_api_shows_a_notice_in_the_requests_language(member, diamond, language, title):
    from django.utils.translation import gettext_lazy

    from members.notifications import Notice, in_languages, notices_enqueue

    notices_enqueue(
        [
            Notice(
                member_id=member.pk,
                kind="tier_up",
                title=gettext_lazy("Welcome to %(tier)s"),
                params={"tier": in_languages(diamond, "name")},
                dedupe_key="api-language",
            )
        ]
    )
    response = client_for_member(member).get("/api/v1/me/notifications/", HTTP_ACCEPT_LANGUAGE=language)
    assert response.json()["results"][0]["title"] == title
