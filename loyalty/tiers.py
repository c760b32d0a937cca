"""Tier services: default tier on joining, upgrade on earn, the review sweep, staff pins.

(Being written: see issue 3.)
"""

import datetime as dt

from members.models import Member


def tier_assign_default(*, member: Member, now: dt.datetime) -> None:
    """Put a new member in the default tier (no-op when no default tier is configured)."""


def tier_upgrade_if_qualified(*, member_id: int, growth: int, now: dt.datetime) -> None:
    """Move the member up as soon as ``growth`` reaches a higher tier's threshold."""
