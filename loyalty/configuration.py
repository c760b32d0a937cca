"""The programme's configuration, read once per process: earning rules, tiers, earn multipliers.

Every earn needs the active earning rules (with their stores), the tiers and each tier's
best earn multiplier. They change a few times a month and are read hundreds of times a
second, so each process keeps them in memory under the programme's version number
(``ProgrammeVersion``): on PostgreSQL a statement trigger on the four configuration tables
sets that number from a sequence whenever any of them changes (migration 0008). A reader
asks for the configuration *of a version* it read itself; the earn reads the version in
the same statement that locks the member's accounts (``version_expression``), so it costs
no statement of its own and is never older than the transaction. A new number makes the
next reader load the configuration again (four queries).

Apps above ``loyalty`` add facts of their own configuration to it
(:func:`configuration_loader_register`, ``Programme.extra``; ``programme`` says whether any
plan multiplies points and whether any badge is active), with the same trigger on their
tables (programme migration 0010).

Only configuration is cached: balances, lots, orders and member tiers never are. Elsewhere
than PostgreSQL (the SQLite first run) there is no trigger and every read loads afresh.
"""

import threading
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Prefetch, Subquery
from django.db.models.expressions import Value
from django.db.models.fields import BigIntegerField

from core.db import is_postgresql
from members.models import Store

from .models import Benefit, EarnRule, InLanguages, ProgrammeVersion, Tier, texts_in_languages


@dataclass(frozen=True)
class Programme:
    """What the earn rules and the tier hooks read; shared by every caller: do not change it."""

    version: int | None
    tiers: list[Tier] = field(default_factory=list)  # lowest rank first
    rules: list[EarnRule] = field(default_factory=list)  # active, stores prefetched, by priority then id
    multipliers: dict[int, tuple[Decimal, str]] = field(default_factory=dict)  # tier id -> (value, title)
    extra: dict[str, object] = field(default_factory=dict)  # name -> what its registered loader returned


_loaders: dict[str, object] = {}


def configuration_loader_register(name: str, loader) -> None:
    """Have ``loader()`` read at every load of the configuration, its value kept as
    ``Programme.extra[name]`` under the same version. The tables it reads must carry the
    version trigger (``loyalty_programme_bump``), or a change to them would not be seen."""
    _loaders[name] = loader


_lock = threading.Lock()
_cached: Programme | None = None


def version_expression():
    """The programme's version as an expression to annotate onto a query that runs anyway."""
    if not is_postgresql():
        return Value(None, output_field=BigIntegerField())
    return Subquery(ProgrammeVersion.objects.filter(pk=1).values("version")[:1], output_field=BigIntegerField())


def programme_version() -> int | None:
    """The programme's version now (one query); None where it is not kept (no caching then)."""
    if not is_postgresql():
        return None
    return ProgrammeVersion.objects.filter(pk=1).values_list("version", flat=True).first()


def _load(version: int | None) -> Programme:
    multipliers: dict[int, tuple[Decimal, str]] = {}
    rows = (
        Benefit.objects.filter(kind=Benefit.Kind.EARN_MULTIPLIER, is_active=True)
        .order_by("tier_id", "-value", "id")
        .select_related("tier")
    )
    for benefit in rows:
        # The title in every language, whatever the language of the request that loads it.
        title = texts_in_languages(benefit, "title")
        if not any(title.values()):
            title = texts_in_languages(benefit.tier, "name")
        multipliers.setdefault(benefit.tier_id, (benefit.value, InLanguages(title)))
    rules = (
        EarnRule.objects.filter(is_active=True)
        .prefetch_related(Prefetch("stores", queryset=Store.objects.only("id")))
        .order_by("priority", "id")
    )
    return Programme(
        version=version,
        tiers=list(Tier.objects.order_by("rank")),
        rules=list(rules),
        multipliers=multipliers,
        extra={name: loader() for name, loader in _loaders.items()},
    )


_UNREAD = object()


def programme(version: int | None | object = _UNREAD) -> Programme:
    """The configuration at ``version`` (read it with :func:`version_expression` in a query
    of your own, or leave it out to have it read here): from memory when this process
    loaded that version last, else loaded now. A version of None is never cached."""
    global _cached
    if version is _UNREAD:
        version = programme_version()
    cached = _cached
    if version is not None and cached is not None and cached.version == version:
        return cached
    loaded = _load(version)
    if version is not None:
        with _lock:
            _cached = loaded
    return loaded
