"""Tiers: default on joining, upgrade on earn, review sweep, soft landing, pins."""

import bisect
import datetime as dt
import threading
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Permission
from django.db import connection, transaction
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from core.errors import LoyaltyError
from loyalty import services
from loyalty import tiers as tiers_module
from loyalty.models import Currency, MemberTier, Tier, TierChange
from loyalty.selectors import ledger_violations
from loyalty.tiers import tier_assign_default, tier_pin, tier_progress, tier_upgrade_if_qualified, tiers_sweep
from members.models import Notification
from operations.actions import member_create

from .factories import MemberFactory, StoreFactory

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = dt.datetime(2026, 3, 10, 12, 0, tzinfo=SHANGHAI)
DAY = dt.timedelta(days=1)


def months_after(moment: dt.datetime, months: int) -> dt.datetime:
    index = moment.month - 1 + months
    return moment.replace(year=moment.year + index // 12, month=index % 12 + 1)


REVIEW = months_after(T0, 12)


@pytest.fixture(autouse=True)
def tier_settings(settings):
    settings.LOYALTY_GROWTH_EXPIRY = "rolling:12"
    settings.LOYALTY_GROWTH_PER_YUAN = 1
    settings.LOYALTY_PENDING_DAYS = 7
    settings.LOYALTY_TIER_REVIEW_MONTHS = 12
    settings.LOYALTY_TIER_SOFT_LANDING = True


@pytest.fixture(autouse=True)
def invariants_hold_after_each_test():
    yield
    assert ledger_violations() == []


@pytest.fixture
def tiers(db) -> dict[str, Tier]:
    return {
        "bronze": Tier.objects.create(code="bronze", name="Bronze", rank=0, is_default=True),
        "silver": Tier.objects.create(
            code="silver", name="Silver", rank=1, qualify_threshold=1000, retain_threshold=800
        ),
        "gold": Tier.objects.create(code="gold", name="Gold", rank=2, qualify_threshold=3000, retain_threshold=2500),
    }


@pytest.fixture
def tier_operator(django_user_model):
    """A staff user allowed to change member tiers (pin them)."""
    user = django_user_model.objects.create_user("tiers", password="not-a-real-password-42", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="change_membertier", content_type__app_label="loyalty"))
    return user


def new_member(phone: str = "13800138000", *, at: dt.datetime = T0):
    return member_create(phone=phone, joined_at=at)


def grow(member, amount: int, operator, *, at: dt.datetime):
    return services.points_adjust(
        member=member, currency=Currency.GROWTH, amount=amount, reason="test growth", actor=operator, now=at
    )


def state_of(member) -> MemberTier:
    return MemberTier.objects.select_related("tier").get(member=member)


def reasons(member) -> list[str]:
    return list(TierChange.objects.filter(member=member).order_by("id").values_list("reason", flat=True))


def nothing_done(counts: dict[str, int]) -> bool:
    return not any(counts.values())


# --- joining and upgrading -------------------------------------------------------------


def test_member_create_puts_member_in_default_tier(tiers):
    member = new_member()
    state = state_of(member)
    assert state.tier == tiers["bronze"]
    assert state.started_at == T0
    assert state.review_at == REVIEW
    assert state.pinned_until is None
    assert reasons(member) == [TierChange.Reason.JOINED]


def test_member_create_without_default_tier_leaves_member_untiered(db):
    Tier.objects.create(code="silver", name="Silver", rank=1, qualify_threshold=1000, retain_threshold=800)
    member = new_member()
    assert not MemberTier.objects.filter(member=member).exists()
    assert tier_assign_default(member=member, now=T0) is None


def test_growth_adjustment_crossing_threshold_upgrades_at_once(tiers, adjuster):
    member = new_member()
    grow(member, 999, adjuster, at=T0 + DAY)
    assert state_of(member).tier == tiers["bronze"]

    grow(member, 1, adjuster, at=T0 + 2 * DAY)

    state = state_of(member)
    assert state.tier == tiers["silver"]
    assert state.started_at == T0 + 2 * DAY
    assert state.review_at == months_after(T0 + 2 * DAY, 12)
    change = TierChange.objects.get(member=member, reason=TierChange.Reason.UPGRADE)
    assert (change.from_tier, change.to_tier, change.growth) == (tiers["bronze"], tiers["silver"], 1000)
    notice = Notification.objects.get(member=member)
    assert notice.kind == Notification.Kind.TIER_UP
    assert notice.dedupe_key == f"tier:{member.pk}:{change.pk}"
    assert "Silver" in notice.title


def test_upgrade_goes_straight_to_the_best_qualifying_tier(tiers, adjuster):
    member = new_member()
    grow(member, 5000, adjuster, at=T0 + DAY)
    assert state_of(member).tier == tiers["gold"]
    assert reasons(member) == [TierChange.Reason.JOINED, TierChange.Reason.UPGRADE]


def test_upgrade_gives_a_member_without_tier_the_default_first(tiers, adjuster):
    member = MemberFactory()  # made without member_create: no tier yet
    grow(member, 1200, adjuster, at=T0)
    assert state_of(member).tier == tiers["silver"]
    assert reasons(member) == [TierChange.Reason.JOINED, TierChange.Reason.UPGRADE]


def test_upgrade_hook_never_downgrades(tiers, adjuster):
    member = new_member()
    grow(member, 3000, adjuster, at=T0)
    assert tier_upgrade_if_qualified(member_id=member.pk, growth=0, now=T0 + DAY) is None
    assert state_of(member).tier == tiers["gold"]


def test_order_earn_crossing_threshold_upgrades_at_once(tiers):
    member = new_member()
    services.order_earn(member=member, store=StoreFactory(), number="A1", amount="1000.00", now=T0 + DAY)
    # Pending growth counts: the order's return window is still open.
    assert state_of(member).tier == tiers["silver"]
    assert Notification.objects.filter(member=member, kind=Notification.Kind.TIER_UP).count() == 1


def test_the_earns_unlocked_tier_row_can_only_hold_back_an_upgrade(tiers):
    """``seen`` (the tier row the earn read with its account lock, unlocked) decides only
    "nothing to do"; every upgrade is decided on the locked row, so a stale row is harmless."""
    member = new_member()  # bronze
    state = state_of(member)
    # Seen as gold already (stale): 1000 growth is not above gold, nothing is done.
    stale_high = MemberTier(member_id=member.pk, tier=tiers["gold"], started_at=T0, review_at=REVIEW)
    assert tier_upgrade_if_qualified(member_id=member.pk, growth=1000, now=T0 + DAY, seen=stale_high) is None
    assert state_of(member).tier == tiers["bronze"]
    # Seen as bronze while the row says silver (stale low): the locked row decides, and
    # silver is not below what 1000 growth qualifies for: no change, no second upgrade.
    MemberTier.objects.filter(pk=state.pk).update(tier=tiers["silver"])
    assert tier_upgrade_if_qualified(member_id=member.pk, growth=1000, now=T0 + DAY, seen=state) is None
    assert TierChange.objects.filter(member=member, reason=TierChange.Reason.UPGRADE).count() == 0
    # Seen right and qualifying: the upgrade happens.
    change = tier_upgrade_if_qualified(member_id=member.pk, growth=3000, now=T0 + DAY, seen=state_of(member))
    assert change is not None and state_of(member).tier == tiers["gold"]


# --- the review sweep -------------------------------------------------------------------


def test_no_downgrade_before_the_review_date(tiers, adjuster):
    member = new_member()
    grow(member, 1000, adjuster, at=T0)
    grow(member, -1000, adjuster, at=T0 + DAY)

    counts = tiers_sweep(now=REVIEW - DAY)

    assert nothing_done(counts)
    assert state_of(member).tier == tiers["silver"]


def test_downgrade_at_the_review_date(tiers, adjuster):
    member = new_member()
    grow(member, 1000, adjuster, at=T0)
    grow(member, -1000, adjuster, at=T0 + DAY)
    grow(member, 700, adjuster, at=T0 + 2 * DAY)  # under Silver's 800 to keep, still in the window

    counts = tiers_sweep(now=REVIEW)

    assert counts["downgraded"] == 1
    state = state_of(member)
    assert state.tier == tiers["bronze"]
    assert (state.started_at, state.review_at) == (REVIEW, months_after(REVIEW, 12))
    change = TierChange.objects.get(member=member, reason=TierChange.Reason.DOWNGRADE)
    assert (change.from_tier, change.to_tier, change.growth) == (tiers["silver"], tiers["bronze"], 700)
    notice = Notification.objects.get(member=member, kind=Notification.Kind.TIER_DOWN)
    assert notice.dedupe_key == f"tier:{member.pk}:{change.pk}"
    assert "Bronze" in notice.title


def test_member_who_keeps_the_growth_retains_the_tier_for_another_period(tiers, adjuster):
    member = new_member()
    grow(member, 1000, adjuster, at=T0)
    grow(member, -1000, adjuster, at=T0 + DAY)
    grow(member, 850, adjuster, at=T0 + 2 * DAY)  # under 1000 to qualify, over 800 to keep

    counts = tiers_sweep(now=REVIEW + DAY)

    assert counts["retained"] == 1
    state = state_of(member)
    assert state.tier == tiers["silver"]
    assert state.started_at == T0
    assert state.review_at == months_after(REVIEW, 12)
    assert reasons(member)[-1] == TierChange.Reason.RETAINED
    assert not Notification.objects.filter(member=member, kind=Notification.Kind.TIER_DOWN).exists()


def test_soft_landing_drops_one_step_at_a_time(tiers, adjuster):
    member = new_member()
    grow(member, 3000, adjuster, at=T0)
    grow(member, -3000, adjuster, at=T0 + DAY)

    tiers_sweep(now=REVIEW)
    assert state_of(member).tier == tiers["silver"]

    tiers_sweep(now=months_after(REVIEW, 12))
    assert state_of(member).tier == tiers["bronze"]


def test_without_soft_landing_the_member_drops_several_steps(tiers, adjuster, settings):
    settings.LOYALTY_TIER_SOFT_LANDING = False
    member = new_member()
    grow(member, 3000, adjuster, at=T0)
    grow(member, -3000, adjuster, at=T0 + DAY)
    grow(member, 900, adjuster, at=T0 + 2 * DAY)  # keeps Silver, not Gold

    tiers_sweep(now=REVIEW)
    assert state_of(member).tier == tiers["silver"]

    other = new_member("13800138001")
    grow(other, 3000, adjuster, at=T0)
    grow(other, -3000, adjuster, at=T0 + DAY)
    tiers_sweep(now=REVIEW)
    assert state_of(other).tier == tiers["bronze"]


def test_sweep_upgrades_whoever_qualifies(tiers):
    member = MemberFactory()
    tier_assign_default(member=member, now=T0)
    # An earn that did not run the upgrade hook (an order, an import): the sweep catches it.
    services.order_earn(member=member, store=StoreFactory(), number="A1", amount="1500.00", now=T0)
    MemberTier.objects.filter(member=member).update(tier=tiers["bronze"])
    TierChange.objects.filter(member=member, reason=TierChange.Reason.UPGRADE).delete()
    Notification.objects.filter(member=member).delete()

    counts = tiers_sweep(now=T0 + DAY)

    assert counts["upgraded"] == 1
    assert state_of(member).tier == tiers["silver"]
    assert Notification.objects.filter(member=member, kind=Notification.Kind.TIER_UP).count() == 1


def test_sweep_places_members_without_a_tier(tiers, adjuster):
    plain = MemberFactory()
    rich = MemberFactory()
    services.order_earn(member=rich, store=StoreFactory(), number="A1", amount="3000.00", now=T0)
    MemberTier.objects.filter(member=rich).delete()
    TierChange.objects.filter(member=rich).delete()

    counts = tiers_sweep(now=T0 + DAY)

    assert counts["placed"] == 2
    assert state_of(plain).tier == tiers["bronze"]
    assert state_of(rich).tier == tiers["gold"]
    assert nothing_done(tiers_sweep(now=T0 + DAY))


# --- pins --------------------------------------------------------------------------------


def test_pinned_tier_is_kept_by_the_sweep_until_the_pin_ends(tiers, tier_operator, adjuster):
    member = new_member()
    until = months_after(T0, 18)
    change = tier_pin(member=member, tier=tiers["gold"], until=until, actor=tier_operator, note="VIP", now=T0)
    assert (change.reason, change.operator, change.note) == (TierChange.Reason.PINNED, tier_operator, "VIP")
    assert Notification.objects.filter(member=member, kind=Notification.Kind.TIER_UP).count() == 1

    assert nothing_done(tiers_sweep(now=REVIEW + DAY))
    assert state_of(member).tier == tiers["gold"]

    counts = tiers_sweep(now=until)

    assert counts == {"upgraded": 0, "downgraded": 1, "retained": 0, "pins_cleared": 1, "placed": 0}
    state = state_of(member)
    assert state.tier == tiers["silver"]  # soft landing: one step down from Gold
    assert state.pinned_until is None


def test_pinned_member_is_not_upgraded_by_an_earn(tiers, tier_operator, adjuster):
    member = new_member()
    tier_pin(member=member, tier=tiers["bronze"], until=T0 + 30 * DAY, actor=tier_operator, note="check", now=T0)
    grow(member, 1500, adjuster, at=T0 + DAY)
    assert state_of(member).tier == tiers["bronze"]

    counts = tiers_sweep(now=T0 + 31 * DAY)

    assert (counts["pins_cleared"], counts["upgraded"]) == (1, 1)
    assert state_of(member).tier == tiers["silver"]


def test_pin_keeps_the_later_review_date_of_the_same_tier(tiers, tier_operator):
    member = new_member()
    tier_pin(member=member, tier=tiers["bronze"], until=T0 + DAY, actor=tier_operator, note="hold", now=T0)
    assert state_of(member).review_at == REVIEW


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"until": T0 - DAY}, "pin_in_past"),
        ({"note": "  "}, "reason_required"),
        ({"operator_active": False}, "operator_required"),
        ({"operator_perm": False}, "operator_required"),
    ],
)
def test_pin_refuses_bad_input(tiers, tier_operator, staff_user, change, code):
    member = new_member()
    operator = tier_operator if change.get("operator_perm", True) else staff_user
    if not change.get("operator_active", True):
        operator.is_active = False
        operator.save()
    with pytest.raises(LoyaltyError) as refused:
        tier_pin(
            member=member,
            tier=tiers["gold"],
            until=change.get("until", T0 + DAY),
            actor=operator,
            note=change.get("note", "VIP"),
            now=T0,
        )
    assert refused.value.code == code
    assert state_of(member).tier == tiers["bronze"]
    assert reasons(member) == [TierChange.Reason.JOINED]


# --- growth leaving the window, refunds ------------------------------------------------


def test_growth_rolling_out_of_the_window_downgrades_only_at_review(tiers, adjuster):
    member = new_member()
    grow(member, 600, adjuster, at=T0)
    started = months_after(T0, 2)
    grow(member, 500, adjuster, at=started)  # 1100: Silver from here, reviewed 12 months on
    assert state_of(member).tier == tiers["silver"]

    # The first 600 expire a year after they were earned: 500 left, under 800 to keep.
    later = months_after(T0, 12) + DAY
    assert services.lots_expire_due(now=later) == 1
    assert nothing_done(tiers_sweep(now=later))
    assert state_of(member).tier == tiers["silver"]

    review = months_after(started, 12)
    assert tiers_sweep(now=review)["downgraded"] == 1
    assert state_of(member).tier == tiers["bronze"]


def test_sweep_counts_growth_past_its_expiry_as_gone_before_the_expiry_job_runs(tiers, adjuster):
    member = new_member()
    grow(member, 1000, adjuster, at=T0)  # Silver; these lots expire at the review date
    counts = tiers_sweep(now=REVIEW)  # the expiry job has not run yet
    assert counts["downgraded"] == 1
    assert TierChange.objects.get(member=member, reason=TierChange.Reason.DOWNGRADE).growth == 0


def test_with_reevaluation_off_a_refund_removing_growth_downgrades_only_at_review(tiers, settings):
    settings.LOYALTY_TIER_REEVALUATE_ON_REFUND = False
    member = new_member()
    store = StoreFactory()
    earned = services.order_earn(
        member=member, store=store, number="A1", amount="1200.00", occurred_at=T0 - 10 * DAY, now=T0
    )
    tiers_sweep(now=T0)  # upgrades, whether or not the earn already did
    started = state_of(member).started_at
    assert state_of(member).tier == tiers["silver"]

    services.order_refund(order=earned.order, amount="1200.00", number="R1", now=T0 + DAY)

    assert nothing_done(tiers_sweep(now=T0 + 2 * DAY))
    assert state_of(member).tier == tiers["silver"]
    assert tiers_sweep(now=months_after(started, 12))["downgraded"] == 1
    assert state_of(member).tier == tiers["bronze"]


# --- running the sweep -------------------------------------------------------------------


def _mixed_base(adjuster) -> list:
    """Members due for each outcome at REVIEW: downgrade, retain, upgrade, nothing."""
    down, keep, up, calm = (new_member(f"1380013800{i}") for i in range(4))
    grow(down, 1000, adjuster, at=T0)
    grow(down, -1000, adjuster, at=T0 + DAY)
    grow(keep, 1000, adjuster, at=T0)
    grow(keep, -1000, adjuster, at=T0 + DAY)
    grow(keep, 900, adjuster, at=T0 + 2 * DAY)
    services.order_earn(member=up, store=StoreFactory(), number="U1", amount="1000.00", now=T0 + DAY)
    MemberTier.objects.filter(member=up).update(tier=Tier.objects.get(code="bronze"), review_at=months_after(T0, 24))
    grow(calm, 10, adjuster, at=T0)
    MemberTier.objects.filter(member=calm).update(review_at=months_after(T0, 24))
    return [down, keep, up, calm]


def test_sweep_twice_is_the_same_as_once(tiers, adjuster):
    down, keep, up, calm = _mixed_base(adjuster)

    first = tiers_sweep(now=REVIEW)
    rows = (TierChange.objects.count(), Notification.objects.count())
    second = tiers_sweep(now=REVIEW)

    assert first == {"upgraded": 1, "downgraded": 1, "retained": 1, "pins_cleared": 0, "placed": 0}
    assert nothing_done(second)
    assert (TierChange.objects.count(), Notification.objects.count()) == rows
    assert [state_of(m).tier.code for m in (down, keep, up, calm)] == ["bronze", "silver", "silver", "bronze"]


def test_sweep_in_chunks_of_one_member_does_the_same(tiers, adjuster):
    down, keep, up, calm = _mixed_base(adjuster)

    counts = tiers_sweep(now=REVIEW, chunk_size=1)

    assert counts == {"upgraded": 1, "downgraded": 1, "retained": 1, "pins_cleared": 0, "placed": 0}
    assert [state_of(m).tier.code for m in (down, keep, up, calm)] == ["bronze", "silver", "silver", "bronze"]
    assert nothing_done(tiers_sweep(now=REVIEW, chunk_size=1))


def test_sweep_runs_a_bounded_number_of_queries_per_chunk(tiers, adjuster, django_assert_max_num_queries):
    _mixed_base(adjuster)
    # Tiers, the chunk's ids, lock, read, three writes; then the (empty) untiered pass.
    with django_assert_max_num_queries(11):
        tiers_sweep(now=REVIEW)


def test_sweep_without_tiers_does_nothing(db):
    MemberFactory()
    assert nothing_done(tiers_sweep(now=T0))


# --- progress ---------------------------------------------------------------------------


def test_tier_progress_tells_what_is_needed(tiers, adjuster):
    member = new_member()
    grow(member, 1200, adjuster, at=T0)

    progress = tier_progress(member, now=T0 + DAY)

    assert (progress.tier, progress.next_tier) == (tiers["silver"], tiers["gold"])
    assert (progress.growth, progress.growth_to_next, progress.growth_to_keep) == (1200, 1800, 0)
    assert progress.review_at == REVIEW
    assert progress.pinned_until is None


def test_tier_progress_at_the_top_and_short_of_keeping(tiers, adjuster):
    member = new_member()
    grow(member, 3000, adjuster, at=T0)
    grow(member, -1000, adjuster, at=T0 + DAY)

    progress = tier_progress(member, now=T0 + 2 * DAY)

    assert (progress.tier, progress.next_tier, progress.growth_to_next) == (tiers["gold"], None, None)
    assert progress.growth_to_keep == 500


# --- admin ------------------------------------------------------------------------------


def test_admin_tier_pages_render(admin_client, tiers):
    member = new_member()
    state = state_of(member)
    for url in (
        "/admin/loyalty/tier/",
        f"/admin/loyalty/tier/{tiers['gold'].pk}/change/",
        "/admin/loyalty/tier/add/",
        "/admin/loyalty/membertier/",
        "/admin/loyalty/membertier/?q=13800138000",
        f"/admin/loyalty/membertier/{state.pk}/change/",
        "/admin/loyalty/tierchange/",
    ):
        assert admin_client.get(url).status_code == 200, url


def test_admin_pins_a_tier_as_the_staff_user(admin_client, admin_user, tiers):
    member = new_member()
    state = state_of(member)
    response = admin_client.post(
        f"/admin/loyalty/membertier/{state.pk}/change/",
        {"tier": tiers["gold"].pk, "pinned_until_0": "2099-01-31", "pinned_until_1": "00:00:00", "note": "VIP"},
    )
    assert response.status_code == 302
    state = state_of(member)
    assert state.tier == tiers["gold"]
    assert state.pinned_until.year == 2099
    change = TierChange.objects.get(member=member, reason=TierChange.Reason.PINNED)
    assert (change.operator, change.note) == (admin_user, "VIP")
    audit = member.staff_actions.get()
    assert (audit.actor, audit.action, audit.reason) == (admin_user, "pin_tier", "VIP")


def test_admin_refuses_a_pin_in_the_past(admin_client, tiers):
    member = new_member()
    state = state_of(member)
    response = admin_client.post(
        f"/admin/loyalty/membertier/{state.pk}/change/",
        {"tier": tiers["gold"].pk, "pinned_until_0": "2000-01-01", "pinned_until_1": "00:00:00", "note": "VIP"},
    )
    assert response.status_code == 200
    assert state_of(member).tier == tiers["bronze"]
    assert reasons(member) == [TierChange.Reason.JOINED]


def test_admin_tier_changes_are_read_only(admin_client, tiers):
    change = TierChange.objects.get(member=new_member())
    assert admin_client.post(f"/admin/loyalty/tierchange/{change.pk}/delete/").status_code == 403
    assert TierChange.objects.filter(pk=change.pk).exists()
    assert admin_client.get("/admin/loyalty/membertier/add/").status_code == 403


# --- racing an earn ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_sweep_waits_for_an_earn_holding_the_tier_and_counts_its_growth(tiers, adjuster):
    """The sweep locks the tier rows before reading growth, so it sees an earn that held them."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL row locks")
    member = new_member()
    grow(member, 1000, adjuster, at=T0)
    grow(member, -1000, adjuster, at=T0 + DAY)  # nothing left: due to go down at REVIEW
    earned, release = threading.Event(), threading.Event()
    outcomes: dict[str, object] = {}

    def earn() -> None:
        try:
            with transaction.atomic():
                grow(member, 900, adjuster, at=REVIEW - DAY)  # the hook locks the member's tier row
                earned.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    def sweep() -> None:
        try:
            outcomes["sweep"] = tiers_sweep(now=REVIEW)
        except Exception as error:  # noqa: BLE001 - checked below
            outcomes["sweep"] = error
        finally:
            connection.close()

    earner = threading.Thread(target=earn, daemon=True)
    earner.start()
    assert earned.wait(timeout=30)
    sweeper = threading.Thread(target=sweep, daemon=True)
    sweeper.start()
    sweeper.join(timeout=0.5)
    assert sweeper.is_alive(), "the sweep should wait for the earn's lock on the tier row"
    release.set()
    earner.join(timeout=30)
    sweeper.join(timeout=30)
    assert not sweeper.is_alive()

    assert outcomes["sweep"]["retained"] == 1
    assert state_of(member).tier == tiers["silver"]


# --- a refund that takes back growth reviews the tier at once (LOYALTY_TIER_REEVALUATE_ON_REFUND) --


def buy(member, store, number: str, amount: str, *, at: dt.datetime = T0):
    return services.order_earn(
        member=member, store=store, number=number, amount=amount, occurred_at=at - 10 * DAY, now=at
    ).order


def test_buying_to_qualify_and_returning_everything_loses_the_tier_at_once(tiers):
    member, store = new_member(), StoreFactory()
    order = buy(member, store, "A1", "3000.00")
    assert state_of(member).tier == tiers["gold"]

    services.order_refund(order=order, amount="3000.00", number="R1", now=T0 + DAY)

    state = state_of(member)
    assert state.tier == tiers["bronze"]
    change = TierChange.objects.filter(member=member).latest("id")
    assert (change.reason, change.from_tier, change.to_tier, change.growth) == (
        TierChange.Reason.REFUND,
        tiers["gold"],
        tiers["bronze"],
        0,
    )
    assert state.started_at == T0 + DAY
    assert Notification.objects.filter(member=member, kind=Notification.Kind.TIER_DOWN).count() == 1


def test_a_partial_refund_keeps_what_the_rest_still_qualifies_for(tiers):
    member, store = new_member(), StoreFactory()
    order = buy(member, store, "A1", "3000.00")
    services.order_refund(order=order, amount="1500.00", number="R1", now=T0 + DAY)
    assert state_of(member).tier == tiers["silver"]  # 1500 growth: silver qualifies, gold does not


def test_a_tier_held_before_the_order_stays_while_its_retain_threshold_is_met(tiers, adjuster):
    member, store = new_member(), StoreFactory()
    buy(member, store, "A1", "3000.00", at=T0)  # gold
    grow(member, -400, adjuster, at=T0 + DAY)  # 2600: below gold's qualify 3000, above its retain 2500
    later = buy(member, store, "A2", "500.00", at=T0 + 30 * DAY)
    services.order_refund(order=later, amount="500.00", number="R1", now=T0 + 31 * DAY)  # back to 2600
    assert state_of(member).tier == tiers["gold"]
    services.order_refund(order=member.orders.get(number="A1"), amount="200.00", number="R2", now=T0 + 32 * DAY)
    assert state_of(member).tier == tiers["silver"]  # the order that bought gold: 2400 qualifies for silver only


def test_a_pinned_tier_is_untouched_by_a_refund(tiers, tier_operator):
    member, store = new_member(), StoreFactory()
    order = buy(member, store, "A1", "3000.00")
    tier_pin(member=member, tier=tiers["gold"], until=T0 + 90 * DAY, actor=tier_operator, note="VIP", now=T0)
    services.order_refund(order=order, amount="3000.00", number="R1", now=T0 + DAY)
    assert state_of(member).tier == tiers["gold"]
    assert not TierChange.objects.filter(member=member, reason=TierChange.Reason.REFUND).exists()


def test_with_the_setting_off_the_tier_waits_for_the_review(tiers, settings):
    settings.LOYALTY_TIER_REEVALUATE_ON_REFUND = False
    member, store = new_member(), StoreFactory()
    order = buy(member, store, "A1", "3000.00")
    services.order_refund(order=order, amount="3000.00", number="R1", now=T0 + DAY)
    assert state_of(member).tier == tiers["gold"]


def test_a_refund_inside_the_return_window_also_reviews_the_tier(tiers):
    member, store = new_member(), StoreFactory()
    order = services.order_earn(member=member, store=store, number="A1", amount="3000.00", now=T0).order
    assert state_of(member).tier == tiers["gold"]  # pending growth counts for tiers
    services.order_refund(order=order, amount="3000.00", number="R1", now=T0 + DAY)  # cancels the pending lot
    assert state_of(member).tier == tiers["bronze"]


# --- the sweep's decision table (tiers._sweep_table) ------------------------------------------

_thresholds = st.integers(min_value=0, max_value=5000)


@hypothesis_settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    tier_thresholds=st.lists(st.tuples(_thresholds, _thresholds), min_size=1, max_size=5),
    growth=st.integers(min_value=0, max_value=6000),
    current_index=st.integers(min_value=0, max_value=4),
    due=st.booleans(),
    soft_landing=st.booleans(),
)
def test_the_sweep_table_decides_every_growth_as_the_rule_does(
    tier_thresholds, growth, current_index, due, soft_landing, settings
):
    """The SQL sweep looks decisions up by slot (tier, ``width_bucket`` band, due), one
    growth standing for its band; for any tiers and growth that slot holds what
    ``_sweep_decision`` says for the growth itself."""
    settings.LOYALTY_TIER_SOFT_LANDING = soft_landing
    tiers = [
        Tier(pk=10 + rank, code=f"t{rank}", rank=rank, qualify_threshold=qualify, retain_threshold=retain)
        for rank, (qualify, retain) in enumerate(tier_thresholds)
    ]
    current = tiers[current_index % len(tiers)]
    now = dt.datetime(2027, 5, 1, tzinfo=SHANGHAI)
    review_at = now if due else now + DAY

    table = tiers_module._sweep_table(tiers, now)
    band = bisect.bisect_right(table["bounds"], growth)  # PostgreSQL's width_bucket(growth, bounds)
    slot = table["tiers"].index(current.pk) * table["stride"] + band * 2 + int(due)  # 0-based
    target, reason, _review = tiers_module._sweep_decision(tiers, current, growth, review_at, now)

    assert table["targets"][slot] == target.pk
    assert table["reasons"][slot] == (reason.value if reason else None)
    assert table["new_periods"][slot] == (reason in (TierChange.Reason.UPGRADE, TierChange.Reason.DOWNGRADE))
