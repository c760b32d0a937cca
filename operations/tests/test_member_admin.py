"""Member admin (issue 6): search and filters, the list's columns and query bound, the member
page's history, and the staff actions (pin a tier, tags, freeze, unfreeze, close, adjust),
each recorded with who, when and why (docs/member-admin.md)."""

import datetime as dt

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from core.errors import LoyaltyError
from loyalty.models import Currency, LedgerEntry, MemberTier, Tier, TierChange
from loyalty.services import points_adjust
from loyalty.tests.factories import MemberFactory, StoreFactory
from members import services
from members.models import Member, StaffAction, StaffProfile, StageChange, Tag
from members.scoping import BRAND_ADMIN, STORE_MANAGER, staff_stores
from members.services import (
    member_freeze,
    member_tags_add,
    member_tags_remove,
    member_unfreeze,
)
from operations import actions
from operations.actions import member_points_adjust, member_tier_pin

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:members_member_changelist"
PASSWORD = "not-a-real-password-42"


def change_url(member):
    return reverse("admin:members_member_change", args=[member.pk])


def messages_of(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


def rows(client, **params):
    response = client.get(reverse(CHANGELIST), params)
    assert response.status_code == 200
    return response.context["cl"].result_list


def pks(client, **params):
    return {row.pk for row in rows(client, **params)}


def act(client, action, members, **fields):
    """Submit an action's form for ``members`` (the second step, after choosing it on the list)."""
    data = {"action": action, "_selected_action": [m.pk for m in members], "apply": "1", **fields}
    return client.post(reverse(CHANGELIST), data)


def audit(action=None, **filters):
    queryset = StaffAction.objects.all()
    if action:
        queryset = queryset.filter(action=action)
    return list(queryset.filter(**filters).order_by("member_id"))


def staff(django_user_model, username, *codenames, stores=None, brand=False):
    user = django_user_model.objects.create_user(username, password=PASSWORD, is_staff=True)
    for name in codenames:
        app_label, codename = name.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    if brand:
        user.groups.add(Group.objects.get_or_create(name=BRAND_ADMIN)[0])
    if stores is not None:
        StaffProfile.objects.create(user=user).stores.set(stores)
    return user


@pytest.fixture
def tiers():
    return {
        "bronze": Tier.objects.create(code="bronze", name="Bronze", rank=0, is_default=True),
        "silver": Tier.objects.create(code="silver", name="Silver", rank=1, qualify_threshold=100),
        "gold": Tier.objects.create(code="gold", name="Gold", rank=2, qualify_threshold=1000),
    }


def put_in(member, tier):
    now = timezone.now()
    return MemberTier.objects.create(member=member, tier=tier, started_at=now, review_at=now + dt.timedelta(days=365))


@pytest.fixture
def stores():
    return StoreFactory(code="a"), StoreFactory(code="b")


@pytest.fixture
def manager(django_user_model, stores):
    """A store manager of store A: changes members, adjusts points; cannot pin tiers."""
    user = staff(
        django_user_model,
        "manager",
        "members.view_member",
        "members.change_member",
        "loyalty.adjust_points",
        stores=[stores[0]],
    )
    user.groups.add(Group.objects.get_or_create(name=STORE_MANAGER)[0])
    return user


# --- search and filters ----------------------------------------------------------------------


def test_search_finds_a_member_by_the_whole_openid_only(admin_client):
    member = MemberFactory(wechat_openid="oAbC-123456789")
    MemberFactory(wechat_openid="oXyZ-987654321")

    assert pks(admin_client, q="oAbC-123456789") == {member.pk}
    assert pks(admin_client, q="oAbC") == set()


def test_tier_filter_offers_each_tier_and_narrows_to_its_members(admin_client, tiers):
    gold, silver, none = MemberFactory(), MemberFactory(), MemberFactory()
    put_in(gold, tiers["gold"])
    put_in(silver, tiers["silver"])

    response = admin_client.get(reverse(CHANGELIST))
    tier_filter = next(f for f in response.context["cl"].filter_specs if f.parameter_name == "tier")
    assert [name for _value, name in tier_filter.lookup_choices] == ["Bronze", "Silver", "Gold", "no tier yet"]
    assert pks(admin_client, tier=tiers["gold"].pk) == {gold.pk}
    assert pks(admin_client, tier=tiers["silver"].pk) == {silver.pk}
    assert pks(admin_client, tier="none") == {none.pk}


def test_stage_and_rfm_segment_filters_narrow(admin_client):
    dormant, champion, new = MemberFactory(), MemberFactory(), MemberFactory()
    Member.objects.filter(pk=dormant.pk).update(stage=Member.Stage.DORMANT, rfm_segment=Member.RfmSegment.AT_RISK)
    Member.objects.filter(pk=champion.pk).update(stage=Member.Stage.MATURE, rfm_segment=Member.RfmSegment.CHAMPIONS)
    Member.objects.filter(pk=new.pk).update(stage=Member.Stage.NEW)

    assert pks(admin_client, stage__exact="dormant") == {dormant.pk}
    assert pks(admin_client, stage__exact="new") == {new.pk}
    assert pks(admin_client, rfm_segment__exact="champions") == {champion.pk}
    assert pks(admin_client, rfm_segment__exact="at_risk") == {dormant.pk}


def test_tag_filter_narrows_to_the_tagged_members_once_each(admin_client):
    vip, wholesale = Tag.objects.create(name="VIP"), Tag.objects.create(name="wholesale")
    both, only_vip, untagged = MemberFactory(), MemberFactory(), MemberFactory()
    both.tags.add(vip, wholesale)
    only_vip.tags.add(vip)

    assert [row.pk for row in rows(admin_client, tags__id__exact=vip.pk)].count(both.pk) == 1
    assert pks(admin_client, tags__id__exact=vip.pk) == {both.pk, only_vip.pk}
    assert pks(admin_client, tags__id__exact=wholesale.pk) == {both.pk}
    assert untagged.pk in pks(admin_client)


def test_consent_filter_any_channel_one_channel_or_none(admin_client):
    now = timezone.now()
    by_sms = MemberFactory(sms_consent_at=now)
    by_email = MemberFactory(email_consent_at=now)
    by_wechat = MemberFactory(wechat_consent_at=now)
    silent = MemberFactory()

    assert pks(admin_client, consent="any") == {by_sms.pk, by_email.pk, by_wechat.pk}
    assert pks(admin_client, consent="sms") == {by_sms.pk}
    assert pks(admin_client, consent="email") == {by_email.pk}
    assert pks(admin_client, consent="wechat") == {by_wechat.pk}
    assert pks(admin_client, consent="none") == {silent.pk}


def test_status_and_home_store_filters_narrow(admin_client, stores):
    frozen_a = MemberFactory(home_store=stores[0], status=Member.Status.FROZEN)
    active_a = MemberFactory(home_store=stores[0])
    MemberFactory(home_store=stores[1], status=Member.Status.FROZEN)

    assert pks(admin_client, status__exact="frozen", home_store__id__exact=stores[0].pk) == {frozen_a.pk}
    assert pks(admin_client, home_store__id__exact=stores[0].pk) == {frozen_a.pk, active_a.pk}


def test_home_store_filter_offers_scoped_staff_only_their_stores(client, manager, stores):
    third = StoreFactory(code="c")
    manager.staff_profile.stores.add(third)
    MemberFactory(home_store=stores[0])
    MemberFactory(home_store=stores[1])
    client.force_login(manager)

    response = client.get(reverse(CHANGELIST))
    store_filter = next(
        f for f in response.context["cl"].filter_specs if getattr(f, "field_path", None) == "home_store"
    )
    assert [pk for pk, _name in store_filter.lookup_choices] == [stores[0].pk, third.pk]
    assert not store_filter.include_empty_choice
    # Asking for the other store's members by URL finds none.
    assert pks(client, home_store__id__exact=stores[1].pk) == set()


# --- the list: columns and a bounded number of queries ------------------------------------------


def test_list_shows_tier_available_points_stage_and_segment(admin_client, admin_user, tiers):
    member = MemberFactory()
    put_in(member, tiers["gold"])
    points_adjust(member=member, currency=Currency.POINTS, amount=120, reason="seed", actor=admin_user)
    Member.objects.filter(pk=member.pk).update(stage=Member.Stage.MATURE, rfm_segment=Member.RfmSegment.LOYAL)

    content = admin_client.get(reverse(CHANGELIST)).content.decode()

    for column, value in (
        ("phone", member.phone),
        ("member_number", member.member_number),
        ("tier", "Gold"),
        ("points_balance", "120"),
        ("stage", "mature"),
        ("rfm_segment", "loyal"),
        ("status", "active"),
    ):
        assert f'class="field-{column}' in content and value in content, column


@pytest.mark.parametrize("as_manager", [False, True], ids=["brand admin", "store manager"])
def test_list_runs_the_same_queries_for_1_and_50_members(
    client, admin_user, manager, tiers, stores, django_assert_max_num_queries, as_manager
):
    client.force_login(manager if as_manager else admin_user)
    vip = Tag.objects.create(name="VIP")

    def member():
        m = MemberFactory(home_store=stores[0])
        put_in(m, tiers["silver"])
        m.tags.add(vip)
        points_adjust(member=m, currency=Currency.POINTS, amount=10, reason="seed", actor=admin_user)
        return m

    member()
    with CaptureQueriesContext(connection) as one:
        assert len(rows(client)) == 1
    for _n in range(49):
        member()
    with django_assert_max_num_queries(len(one)):
        assert len(rows(client)) == 50


# --- the member page --------------------------------------------------------------------------


def inline_rows(response, model):
    for inline_formset in response.context["inline_admin_formsets"]:
        if inline_formset.formset.model is model:
            return [form.instance for form in inline_formset.formset.forms]
    raise AssertionError(f"no {model.__name__} inline")


def test_member_page_shows_tier_history_stage_changes_staff_actions_tags_and_figures(
    client, manager, admin_user, tiers, stores
):
    member = MemberFactory(home_store=stores[0])
    first = TierChange.objects.create(member=member, to_tier=tiers["bronze"], reason=TierChange.Reason.JOINED)
    later = TierChange.objects.create(
        member=member,
        from_tier=tiers["bronze"],
        to_tier=tiers["silver"],
        reason=TierChange.Reason.UPGRADE,
        created_at=timezone.now() + dt.timedelta(minutes=1),
    )
    put_in(member, tiers["silver"])
    stage = StageChange.objects.create(member=member, from_stage="", to_stage=Member.Stage.NEW)
    member_tags_add(members=[member], tags=["VIP"], actor=admin_user, reason="big spender")
    Member.objects.filter(pk=member.pk).update(
        stage=Member.Stage.NEW, rfm_recency=5, rfm_frequency=2, rfm_monetary=3, rfm_segment="promising", order_count=4
    )
    # A store manager has no permission on tier changes or staff actions, but sees them here.
    client.force_login(manager)

    response = client.get(change_url(member))

    assert response.status_code == 200
    events = response.context["timeline"].events
    assert [e.tiebreak for e in events if e.kind == "tier"] == [later.pk, first.pk]
    assert [e.tiebreak for e in events if e.kind == "stage"] == [stage.pk]
    assert [e.text for e in events if e.kind == "staff"] == ["added a tag · admin · big spender"]
    content = response.content.decode()
    assert "VIP" in content and "5 / 2 / 3" in content and "Silver" in content
    assert 'name="status"' not in content  # changed through the actions only


def test_member_page_history_runs_a_bounded_number_of_queries(admin_client, admin_user, tiers):
    member = MemberFactory()
    put_in(member, tiers["bronze"])
    member_freeze(member=member, actor=admin_user, reason="check")
    with CaptureQueriesContext(connection) as short:
        assert admin_client.get(change_url(member)).status_code == 200
    for n in range(20):
        member_unfreeze(member=member, actor=admin_user, reason=f"ok {n}")
        member_freeze(member=member, actor=admin_user, reason=f"again {n}")
        TierChange.objects.create(member=member, to_tier=tiers["silver"], reason=TierChange.Reason.UPGRADE)
        StageChange.objects.create(member=member, to_stage=Member.Stage.GROWING)
    with CaptureQueriesContext(connection) as long:
        assert admin_client.get(change_url(member)).status_code == 200
    assert len(long) == len(short)


def test_saving_the_member_form_does_not_change_the_status(admin_client):
    member = MemberFactory()
    data = {"phone": member.phone, "name": "x", "gender": "unknown", "home_store": member.home_store_id}
    data["status"] = "closed"
    form = admin_client.get(change_url(member) + "?edit=1").content.decode()
    assert 'name="name"' in form and 'name="status"' not in form

    assert admin_client.post(change_url(member) + "?edit=1", data).status_code == 302
    member.refresh_from_db()
    assert (member.name, member.status) == ("x", Member.Status.ACTIVE)


# --- actions: tags ----------------------------------------------------------------------------


def test_add_tags_puts_chosen_and_new_tags_on_each_member_with_one_audit_row_each(admin_client, admin_user):
    vip = Tag.objects.create(name="VIP")
    first, second = MemberFactory(), MemberFactory()
    second.tags.add(vip)

    form = admin_client.post(reverse(CHANGELIST), {"action": "add_tags", "_selected_action": [first.pk, second.pk]})
    assert form.status_code == 200 and "admin/members/member/member_action.html" in [t.name for t in form.templates]
    response = act(
        admin_client, "add_tags", [first, second], tags=[vip.pk], new_tags="团购， wholesale", reason="campaign"
    )

    assert response.status_code == 302
    assert set(first.tags.values_list("name", flat=True)) == {"VIP", "团购", "wholesale"}
    assert set(second.tags.values_list("name", flat=True)) == {"VIP", "团购", "wholesale"}
    rows_ = audit(StaffAction.Action.ADD_TAG)
    assert [(r.member_id, r.actor, r.actor_name, r.reason) for r in rows_] == [
        (first.pk, admin_user, admin_user.username, "campaign"),
        (second.pk, admin_user, admin_user.username, "campaign"),
    ]
    assert sorted(rows_[0].detail["tags"]) == ["VIP", "wholesale", "团购"]
    assert sorted(rows_[1].detail["tags"]) == ["wholesale", "团购"]  # had VIP already
    assert StaffAction.objects.count() == 2


def test_adding_tags_a_member_already_has_changes_nothing_and_records_nothing(admin_client):
    vip = Tag.objects.create(name="VIP")
    member = MemberFactory()
    member.tags.add(vip)

    response = act(admin_client, "add_tags", [member], new_tags="vip", reason="again")

    assert list(member.tags.all()) == [vip] and Tag.objects.count() == 1  # matched ignoring case
    assert StaffAction.objects.count() == 0
    assert "1 member already had these tags." in messages_of(response)


@pytest.mark.parametrize(
    "fields",
    [{"new_tags": "VIP", "reason": ""}, {"new_tags": "VIP", "reason": "   "}, {"new_tags": "", "reason": "why"}],
    ids=["no reason", "blank reason", "no tag"],
)
def test_add_tags_without_a_reason_or_a_tag_shows_the_form_again_and_changes_nothing(admin_client, fields):
    member = MemberFactory()

    response = act(admin_client, "add_tags", [member], **fields)

    assert response.status_code == 200 and response.context["form"].errors
    assert member.tags.count() == 0 and Tag.objects.count() == 0 and StaffAction.objects.count() == 0


def test_remove_tags_takes_them_off_with_one_audit_row_per_member_that_had_them(admin_client, admin_user):
    vip, wholesale = Tag.objects.create(name="VIP"), Tag.objects.create(name="wholesale")
    tagged, untagged = MemberFactory(), MemberFactory()
    tagged.tags.add(vip, wholesale)

    act(admin_client, "remove_tags", [tagged, untagged], tags=[vip.pk], reason="left the programme")

    assert list(tagged.tags.all()) == [wholesale]
    [row] = audit(StaffAction.Action.REMOVE_TAG)
    assert (row.member_id, row.actor, row.reason, row.detail) == (
        tagged.pk,
        admin_user,
        "left the programme",
        {"tags": ["VIP"]},
    )


def test_remove_tags_without_a_reason_changes_nothing(admin_client):
    vip = Tag.objects.create(name="VIP")
    member = MemberFactory()
    member.tags.add(vip)

    response = act(admin_client, "remove_tags", [member], tags=[vip.pk], reason="")

    assert response.status_code == 200 and "reason" in response.context["form"].errors
    assert list(member.tags.all()) == [vip] and StaffAction.objects.count() == 0


def test_a_store_manager_may_tag_with_existing_tags_but_not_create_new_ones(client, manager, stores):
    Tag.objects.create(name="VIP")
    member = MemberFactory(home_store=stores[0])
    client.force_login(manager)

    response = act(client, "add_tags", [member], new_tags="brand new", reason="x")

    assert response.status_code == 200  # the form again, with the refusal as a message
    assert any("not allowed to create tags" in m for m in messages_of(response))
    assert Tag.objects.count() == 1 and member.tags.count() == 0 and StaffAction.objects.count() == 0

    act(client, "add_tags", [member], new_tags="vip", reason="x")
    assert list(member.tags.values_list("name", flat=True)) == ["VIP"]


# --- actions: freeze, unfreeze, close -----------------------------------------------------------


def test_freeze_then_unfreeze_each_write_one_audit_row_per_member(admin_client, admin_user):
    first, second = MemberFactory(), MemberFactory()

    act(admin_client, "freeze", [first, second], reason="suspected fraud")
    assert set(Member.objects.values_list("status", flat=True)) == {Member.Status.FROZEN}
    frozen = audit(StaffAction.Action.FREEZE)
    assert [(r.member_id, r.actor, r.reason, r.detail) for r in frozen] == [
        (first.pk, admin_user, "suspected fraud", {"from": "active", "to": "frozen"}),
        (second.pk, admin_user, "suspected fraud", {"from": "active", "to": "frozen"}),
    ]

    act(admin_client, "unfreeze", [first], reason="cleared")
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == (Member.Status.ACTIVE, Member.Status.FROZEN)
    [row] = audit(StaffAction.Action.UNFREEZE)
    assert (row.member_id, row.reason) == (first.pk, "cleared")


def test_freezing_a_frozen_member_is_refused_for_that_member_only(admin_client):
    frozen, active = MemberFactory(status=Member.Status.FROZEN), MemberFactory()

    response = act(admin_client, "freeze", [frozen, active], reason="check")

    active.refresh_from_db()
    assert active.status == Member.Status.FROZEN
    assert [r.member_id for r in audit(StaffAction.Action.FREEZE)] == [active.pk]
    assert any("Only an active member can be frozen" in m for m in messages_of(response))


def test_close_and_reopen_are_recorded_and_an_erased_member_stays_closed(admin_client):
    member = MemberFactory()
    erased = MemberFactory(status=Member.Status.CLOSED, erased_at=timezone.now())

    act(admin_client, "close", [member], reason="asked to leave")
    member.refresh_from_db()
    assert member.status == Member.Status.CLOSED and len(audit(StaffAction.Action.CLOSE)) == 1

    act(admin_client, "unfreeze", [member, erased], reason="came back")
    member.refresh_from_db()
    erased.refresh_from_db()
    assert (member.status, erased.status) == (Member.Status.ACTIVE, Member.Status.CLOSED)
    assert [r.member_id for r in audit(StaffAction.Action.UNFREEZE)] == [member.pk]


def test_freeze_without_a_reason_changes_nothing(admin_client):
    member = MemberFactory()

    response = act(admin_client, "freeze", [member], reason="")

    assert response.status_code == 200 and "reason" in response.context["form"].errors
    member.refresh_from_db()
    assert member.status == Member.Status.ACTIVE and StaffAction.objects.count() == 0


def test_the_change_and_its_audit_row_are_one_transaction(admin_user, monkeypatch):
    member = MemberFactory()

    def broken(**kwargs):
        raise RuntimeError("audit table unavailable")

    monkeypatch.setattr(services, "staff_action_record", broken)
    monkeypatch.setattr(actions, "staff_action_record", broken)
    with pytest.raises(RuntimeError):
        member_freeze(member=member, actor=admin_user, reason="x")
    with pytest.raises(RuntimeError):
        member_points_adjust(member=member, currency="points", amount=5, reason="x", actor=admin_user)

    member.refresh_from_db()
    assert member.status == Member.Status.ACTIVE and not LedgerEntry.objects.exists()


# --- actions: pin a tier ---------------------------------------------------------------------


def test_pin_tier_pins_each_member_and_records_the_tier_change_and_the_audit(admin_client, admin_user, tiers):
    first, second = MemberFactory(), MemberFactory()
    put_in(first, tiers["bronze"])
    until = timezone.localdate() + dt.timedelta(days=30)

    response = act(
        admin_client, "pin_tier", [first, second], tier=tiers["gold"].pk, until=until.isoformat(), reason="VIP guest"
    )

    assert response.status_code == 302
    states = {s.member_id: s for s in MemberTier.objects.all()}
    assert {s.tier_id for s in states.values()} == {tiers["gold"].pk}
    assert timezone.localtime(states[first.pk].pinned_until).date() == until
    assert TierChange.objects.filter(reason=TierChange.Reason.PINNED, note="VIP guest").count() == 2
    pinned = audit(StaffAction.Action.PIN_TIER)
    assert [(r.member_id, r.actor, r.reason) for r in pinned] == [
        (first.pk, admin_user, "VIP guest"),
        (second.pk, admin_user, "VIP guest"),
    ]
    assert (pinned[0].detail["tier"], pinned[0].detail["from_tier"]) == ("gold", "bronze")
    assert pinned[1].detail["from_tier"] is None


@pytest.mark.parametrize(
    "fields",
    [
        {"until": "2000-01-01", "reason": "x"},
        {"until": "", "reason": "x"},
        {"reason": ""},
    ],
    ids=["past", "no date", "no reason"],
)
def test_pin_tier_refuses_bad_input_and_changes_nothing(admin_client, tiers, fields):
    member = MemberFactory()
    data = {"tier": tiers["gold"].pk, "until": (timezone.localdate() + dt.timedelta(days=3)).isoformat(), **fields}

    response = act(admin_client, "pin_tier", [member], **data)

    assert response.status_code == 200 and response.context["form"].errors
    assert not MemberTier.objects.exists() and not TierChange.objects.exists() and not StaffAction.objects.exists()


def test_pin_tier_needs_the_member_tier_permission_too(client, manager, tiers, stores):
    member = MemberFactory(home_store=stores[0])
    client.force_login(manager)
    until = (timezone.localdate() + dt.timedelta(days=3)).isoformat()

    action_field = client.get(reverse(CHANGELIST)).context["action_form"].fields["action"]
    choices = [name for name, _label in action_field.choices]
    assert "pin_tier" not in choices and "freeze" in choices and "add_tags" in choices
    act(client, "pin_tier", [member], tier=tiers["gold"].pk, until=until, reason="x")
    with pytest.raises(LoyaltyError) as refused:
        member_tier_pin(
            member=member, tier=tiers["gold"], until=timezone.now() + dt.timedelta(days=3), actor=manager, reason="x"
        )

    assert refused.value.code == "operator_required"
    assert not MemberTier.objects.exists() and not StaffAction.objects.exists()


# --- actions: adjust points --------------------------------------------------------------------


def test_adjusting_points_writes_one_audit_row_with_amount_currency_and_reason(admin_client, admin_user):
    member = MemberFactory()
    form = admin_client.post(
        reverse(CHANGELIST), {"action": "adjust_points", "index": "0", "_selected_action": [member.pk]}
    )
    token = str(form.context["form"]["token"].value())
    data = {"currency": "growth", "amount": "30", "reason": "生日补发", "token": token}

    act(admin_client, "adjust_points", [member], **data)
    act(admin_client, "adjust_points", [member], **data)  # the same form again: adjusts once

    entry = LedgerEntry.objects.get()
    [row] = audit(StaffAction.Action.ADJUST_POINTS)
    assert (row.member_id, row.actor, row.reason) == (member.pk, admin_user, "生日补发")
    assert row.detail == {"currency": "growth", "amount": 30, "entry": entry.pk}


def test_the_adjust_page_of_one_member_writes_the_audit_row_too(admin_client, admin_user):
    member = MemberFactory()
    url = reverse("admin:members_member_adjust", args=[member.pk])
    token = str(admin_client.get(url).context["form"]["token"].value())

    admin_client.post(url, {"currency": "points", "amount": "-0", "reason": "x", "token": token})
    assert not StaffAction.objects.exists()  # refused by the form: zero
    admin_client.post(url, {"currency": "points", "amount": "8", "reason": "compensation", "token": token})

    [row] = audit(StaffAction.Action.ADJUST_POINTS)
    assert (row.member_id, row.reason, row.detail["amount"], row.detail["currency"]) == (
        member.pk,
        "compensation",
        8,
        "points",
    )


# --- permissions and store scope ---------------------------------------------------------------


@pytest.mark.parametrize("action", ["add_tags", "remove_tags", "freeze", "unfreeze", "close", "pin_tier"])
def test_staff_who_may_only_view_members_cannot_run_the_actions(client, django_user_model, tiers, action):
    viewer = staff(django_user_model, "viewer", "members.view_member", brand=True)
    vip = Tag.objects.create(name="VIP")
    member = MemberFactory(status=Member.Status.FROZEN if action == "unfreeze" else Member.Status.ACTIVE)
    member.tags.add(vip)
    client.force_login(viewer)
    until = (timezone.localdate() + dt.timedelta(days=3)).isoformat()

    act(client, action, [member], tags=[vip.pk], new_tags="x", tier=tiers["gold"].pk, until=until, reason="why")

    refreshed = Member.objects.get(pk=member.pk)
    assert (refreshed.status, list(refreshed.tags.all())) == (member.status, [vip])
    assert not StaffAction.objects.exists() and not MemberTier.objects.exists()


def test_services_refuse_an_actor_without_the_permission(django_user_model):
    viewer = staff(django_user_model, "viewer", "members.view_member", brand=True)
    member = MemberFactory()

    for call in (
        lambda: member_freeze(member=member, actor=viewer, reason="x"),
        lambda: member_tags_add(members=[member], tags=["VIP"], actor=viewer, reason="x"),
    ):
        with pytest.raises(LoyaltyError) as refused:
            call()
        assert refused.value.code == "permission_denied"
    member.refresh_from_db()
    assert member.status == Member.Status.ACTIVE and not Tag.objects.exists() and not StaffAction.objects.exists()


@pytest.mark.parametrize("action", ["add_tags", "remove_tags", "freeze", "close"])
def test_a_scoped_manager_cannot_act_on_another_stores_member(client, manager, stores, action):
    vip = Tag.objects.create(name="VIP")
    theirs = MemberFactory(home_store=stores[1])
    theirs.tags.add(vip)
    client.force_login(manager)

    act(client, action, [theirs], tags=[vip.pk], reason="why")

    theirs.refresh_from_db()
    assert theirs.status == Member.Status.ACTIVE and list(theirs.tags.all()) == [vip]
    assert not StaffAction.objects.exists()


def test_services_refuse_members_outside_the_actors_stores_and_change_none(manager, stores, admin_user):
    ours, theirs = MemberFactory(home_store=stores[0]), MemberFactory(home_store=stores[1])

    for call in (
        lambda: member_tags_add(members=[ours, theirs], tags=["VIP"], actor=manager, reason="x"),
        lambda: member_tags_remove(members=[theirs], tags=["VIP"], actor=manager, reason="x"),
        lambda: member_freeze(member=theirs, actor=manager, reason="x"),
        lambda: member_points_adjust(member=theirs, currency="points", amount=5, reason="x", actor=manager),
    ):
        with pytest.raises(LoyaltyError) as refused:
            call()
        assert refused.value.code == "out_of_scope"
    assert not ours.tags.exists() and not StaffAction.objects.exists() and not LedgerEntry.objects.exists()

    # Their own store's member: allowed.
    member_freeze(member=ours, actor=manager, reason="x")
    assert audit(StaffAction.Action.FREEZE)[0].actor == manager


def test_staff_without_a_role_or_profile_see_no_members(client, django_user_model):
    MemberFactory()
    bare = staff(django_user_model, "bare", "members.view_member", "members.change_member")
    unscoped = staff(django_user_model, "brand", "members.view_member", brand=True)

    assert staff_stores(bare) is not None and not staff_stores(bare).exists()
    client.force_login(bare)
    assert len(rows(client)) == 0
    client.force_login(unscoped)
    assert len(rows(client)) == 1


def test_actions_refuse_more_than_the_limit_of_members_at_once(admin_client, monkeypatch):
    from operations import admin_member_actions as members_admin

    monkeypatch.setattr(members_admin, "MAX_MEMBERS_PER_ADJUSTMENT", 2)
    chosen = MemberFactory.create_batch(3)

    response = act(admin_client, "freeze", chosen, reason="x")

    assert "Act on at most 2 members at a time." in messages_of(response)
    assert not Member.objects.filter(status=Member.Status.FROZEN).exists()


# --- the staff action log, stage changes and tags --------------------------------------------------


def test_staff_action_log_lists_filters_and_searches_and_is_read_only(admin_client, admin_user):
    first, second = MemberFactory(phone="+8613800138000"), MemberFactory()
    member_freeze(member=first, actor=admin_user, reason="fraud check")
    member_tags_add(members=[second], tags=["VIP"], actor=admin_user, reason="big order")
    url = reverse("admin:members_staffaction_changelist")

    listed = admin_client.get(url)
    assert listed.status_code == 200 and len(listed.context["cl"].result_list) == 2
    assert "fraud check" in listed.content.decode()
    assert [r.member_id for r in admin_client.get(url, {"action__exact": "freeze"}).context["cl"].result_list] == [
        first.pk
    ]
    assert [r.member_id for r in admin_client.get(url, {"q": "138 0013 8000"}).context["cl"].result_list] == [first.pk]
    assert len(admin_client.get(url, {"actor__id__exact": admin_user.pk}).context["cl"].result_list) == 2

    row = StaffAction.objects.get(member=first)
    page = admin_client.get(reverse("admin:members_staffaction_change", args=[row.pk]))
    assert page.status_code == 200 and 'name="reason"' not in page.content.decode()
    assert admin_client.get(reverse("admin:members_staffaction_delete", args=[row.pk])).status_code == 403
    assert admin_client.get(reverse("admin:members_staffaction_add")).status_code == 403


def test_scoped_staff_see_only_actions_and_stage_changes_of_their_stores_members(client, manager, stores, admin_user):
    manager.user_permissions.add(
        Permission.objects.get(codename="view_staffaction"), Permission.objects.get(codename="view_stagechange")
    )
    ours, theirs = MemberFactory(home_store=stores[0]), MemberFactory(home_store=stores[1])
    for member in (ours, theirs):
        member_freeze(member=member, actor=admin_user, reason="x")
        StageChange.objects.create(member=member, to_stage=Member.Stage.NEW)
    client.force_login(manager)

    actions = client.get(reverse("admin:members_staffaction_changelist")).context["cl"].result_list
    stages = client.get(reverse("admin:members_stagechange_changelist")).context["cl"].result_list

    assert [r.member_id for r in actions] == [ours.pk]
    assert [r.member_id for r in stages] == [ours.pk]


def test_tag_list_counts_members_and_a_tag_in_use_cannot_be_deleted(admin_client):
    vip, unused = Tag.objects.create(name="VIP"), Tag.objects.create(name="unused")
    for member in MemberFactory.create_batch(3):
        member.tags.add(vip)

    listed = admin_client.get(reverse("admin:members_tag_changelist"))
    counts = {tag.name: tag.member_count for tag in listed.context["cl"].result_list}

    assert counts == {"VIP": 3, "unused": 0}
    assert admin_client.get(reverse("admin:members_tag_delete", args=[vip.pk])).status_code == 403
    assert admin_client.post(reverse("admin:members_tag_delete", args=[unused.pk]), {"post": "yes"}).status_code == 302
    assert list(Tag.objects.all()) == [vip]
