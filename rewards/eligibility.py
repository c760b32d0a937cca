"""Who may redeem a reward, and why not: one pure function shared by the service and the mall.

``reward_redeem`` asks it under the reward's row lock with fresh figures; ``reward_offers``
asks it for every reward with figures read once for the whole catalogue. Both therefore
refuse for the same reasons, in the same order, with the same words.
"""

import datetime as dt
from dataclasses import dataclass

from django.utils import timezone
from django.utils.translation import gettext as _

from members.models import Member

from .models import Reward


@dataclass(frozen=True)
class Refusal:
    code: str  # stable: member_inactive, reward_unavailable, tier_too_low, out_of_stock, limit_reached, ...
    message: str  # translated, for the member
    points_missing: int = 0


def _when(moment: dt.datetime) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M")


def refusal(
    reward: Reward,
    *,
    now: dt.datetime,
    member_status: str,
    tier_rank: int | None,
    redeemed: int,
    balance: int | None,
) -> Refusal | None:
    """Why this member may not redeem ``reward`` now, or None when they may.

    ``tier_rank`` is the rank of the member's current tier (None: no tier), ``redeemed``
    how many completed redemptions of this reward they have, ``balance`` their available
    points (None: not checked here; ``points_spend`` checks it under the account lock).
    ``reward.min_tier`` should be loaded with the reward.
    """
    if member_status != Member.Status.ACTIVE:
        return Refusal("member_inactive", _("Your membership is not active, so rewards cannot be redeemed."))
    if not reward.is_active:
        return Refusal("reward_unavailable", _("This reward is no longer available."))
    if reward.available_from is not None and now < reward.available_from:
        return Refusal("reward_unavailable", _("Available from %(date)s.") % {"date": _when(reward.available_from)})
    if reward.available_until is not None and now >= reward.available_until:
        return Refusal("reward_unavailable", _("This reward is no longer available."))
    if reward.min_tier is not None and (tier_rank is None or tier_rank < reward.min_tier.rank):
        return Refusal("tier_too_low", _("For %(tier)s members and above.") % {"tier": reward.min_tier.name})
    if reward.stock is not None and reward.stock <= 0:
        return Refusal("out_of_stock", _("Out of stock."))
    if reward.per_member_limit is not None and redeemed >= reward.per_member_limit:
        return Refusal(
            "limit_reached",
            _("You have redeemed this %(count)s times, the most allowed per member.")
            % {"count": reward.per_member_limit},
        )
    if balance is not None and balance < reward.points_cost:
        missing = reward.points_cost - balance
        return Refusal(
            "insufficient_balance",
            _("You need %(missing)s more points.") % {"missing": f"{missing:,}"},
            points_missing=missing,
        )
    return None
