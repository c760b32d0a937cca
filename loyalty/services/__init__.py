"""The points ledger's services (being split by topic; see entries.py)."""

from .entries import *  # noqa: F403
from .entries import CLOCK_SKEW, CURRENCIES, _money  # noqa: F401
