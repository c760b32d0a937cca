"""Every change to the points ledger. One function per business action, transaction inside.

By topic, bottom to top (each module imports only those above it in this list):

- ``entries``: locking accounts, appending entries, opening and consuming lots, replays;
- ``settling``: release and expiry, refund debts, the chunk runner of the ``lots_*`` jobs;
- ``spending``: spend, reverse a spend, give back what a spend took;
- ``credits``: staff adjustments, awards, benefit grants, opening balances in bulk;
- ``orders``: earn for an order (through ``loyalty.rules``);
- ``refunds``: refunds of an order, its points and growth taken back.

Locking: every writer locks the member's account rows first (``SELECT ... FOR UPDATE``
in id order), then the lots it will touch, so the balance it decides on cannot change
under it. Entries are appended, never updated. Before an account changes it is settled
(``settling``). Input is cleaned by ``core.cleaners``.

Import the public API from here: ``from loyalty.services import order_earn``.
"""

from .credits import (
    accounts_open_with_balance,
    benefit_grants_record,
    points_adjust,
    points_award,
    points_award_bulk,
)
from .entries import CURRENCIES
from .merge import accounts_lock_pair, accounts_merge, accounts_merge_undo, merge_spent_since  # noqa: F401 - issue 20
from .orders import CLOCK_SKEW, EarnResult, OrderLineInput, order_earn
from .refunds import RefundResult, order_refund
from .settling import lots_expire_due, lots_release_matured
from .spending import points_spend, points_spend_reverse
from .transfers import (  # noqa: F401 - issue 19 (programme)
    TakeBack,
    points_take_back,
    points_transfer,
    points_transfer_in,
    points_transfer_out,
    points_transfer_return,
    points_transfer_reverse,
)

__all__ = [
    "CLOCK_SKEW",
    "CURRENCIES",
    "EarnResult",
    "OrderLineInput",
    "RefundResult",
    "accounts_open_with_balance",
    "benefit_grants_record",
    "lots_expire_due",
    "lots_release_matured",
    "order_earn",
    "order_refund",
    "points_adjust",
    "points_award",
    "points_award_bulk",
    "points_spend",
    "points_spend_reverse",
]
