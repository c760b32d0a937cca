"""The earning-rule engine: which rules an order meets and what each line earns.

``evaluate`` reads, never writes: ``services.order_earn`` stores its lines in the earn
entries' ``detail`` and the admin's preview shows them. ``signup_bonus`` awards the signup
rules through ``services.points_award``; ``rule_revise`` saves staff's changes to a rule
without rewriting history. How it all fits together: ``docs/earning.md``.
"""

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Protocol

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from members.models import Member, Store

from .configuration import Programme, programme
from .models import Currency, EarnRule, LedgerEntry, MemberTier, Order, texts_in_languages
from .multipliers import earn_multiplier
from .policies import earn_rate
from .services.credits import points_award

CURRENCIES: tuple[str, ...] = (Currency.POINTS, Currency.GROWTH)
DEFAULT_NON_EARNING_CATEGORIES = "gift_card,礼品卡"
DEFAULT_TIER_MULTIPLIER_CURRENCIES = "points"

# ``Line.rule`` for the lines that do not come from an EarnRule row.
SETTINGS_BASE = "base"  # the settings rate, where no BASE rule matches an order line
TIER = "tier"  # the member's tier multiplier
TIER_KIND = "tier_multiplier"


class OrderLineLike(Protocol):
    sku: str
    category: str
    amount: Decimal


@dataclass(frozen=True)
class Line:
    """One line of an order's earning breakdown in one currency."""

    rule: int | str  # EarnRule id, or SETTINGS_BASE / TIER
    name: str
    kind: str
    points: int
    # The name in every language, so the member reads the breakdown in theirs
    # (LedgerEntry.breakdown); None for the settings rate, named when shown.
    names: dict[str, str] | None = None

    def as_dict(self) -> dict:
        line = {"rule": self.rule, "name": self.name, "kind": self.kind, "points": self.points}
        if self.names:
            line["names"] = self.names
        return line


@dataclass(frozen=True)
class _Part:
    """The money-paid share of one order line that can earn."""

    sku: str
    category: str
    amount: Decimal


# --- settings and small helpers ------------------------------------------------------------


def _setting_set(name: str, default: str) -> frozenset[str]:
    value = getattr(settings, name, default)
    items = value.split(",") if isinstance(value, str) else value
    return frozenset(str(item).strip().casefold() for item in items if str(item).strip())


def non_earning_categories() -> frozenset[str]:
    """Categories that never earn (gift cards): ``LOYALTY_NON_EARNING_CATEGORIES``, case-insensitive."""
    return _setting_set("LOYALTY_NON_EARNING_CATEGORIES", DEFAULT_NON_EARNING_CATEGORIES)


def _round_down(value: Decimal) -> int:
    """Whole points, dropping the fraction (towards zero)."""
    return int(value.to_integral_value(rounding=ROUND_DOWN))


def _currencies(rule: EarnRule) -> tuple[str, ...]:
    if rule.applies_to == EarnRule.Applies.BOTH:
        return CURRENCIES
    return (rule.applies_to,)


def _rules_at(moment: dt.datetime, *, kinds: Sequence[str], config: Programme | None = None) -> list[EarnRule]:
    """Active rules of ``kinds`` whose window holds ``moment``, by priority then id.

    From the programme's configuration (``loyalty.configuration``: read once per process).
    """
    config = config or programme()
    return [
        rule
        for rule in config.rules
        if rule.kind in kinds and rule.valid_from <= moment and (rule.valid_until is None or rule.valid_until > moment)
    ]


def _names(rule: EarnRule) -> dict[str, str] | None:
    """The rule's name in every language (loyalty/translation.py), each falling back to the
    other; None when it reads the same in all (``name`` says it then)."""
    return _distinct(texts_in_languages(rule, "name"))


def _distinct(names: dict[str, str] | None) -> dict[str, str] | None:
    return names if names and len(set(names.values())) > 1 else None


def _store_ok(rule: EarnRule, store_id: int | None) -> bool:
    store_ids = {store.pk for store in rule.stores.all()}
    return not store_ids or store_id in store_ids


def _weekday_ok(rule: EarnRule, local: dt.datetime) -> bool:
    return not rule.weekdays or str(local.isoweekday()) in rule.weekdays


def _folded(values) -> set[str]:
    return {str(value).strip().casefold() for value in values or () if str(value).strip()}


def _line_matches(rule: EarnRule, part: _Part) -> bool:
    """Includes (category or SKU) admit a line when any matches; any exclude keeps it out."""
    category, sku = part.category.strip().casefold(), part.sku.strip().casefold()
    if category in _folded(rule.exclude_categories) or sku in _folded(rule.exclude_skus):
        return False
    include_categories, include_skus = _folded(rule.include_categories), _folded(rule.include_skus)
    if not include_categories and not include_skus:
        return True
    return category in include_categories or sku in include_skus


def _eligible_parts(lines: Sequence[OrderLineLike], earnable_amount: Decimal) -> list[_Part]:
    """The order lines' shares of ``earnable_amount``, gift cards and the like left out.

    The part paid with points is spread over the lines in proportion to their amounts,
    so each line earns on the share of it that was paid with money. Without lines the
    whole earnable amount is one line with no SKU and no category.
    """
    earnable_amount = Decimal(earnable_amount)
    if earnable_amount <= 0:
        return []
    if not lines:
        return [_Part(sku="", category="", amount=earnable_amount)]
    total = sum((Decimal(line.amount) for line in lines), Decimal(0))
    if total <= 0:
        return []
    skip = non_earning_categories()
    return [
        _Part(sku=line.sku or "", category=line.category or "", amount=Decimal(line.amount) * earnable_amount / total)
        for line in lines
        if (line.category or "").strip().casefold() not in skip and Decimal(line.amount) > 0
    ]


def eligible_amount(lines: Sequence[OrderLineLike], earnable_amount: Decimal) -> Decimal:
    """The money-paid amount of an order that can earn (to the cent, rounded down)."""
    total = sum((part.amount for part in _eligible_parts(lines, earnable_amount)), Decimal(0))
    return total.quantize(Decimal("0.01"), rounding=ROUND_DOWN)


def _member_tier_id(member: Member) -> int | None:
    """The member's tier id: from ``member.tier_state`` when the caller's query brought it
    along (``select_related``), else one query (not cached on the caller's instance)."""
    if Member.tier_state.is_cached(member):
        state = getattr(member, "tier_state", None)
        return state.tier_id if state is not None else None
    return MemberTier.objects.filter(member_id=member.pk).values_list("tier_id", flat=True).first()


def _tier_multiplier(member: Member | None, config: Programme) -> tuple[Decimal, str] | None:
    """The best active earn multiplier of the member's current tier, with its title."""
    if member is None or member.pk is None:
        return None
    tier_id = _member_tier_id(member)
    return config.multipliers.get(tier_id) if tier_id is not None else None


def _earned_today(member: Member, local: dt.datetime) -> dict[tuple[str, int], int]:
    """Points each rule earned the member per currency on ``local``'s day, from earlier earns.

    One query: the earn entries of the member's orders that happened that local day.
    """
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    end = timezone.make_aware(dt.datetime.combine(start.date() + dt.timedelta(days=1), dt.time()), start.tzinfo)
    earned: dict[tuple[str, int], int] = defaultdict(int)
    details = LedgerEntry.objects.filter(
        member=member, kind=LedgerEntry.Kind.EARN, order__occurred_at__gte=start, order__occurred_at__lt=end
    ).values_list("currency", "detail")
    for currency, detail in details:
        for line in (detail or {}).get("lines", []):
            if isinstance(line, dict) and isinstance(line.get("rule"), int):
                earned[currency, line["rule"]] += int(line.get("points") or 0)
    return earned


# --- evaluation ----------------------------------------------------------------------------


def evaluate(
    *,
    member: Member | None,
    store: Store | None,
    occurred_at: dt.datetime | None,
    lines: Sequence[OrderLineLike],
    earnable_amount: Decimal,
    now: dt.datetime,
    config: Programme | None = None,
) -> dict[str, list[Line]]:
    """What an order earns, line by line, in each currency. Reads only; writes nothing.

    ``earnable_amount`` is the order amount less the part paid with points; ``lines``
    (SKU, category, amount) add up to the order amount or are empty. Rules are the
    active ones whose window holds ``occurred_at``: base rates, then the tier
    multiplier, then campaigns by priority, each capped per order and per day. Without a
    member (the admin's preview), tier, birthday and daily caps do not apply and the
    order counts as a first purchase; a member's order is not one when they have an
    earlier order or joined again after an erasure (``rejoined_after_erasure``). Call it
    before the order itself is recorded. ``config`` is the programme configuration the
    caller read (``loyalty.configuration.programme``), read here when left out.
    """
    occurred_at = occurred_at or now
    local = timezone.localtime(occurred_at)
    parts = _eligible_parts(lines, earnable_amount)
    result: dict[str, list[Line]] = {currency: [] for currency in CURRENCIES}
    if not parts:
        return result

    store_id = store.pk if store is not None else None
    kinds = (EarnRule.Kind.BASE, EarnRule.Kind.MULTIPLIER, EarnRule.Kind.BONUS)
    config = config or programme()
    rules = [rule for rule in _rules_at(occurred_at, kinds=kinds, config=config) if _store_ok(rule, store_id)]
    rules = [rule for rule in rules if _weekday_ok(rule, local)]
    has_member = member is not None and member.pk is not None
    birthday = member.birthday if member is not None else None
    rules = [r for r in rules if not r.birthday_month_only or (birthday is not None and birthday.month == local.month)]
    # Under the account lock in order_earn, so two orders cannot both be the first. A
    # member who joined again with a lately erased phone had their first purchase already.
    first_rules = any(rule.first_purchase_only for rule in rules)
    if has_member and first_rules and (member.rejoined_after_erasure or Order.objects.filter(member=member).exists()):
        rules = [rule for rule in rules if not rule.first_purchase_only]
    earned_today = _earned_today(member, local) if has_member and any(r.cap_per_day for r in rules) else {}

    def capped(rule: EarnRule, currency: str, points: int) -> int:
        if rule.cap_per_order is not None:
            points = min(points, rule.cap_per_order)
        if rule.cap_per_day is not None:
            points = min(points, max(0, rule.cap_per_day - earned_today.get((currency, rule.pk), 0)))
        return points

    tier = earn_multiplier(member, _tier_multiplier(member, config), occurred_at, config) if has_member else None
    tier_currencies = _setting_set("LOYALTY_TIER_MULTIPLIER_CURRENCIES", DEFAULT_TIER_MULTIPLIER_CURRENCIES)

    for currency in CURRENCIES:
        out = result[currency]
        # 1. Base: each line earns at the first BASE rule (by priority) it matches, else
        # at the settings rate. ``base`` keeps each line's exact base for the multipliers.
        base_rules = [r for r in rules if r.kind == EarnRule.Kind.BASE and currency in _currencies(r)]
        base: list[Decimal] = []
        groups: dict[EarnRule | None, list[int]] = {}
        for index, part in enumerate(parts):
            rule = next((r for r in base_rules if _line_matches(r, part)), None)
            rate = rule.value if rule is not None else Decimal(earn_rate(currency))
            base.append(part.amount * rate)
            groups.setdefault(rule, []).append(index)
        for rule in sorted(groups, key=lambda r: (r is not None, r.priority if r else 0, r.pk if r else 0)):
            exact = sum((base[i] for i in groups[rule]), Decimal(0))
            points = _round_down(exact)
            if rule is None:
                out.append(Line(SETTINGS_BASE, "base rate", EarnRule.Kind.BASE, points))
                continue
            allowed = capped(rule, currency, points)
            if allowed < points and exact > 0:
                # A capped base rate is what the multipliers build on, too.
                for i in groups[rule]:
                    base[i] = base[i] * allowed / exact
            out.append(Line(rule.pk, rule.name, rule.kind, allowed, _names(rule)))

        # 2. The tier multiplier on the whole base.
        if tier is not None and currency in tier_currencies and tier[0] != 1:
            extra = _round_down(sum(base, Decimal(0)) * (tier[0] - 1))
            out.append(Line(TIER, tier[1], TIER_KIND, extra, _distinct(getattr(tier[1], "names", None))))

        # 3. Campaigns by priority, each on the base of the lines it matches.
        for rule in rules:
            if rule.kind == EarnRule.Kind.BASE or currency not in _currencies(rule):
                continue
            matching = [i for i, part in enumerate(parts) if _line_matches(rule, part)]
            if not matching:
                continue
            if rule.kind == EarnRule.Kind.MULTIPLIER:
                points = _round_down(sum((base[i] for i in matching), Decimal(0)) * (rule.value - 1))
            else:
                points = _round_down(rule.value)
            out.append(Line(rule.pk, rule.name, rule.kind, capped(rule, currency, points), _names(rule)))
        result[currency] = [line for line in out if line.points != 0]
    return result


def total(lines: Iterable[Line]) -> int:
    """What a breakdown earns: the sum of its lines, never below zero."""
    return max(0, sum(line.points for line in lines))


# --- signup bonus --------------------------------------------------------------------------


def signup_bonus(*, member: Member, now: dt.datetime) -> list[LedgerEntry]:
    """Award the active signup-bonus rules to a member who just joined.

    Each SIGNUP rule valid at ``now`` gives ``value`` points (or growth, or both) once per
    member: the idempotency key ``signup:<rule id>`` makes a second call a no-op. Of the
    rule's filters, the stores (the member's home store) and weekdays apply. Nothing for a
    member who joined again with a lately erased phone (``rejoined_after_erasure``).
    """
    if member.rejoined_after_erasure:
        return []
    local = timezone.localtime(now)
    entries = []
    for rule in _rules_at(now, kinds=(EarnRule.Kind.SIGNUP,)):
        points = _round_down(rule.value)
        if points <= 0 or not _store_ok(rule, member.home_store_id) or not _weekday_ok(rule, local):
            continue
        line = Line(rule.pk, rule.name, rule.kind, points, _names(rule))
        for currency in _currencies(rule):
            entries.append(
                points_award(
                    member=member,
                    currency=currency,
                    amount=points,
                    reason=rule.name[:200],
                    idempotency_key=f"signup:{rule.pk}",
                    detail={"lines": [line.as_dict()]},
                    now=now,
                )
            )
    return entries


# --- changing rules ------------------------------------------------------------------------


def rule_is_used(rule: EarnRule) -> bool:
    """Whether an earn entry written since the rule's start names it in its breakdown."""
    entries = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.EARN, created_at__gte=rule.valid_from)
    if connection.features.supports_json_field_contains:
        return entries.filter(detail__lines__contains=[{"rule": rule.pk}]).exists()
    # SQLite (first-run default) has no JSON containment: look in Python.
    return any(
        isinstance(line, dict) and line.get("rule") == rule.pk
        for detail in entries.values_list("detail", flat=True).iterator()
        for line in (detail or {}).get("lines", [])
    )


_COMPARED_FIELDS = [
    field.attname
    for field in EarnRule._meta.concrete_fields
    if field.attname not in ("id", "created_at") and not field.many_to_many
]


def _differs(edited, stored) -> bool:
    # Forms round-trip times to the second: a lost fraction of a second is no change.
    if isinstance(edited, dt.datetime) and isinstance(stored, dt.datetime):
        return abs(edited - stored) >= dt.timedelta(seconds=1)
    return edited != stored


@transaction.atomic
def rule_revise(*, rule: EarnRule, stores: Iterable[Store] | None = None, now: dt.datetime | None = None) -> EarnRule:
    """Save staff's changes to ``rule`` (an edited, unsaved instance) without rewriting history.

    A new rule, or one no earn has used yet, is saved in place. A used rule is closed at
    the start of the change (now, or the edited ``valid_from`` if that is later) and the
    edited values become a new rule from then on, returned (``rule`` itself, given the
    new id): orders that happened before keep earning by the old rule, even if they
    are recorded later. An edit that ends a used rule before the change starts only
    closes it; the closed rule is returned. ``stores`` None keeps the stores.
    """
    now = now or timezone.now()
    if rule.pk is None:
        rule.save()
        if stores is not None:
            rule.stores.set(stores)
        return rule
    current = EarnRule.objects.select_for_update().get(pk=rule.pk)
    current_stores = set(current.stores.values_list("pk", flat=True))
    new_stores = current_stores if stores is None else {store.pk for store in stores}
    changed = any(_differs(getattr(rule, name), getattr(current, name)) for name in _COMPARED_FIELDS)
    if not changed and new_stores == current_stores:
        return current
    if not rule_is_used(current):
        rule.save()
        rule.stores.set(new_stores)
        return rule

    start = max(now, rule.valid_from, current.valid_from)
    if current.valid_until is None or current.valid_until > start:
        EarnRule.objects.filter(pk=current.pk).update(valid_until=start)
        current.valid_until = start
    if rule.valid_until is not None and rule.valid_until <= start:
        return current
    rule.pk = None
    rule._state.adding = True
    rule.valid_from = start
    rule.created_at = now
    rule.save()
    rule.stores.set(new_stores)
    return rule
