"""The earning-rule engine: which rules an order meets and what each line earns.

(Being written: see issue 3.)
"""

import datetime as dt

from members.models import Member


def signup_bonus(*, member: Member, now: dt.datetime) -> None:
    """Award the active signup-bonus rules to a member who just joined."""
