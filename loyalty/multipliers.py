"""The hook through which apps above ``loyalty`` change an order's earn multiplier.

``loyalty.rules.evaluate`` asks :func:`earn_multiplier` for the multiplier to apply on the
order's base, starting from the member's tier multiplier (``(value, title)`` or None).
Each registered adjuster gets what the previous one returned and may return it as is,
replace it or combine it (``programme`` adds the paid plan's multiplier, by its
``PROGRAMME_MULTIPLIERS`` setting). Adjusters only read. ``loyalty`` knows none of them:
they register themselves in their app's ``ready()``.
"""

import datetime as dt
from collections.abc import Callable
from decimal import Decimal

from members.models import Member

Multiplier = tuple[Decimal, str] | None
Adjuster = Callable[..., Multiplier]

_adjusters: list[Adjuster] = []


def earn_multiplier_adjuster_register(adjuster: Adjuster) -> None:
    """Add ``adjuster(member=, tier=, now=, config=) -> (value, title) | None``; once,
    whatever the calls. ``config`` is the ``loyalty.configuration.Programme`` the order is
    evaluated under (its ``extra`` holds what the adjuster's app registered), or None."""
    if adjuster not in _adjusters:
        _adjusters.append(adjuster)


def earn_multiplier(member: Member, tier: Multiplier, now: dt.datetime, config=None) -> Multiplier:
    """The multiplier an order of ``member`` earns with, from the tier's and every adjuster."""
    for adjuster in _adjusters:
        tier = adjuster(member=member, tier=tier, now=now, config=config)
    return tier
