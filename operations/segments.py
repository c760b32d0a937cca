"""Segments: saved filters over members, the audience of journeys and exports (docs/segments.md).

A segment's ``rules`` is a JSON object; every key is optional and the keys combine with
AND (a member must satisfy all of them). A key whose value is empty (``[]``, ``null``,
``""``) means "no condition". The keys:

- ``stages``: lifecycle stages (``new``, ``growing``, ...); the member's stage is one of them.
- ``rfm_segments``: RFM segment codes (``champions``, ...); the member's segment is one of them.
- ``tiers``: tier codes; the member's current tier is one of them.
- ``tags_any`` / ``tags_all``: tag names; the member has at least one / every one of them.
- ``stores``: store codes; the member's home store is one of them.
- ``channels``: order channels (``store``, ``mini_program``, ``online_mall``, ``marketplace``,
  ``partner``); the member has an order that counts placed in one of them.
- ``spend_min`` / ``spend_max``: yuan (number or string, "199.50"); ``spend_total`` within, inclusive.
- ``orders_min`` / ``orders_max``: whole numbers; ``order_count`` within, inclusive.
- ``points_min`` / ``points_max``: whole numbers; available points within, inclusive.
- ``joined_within_days``: days (1 or more); joined in the last N days.
- ``last_order_within_days``: days; last order in the last N days.
- ``no_order_for_days``: days; no order in the last N days (members who never ordered included).
- ``consent``: ``sms``, ``email``, ``wechat`` or ``any``; consented to that channel (any: one at least).
- ``gender``: ``female`` / ``male`` / ``unknown`` (a list, or one string); the member's gender is one of them.
- ``status``: ``active`` / ``frozen`` / ``closed`` (a list, or one string); the member's status is one of them.
- ``rfm_recency`` / ``rfm_frequency``: RFM scores 1-5 (a list); the member's R / F score is one of them.
- ``joined_from`` / ``joined_to``: dates ("2026-11-01"), inclusive, local time; joined on or after / on or before.
- ``bought_from`` / ``bought_to``: dates, inclusive; a counted order (any store) placed in that window
  (either end may be open); with ``bought_orders_min``: at least that many counted orders in it.

Erased members (``erased_at`` set) never belong to a segment. ``spend_total``,
``order_count`` and ``last_order_at`` are the figures the nightly lifecycle run keeps on
each member (operations.lifecycle); available points are read live from the points account
(a member without one has 0).

``segment_members`` is one query (conditions on other tables are ``EXISTS`` subqueries,
so a member appears once) and returns a ``Member`` queryset that callers may filter
further, e.g. ``segment_members(segment).filter(home_store__in=stores)``.
"""

import datetime as dt
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation

from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from core.errors import LoyaltyError
from engagement.models import AutoTag
from loyalty.models import Account, Currency, Order, Tier
from members.models import Member, RfmSegment, Segment, Stage, Store, Tag
from members.scoping import require_staff, staff_stores

CONSENT_CHANNELS = ("sms", "email", "wechat", "any")
LIST_KEYS = ("stages", "rfm_segments", "tiers", "tags_any", "tags_all", "stores", "gender", "status", "channels")
RANGE_KEYS = (("spend_min", "spend_max"), ("orders_min", "orders_max"), ("points_min", "points_max"))
DAY_KEYS = ("joined_within_days", "last_order_within_days", "no_order_for_days")
SCORE_KEYS = ("rfm_recency", "rfm_frequency")
DATE_KEYS = ("joined_from", "joined_to", "bought_from", "bought_to")
RULE_KEYS = (
    *LIST_KEYS,
    *(key for pair in RANGE_KEYS for key in pair),
    *DAY_KEYS,
    "consent",
    *SCORE_KEYS,
    *DATE_KEYS,
    "bought_orders_min",
)
SCORES = (1, 2, 3, 4, 5)
MAX_LIST_ITEMS = 100  # names per list; a longer list is a mistake, not a segment
MAX_DAYS = 36500
MAX_SPEND = Decimal("999999999999.99")
MAX_WHOLE = 10**12

_CHOICES = {
    "stages": Stage.values,
    "rfm_segments": RfmSegment.values,
    "gender": Member.Gender.values,
    "status": Member.Status.values,
    "channels": Order.Channel.values,
}


def _refuse(key: str, message: str) -> LoyaltyError:
    return LoyaltyError("segment_rule_invalid", message, key=key, fields={key: message})


def _clean_list(key: str, value) -> list[str]:
    if isinstance(value, str) and key in ("gender", "status"):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise _refuse(key, _("Segment rule “%(key)s” must be a list of names.") % {"key": key})
    items = list(dict.fromkeys(item.strip() for item in value if item.strip()))
    if len(items) > MAX_LIST_ITEMS:
        raise _refuse(
            key, _("Segment rule “%(key)s” lists more than %(max)d names.") % {"key": key, "max": MAX_LIST_ITEMS}
        )
    allowed = _CHOICES.get(key)
    if allowed is not None:
        unknown = [item for item in items if item not in allowed]
        if unknown:
            raise _refuse(
                key,
                _("Segment rule “%(key)s” does not know %(values)s; use %(allowed)s.")
                % {"key": key, "values": ", ".join(unknown), "allowed": ", ".join(allowed)},
            )
    return items


def _clean_number(key: str, value) -> Decimal | int:
    decimal = key.startswith("spend_")
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise _refuse(key, _("Segment rule “%(key)s” must be a number.") % {"key": key})
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        raise _refuse(key, _("Segment rule “%(key)s” must be a number.") % {"key": key})
    if key in DAY_KEYS:
        if number != number.to_integral_value() or not 1 <= number <= MAX_DAYS:
            raise _refuse(
                key,
                _("Segment rule “%(key)s” must be a whole number of days from 1 to %(max)d.")
                % {"key": key, "max": MAX_DAYS},
            )
        return int(number)
    if decimal:
        if number < 0 or number > MAX_SPEND or number != number.quantize(Decimal("0.01")):
            raise _refuse(
                key,
                _("Segment rule “%(key)s” must be an amount in yuan, 0 or more, with at most two decimals.")
                % {"key": key},
            )
        return number.quantize(Decimal("0.01"))
    if number != number.to_integral_value() or not 0 <= number <= MAX_WHOLE:
        raise _refuse(key, _("Segment rule “%(key)s” must be a whole number, 0 or more.") % {"key": key})
    return int(number)


def _clean_scores(key: str, value) -> list[int]:
    items = [value] if isinstance(value, int | str) else value
    if not isinstance(items, list | tuple):
        items = None
    scores = []
    for item in items or [None]:
        if isinstance(item, str) and item.strip().isdigit():
            item = int(item)
        if isinstance(item, bool) or item not in SCORES:
            raise _refuse(key, _("Segment rule “%(key)s” must list RFM scores from 1 to 5.") % {"key": key})
        scores.append(item)
    return sorted(set(scores))


def _clean_date(key: str, value) -> str:
    try:
        return dt.date.fromisoformat(value.strip() if isinstance(value, str) else "").isoformat()
    except ValueError:
        raise _refuse(key, _("Segment rule “%(key)s” must be a date (YYYY-MM-DD).") % {"key": key}) from None


def _check_names_exist(rules: dict) -> None:
    """Tier, tag and store names that exist (three small queries at most): typos refused when saving."""
    for key, model, column in (
        ("tiers", Tier, "code"),
        ("tags_any", Tag, "name"),
        ("tags_all", Tag, "name"),
        ("stores", Store, "code"),
    ):
        names = rules.get(key)
        if not names:
            continue
        found = set(model.objects.filter(**{f"{column}__in": names}).values_list(column, flat=True))
        missing = [name for name in names if name not in found]
        if missing:
            raise _refuse(
                key,
                _("Segment rule “%(key)s” names %(values)s, which do not exist.")
                % {"key": key, "values": ", ".join(missing)},
            )


def segment_rules_clean(rules, *, check_names: bool = True) -> dict:
    """The rules in their canonical form (empty conditions dropped), or LoyaltyError naming the bad key.

    Refuses: anything but a JSON object, unknown keys, lists that are not lists of names
    or hold unknown stages / RFM segments / genders / statuses, numbers that are not
    numbers or are negative, day counts below 1, a minimum above its maximum, an unknown
    consent channel and, with ``check_names``, tiers, tags and stores that do not exist.
    The error's ``code`` is ``segment_rule_invalid`` and ``extra["key"]`` the rule's key.
    """
    if rules is None:
        return {}
    if not isinstance(rules, Mapping):
        raise _refuse("rules", _("Segment rules must be a JSON object of conditions."))
    unknown = [str(key) for key in rules if key not in RULE_KEYS]
    if unknown:
        raise _refuse(
            unknown[0],
            _("“%(key)s” is not a segment rule; the rules are %(known)s.")
            % {"key": unknown[0], "known": ", ".join(RULE_KEYS)},
        )
    clean: dict = {}
    for key, value in rules.items():
        if value is None or value == "" or value == []:
            continue
        if key in LIST_KEYS:
            items = _clean_list(key, value)
            if items:
                clean[key] = items
        elif key in SCORE_KEYS:
            clean[key] = _clean_scores(key, value)
        elif key in DATE_KEYS:
            clean[key] = _clean_date(key, value)
        elif key == "bought_orders_min":
            number = _clean_number("orders_min", value)
            if number < 1:
                raise _refuse(key, _("Segment rule “%(key)s” must be a whole number, 1 or more.") % {"key": key})
            clean[key] = number
        elif key == "consent":
            if value not in CONSENT_CHANNELS:
                raise _refuse(
                    key,
                    _("Segment rule “consent” must be one of %(allowed)s.") % {"allowed": ", ".join(CONSENT_CHANNELS)},
                )
            clean[key] = value
        else:
            clean[key] = _clean_number(key, value)
    for low, high in RANGE_KEYS:
        if low in clean and high in clean and clean[low] > clean[high]:
            raise _refuse(
                low,
                _("Segment rule “%(low)s” (%(min)s) is above “%(high)s” (%(max)s).")
                % {"low": low, "min": clean[low], "high": high, "max": clean[high]},
            )
    for low, high in (("joined_from", "joined_to"), ("bought_from", "bought_to")):
        if low in clean and high in clean and clean[low] > clean[high]:
            raise _refuse(
                low,
                _("Segment rule “%(low)s” (%(min)s) is after “%(high)s” (%(max)s).")
                % {"low": low, "min": clean[low], "high": high, "max": clean[high]},
            )
    if "bought_orders_min" in clean and not ("bought_from" in clean or "bought_to" in clean):
        raise _refuse("bought_orders_min", _("Segment rule “bought_orders_min” needs “bought_from” or “bought_to”."))
    if (
        "last_order_within_days" in clean
        and "no_order_for_days" in clean
        and clean["no_order_for_days"] >= clean["last_order_within_days"]
    ):
        raise _refuse(
            "no_order_for_days",
            _("“no_order_for_days” must be shorter than “last_order_within_days”, or no member can match."),
        )
    if check_names:
        _check_names_exist(clean)
    # JSON keeps numbers as numbers; amounts as strings so that 0.10 stays exact.
    return {key: (str(value) if isinstance(value, Decimal) else value) for key, value in clean.items()}


def day_start(day: str | dt.date) -> dt.datetime:
    """The first instant of a local calendar day (``TIME_ZONE``)."""
    day = dt.date.fromisoformat(day) if isinstance(day, str) else day
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def day_after(day: str | dt.date) -> dt.datetime:
    """The first instant after a local calendar day: date windows are inclusive of whole days."""
    day = dt.date.fromisoformat(day) if isinstance(day, str) else day
    return day_start(day + dt.timedelta(days=1))


def purchases_q(rules: Mapping, *, prefix: str = "") -> Q:
    """The condition on ``Order`` for the ``bought_from`` / ``bought_to`` window of ``rules``."""
    q = Q()
    if rules.get("bought_from"):
        q &= Q(**{f"{prefix}occurred_at__gte": day_start(rules["bought_from"])})
    if rules.get("bought_to"):
        q &= Q(**{f"{prefix}occurred_at__lt": day_after(rules["bought_to"])})
    return q


def segment_q(rules: Mapping, *, now: dt.datetime | None = None) -> Q:
    """The condition on ``Member`` that ``rules`` (already cleaned, or cleaned here) describe."""
    rules = segment_rules_clean(rules, check_names=False)
    now = now or timezone.now()
    q = Q(erased_at__isnull=True)
    if rules.get("stages"):
        q &= Q(stage__in=rules["stages"])
    if rules.get("rfm_segments"):
        q &= Q(rfm_segment__in=rules["rfm_segments"])
    if rules.get("tiers"):
        q &= Q(tier_state__tier__code__in=rules["tiers"])
    if rules.get("stores"):
        q &= Q(home_store__code__in=rules["stores"])
    if rules.get("gender"):
        q &= Q(gender__in=rules["gender"])
    if rules.get("status"):
        q &= Q(status__in=rules["status"])
    tagged = Member.tags.through.objects.filter(member_id=OuterRef("pk"))
    if rules.get("tags_any"):
        q &= Q(Exists(tagged.filter(tag__name__in=rules["tags_any"])))
    for name in rules.get("tags_all", []):
        q &= Q(Exists(tagged.filter(tag__name=name)))
    if rules.get("rfm_recency"):
        q &= Q(rfm_recency__in=rules["rfm_recency"])
    if rules.get("rfm_frequency"):
        q &= Q(rfm_frequency__in=rules["rfm_frequency"])
    if rules.get("joined_from"):
        q &= Q(joined_at__gte=day_start(rules["joined_from"]))
    if rules.get("joined_to"):
        q &= Q(joined_at__lt=day_after(rules["joined_to"]))
    if rules.get("bought_from") or rules.get("bought_to"):
        bought = Order.objects.counting().filter(purchases_q(rules), member_id=OuterRef("pk"))
        least = rules.get("bought_orders_min", 1)
        if least <= 1:
            q &= Q(Exists(bought))
        else:
            # The members with enough purchases in the window, grouped once (not per member).
            counted = (
                Order.objects.counting()
                .filter(purchases_q(rules))
                .order_by()
                .values("member_id")
                .annotate(n=Count("id"))
                .filter(n__gte=least)
                .values("member_id")
            )
            q &= Q(pk__in=counted)
    if rules.get("channels"):
        orders = Order.objects.counting().filter(member_id=OuterRef("pk"), channel__in=rules["channels"])
        q &= Q(Exists(orders))
    bounds = {
        "spend_min": "spend_total__gte",
        "spend_max": "spend_total__lte",
        "orders_min": "order_count__gte",
        "orders_max": "order_count__lte",
    }
    for key, lookup in bounds.items():
        if key in rules:
            q &= Q(**{lookup: Decimal(rules[key]) if key.startswith("spend_") else rules[key]})
    # Available points without an annotation, so the queryset stays plain: a member without
    # an account has 0 points, which "no account above the maximum" counts naturally.
    points = Account.objects.filter(member_id=OuterRef("pk"), currency=Currency.POINTS)
    if rules.get("points_min"):
        q &= Q(Exists(points.filter(balance__gte=rules["points_min"])))
    if "points_max" in rules:
        q &= ~Q(Exists(points.filter(balance__gt=rules["points_max"])))
    if "joined_within_days" in rules:
        q &= Q(joined_at__gte=now - dt.timedelta(days=rules["joined_within_days"]))
    if "last_order_within_days" in rules:
        q &= Q(last_order_at__gte=now - dt.timedelta(days=rules["last_order_within_days"]))
    if "no_order_for_days" in rules:
        cutoff = now - dt.timedelta(days=rules["no_order_for_days"])
        q &= Q(last_order_at__isnull=True) | Q(last_order_at__lt=cutoff)
    consent = rules.get("consent")
    if consent == "any":
        q &= Q(sms_consent_at__isnull=False) | Q(email_consent_at__isnull=False) | Q(wechat_consent_at__isnull=False)
    elif consent:
        q &= Q(**{f"{consent}_consent_at__isnull": False})
    return q


def _window(start: str | None, end: str | None) -> str:
    return f"{start or '…'} – {end or '…'}"


def rules_describe(rules: Mapping) -> str:
    """The rules in words, in the current language ("R3 · F2 · Jing'an store"): the member
    list's selection and the default name of a segment saved from the dashboard."""
    parts: list[str] = []
    labels = {
        "stages": lambda code: str(Stage(code).label),
        "rfm_segments": lambda code: str(RfmSegment(code).label),
        "channels": lambda code: str(Order.Channel(code).label),
    }
    for key in ("stages", "rfm_segments", "channels"):
        if rules.get(key):
            parts.append(" / ".join(labels[key](code) for code in rules[key]))
    for key, letter in (("rfm_recency", "R"), ("rfm_frequency", "F")):
        if rules.get(key):
            parts.append("/".join(f"{letter}{n}" for n in rules[key]))
    if rules.get("tiers"):
        names = dict(Tier.objects.filter(code__in=rules["tiers"]).values_list("code", "name"))
        parts.append(" / ".join(names.get(code, code) for code in rules["tiers"]))
    if rules.get("joined_from") or rules.get("joined_to"):
        parts.append(_("joined %(window)s") % {"window": _window(rules.get("joined_from"), rules.get("joined_to"))})
    if rules.get("bought_from") or rules.get("bought_to"):
        window = _window(rules.get("bought_from"), rules.get("bought_to"))
        if rules.get("bought_orders_min", 1) > 1:
            parts.append(_("%(n)d+ orders %(window)s") % {"n": rules["bought_orders_min"], "window": window})
        else:
            parts.append(_("bought %(window)s") % {"window": window})
    shown = {"stages", "rfm_segments", "channels", "rfm_recency", "rfm_frequency", "tiers", "stores"}
    shown |= {*DATE_KEYS, "bought_orders_min"}
    for key, value in rules.items():
        if key not in shown:
            parts.append(f"{key}: {value}")
    if rules.get("stores"):
        names = dict(Store.objects.filter(code__in=rules["stores"]).values_list("code", "name"))
        parts.append(", ".join(names.get(code, code) for code in rules["stores"]))
    return " · ".join(parts) or _("every member")


@transaction.atomic
def segment_create(*, actor, name: str, rules: Mapping, description: str = "") -> Segment:
    """Save ``rules`` as a segment created by ``actor`` (the dashboard's "Save as segment").

    Needs ``members.add_segment``. A staff user scoped to stores saves a segment of their
    stores: rules without ``stores`` get theirs, rules naming other stores are narrowed to
    theirs (none of theirs: refused), so the segment selects the members they were shown. An empty name becomes the
    rules in words. Refuses invalid rules (``segment_rule_invalid``), a scoped user without
    stores (``out_of_scope``) and a name already taken (``segment_name_taken``).
    """
    require_staff(actor, "members.add_segment")
    rules = segment_rules_clean(rules)
    allowed = staff_stores(actor)
    if allowed is not None:
        mine = set(allowed.values_list("code", flat=True))
        if not mine:
            raise LoyaltyError("out_of_scope", _("Your staff profile lists no store, so there are no members to save."))
        wanted = set(rules.get("stores") or mine) & mine
        if not wanted:
            raise LoyaltyError("out_of_scope", _("Those stores are not yours."))
        rules["stores"] = sorted(wanted)
    described = rules_describe(rules)
    name = " ".join(name.split())[:100] or described[:100]
    if Segment.objects.filter(name=name).exists():
        raise LoyaltyError(
            "segment_name_taken", _("A segment named “%(name)s” exists already; give another name.") % {"name": name}
        )
    return Segment.objects.create(
        name=name,
        rules=rules,
        description=description or _("Saved from the operations dashboard: %(rules)s") % {"rules": described},
        created_by=actor,
    )


def scoped_members(user) -> QuerySet[Member]:
    """The members ``user`` may count and export: their stores' members when they are scoped."""
    stores = staff_stores(user)
    return Member.objects.all() if stores is None else Member.objects.filter(home_store__in=stores)


def _rules_of(segment_or_rules: Segment | Mapping) -> Mapping:
    return segment_or_rules.rules if isinstance(segment_or_rules, Segment) else segment_or_rules


def segment_members(segment_or_rules: Segment | Mapping, *, now: dt.datetime | None = None) -> QuerySet[Member]:
    """The members a segment (or a rules object) selects: a plain ``Member`` queryset, one query.

    Raises LoyaltyError (``segment_rule_invalid``) for rules that are not valid.
    """
    return Member.objects.filter(segment_q(_rules_of(segment_or_rules), now=now))


def segment_count(
    segment_or_rules: Segment | Mapping, *, members: QuerySet[Member] | None = None, now: dt.datetime | None = None
) -> int:
    """How many members the segment selects now (among ``members`` when given, e.g. a staff scope)."""
    base = Member.objects.all() if members is None else members
    return base.filter(segment_q(_rules_of(segment_or_rules), now=now)).count()


def segment_counts(
    segments: Iterable[Segment], *, members: QuerySet[Member] | None = None, now: dt.datetime | None = None
) -> dict[int, int | None]:
    """Live counts of several segments in one query (a filtered count per segment).

    A segment whose stored rules are no longer valid counts as None instead of failing the page.
    """
    base = Member.objects.all() if members is None else members
    counts: dict[int, int | None] = {}
    aggregates = {}
    for segment in segments:
        try:
            aggregates[f"s{segment.pk}"] = Count("pk", filter=segment_q(segment.rules, now=now))
        except LoyaltyError:
            counts[segment.pk] = None
    if aggregates:
        for key, value in base.order_by().aggregate(**aggregates).items():
            counts[int(key[1:])] = value
    return counts


# --- rule-based tags (engagement.AutoTag): a tag whose members are a segment's -------------


def auto_tags_refresh(*, auto_tags=None, now: dt.datetime | None = None) -> dict[str, dict[str, int]]:
    """Make each active rule-based tag's members exactly its segment's members (the nightly job).

    Set-based: per tag one ``INSERT ... SELECT`` of the members the segment selects and the
    tag lacks, one ``DELETE`` of the tagged members it no longer selects, each tag its own
    transaction. Returns {tag name: {"added", "removed", "members"}}; a tag whose segment
    rules no longer validate is reported as {"error": ...} and left as it was.
    """
    now = now or timezone.now()
    queryset = AutoTag.objects.filter(is_active=True) if auto_tags is None else auto_tags
    results: dict[str, dict] = {}
    through = Member.tags.through
    for rule in queryset.select_related("tag", "segment").order_by("id"):
        try:
            inside = segment_members(rule.segment, now=now)
        except LoyaltyError as error:
            results[rule.tag.name] = {"error": error.message}
            continue
        with transaction.atomic():
            have = through.objects.filter(tag_id=rule.tag_id, member_id=OuterRef("pk"))
            missing = inside.filter(~Exists(have)).values_list("pk", flat=True)
            sql, params = missing.query.sql_with_params()
            with connection.cursor() as cursor:
                cursor.execute(
                    f"INSERT INTO {through._meta.db_table} (member_id, tag_id) SELECT t.id, %s FROM ({sql}) t(id) "
                    "ON CONFLICT DO NOTHING",
                    [rule.tag_id, *params],
                )
                added = cursor.rowcount
            removed, _detail = (
                through.objects.filter(tag_id=rule.tag_id).exclude(member_id__in=inside.values("pk")).delete()
            )
            count = through.objects.filter(tag_id=rule.tag_id).count()
            AutoTag.objects.filter(pk=rule.pk).update(refreshed_at=now, member_count=count)
        results[rule.tag.name] = {"added": added, "removed": removed, "members": count}
    return results
