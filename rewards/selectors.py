"""Reads of the rewards mall and coupons shared by member pages, the API and the admin."""

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count, QuerySet
from django.utils import timezone

from loyalty.models import Account, Currency, MemberTier
from members.models import Member

from .eligibility import refusal
from .models import Coupon, Redemption, Reward


def coupons_for_member(*, member: Member, status: str | None = Coupon.Status.ISSUED) -> QuerySet[Coupon]:
    """A member's coupons, newest first; only the usable (issued) ones unless ``status`` says otherwise."""
    coupons = Coupon.objects.filter(member=member).select_related("benefit", "used_store")
    if status is not None:
        coupons = coupons.filter(status=status)
    return coupons.order_by("-issued_at", "-id")


@dataclass(frozen=True)
class RewardOffer:
    """A reward as this member sees it in the mall."""

    reward: Reward
    eligible: bool
    reason: str  # translated; empty when eligible
    code: str = ""  # the refusal code reward_redeem would raise; empty when eligible
    points_missing: int = 0
    is_partner = False  # programme.partners.PartnerMallOffer sits beside it in the mall

    @property
    def points_cost(self) -> int:
        return self.reward.points_cost


def reward_offers(*, member: Member, now: dt.datetime | None = None) -> list[RewardOffer]:
    """Every reward in the mall, in display order, with whether this member may redeem it and why not.

    At most four queries whatever the catalogue or the member's history: the rewards
    (with their tier), the points balance, the member's tier, and the member's completed
    redemptions counted per limited reward. The reasons are those ``reward_redeem`` gives.
    """
    now = now or timezone.now()
    rewards = list(
        Reward.objects.filter(is_active=True).select_related("min_tier").order_by("sort_order", "points_cost", "id")
    )
    if not rewards:
        return []
    balance = (
        Account.objects.filter(member=member, currency=Currency.POINTS).values_list("balance", flat=True).first() or 0
    )
    tier_rank = MemberTier.objects.filter(member=member).values_list("tier__rank", flat=True).first()
    limited = [reward.pk for reward in rewards if reward.per_member_limit is not None]
    redeemed: dict[int, int] = {}
    if limited:
        redeemed = dict(
            Redemption.objects.filter(member=member, reward_id__in=limited, status=Redemption.Status.COMPLETED)
            .values("reward_id")
            .annotate(n=Count("id"))
            .order_by()
            .values_list("reward_id", "n")
        )
    offers = []
    for reward in rewards:
        refused = refusal(
            reward,
            now=now,
            member_status=member.status,
            tier_rank=tier_rank,
            redeemed=redeemed.get(reward.pk, 0),
            balance=balance,
        )
        if refused is None:
            offers.append(RewardOffer(reward=reward, eligible=True, reason=""))
        else:
            offers.append(
                RewardOffer(
                    reward=reward,
                    eligible=False,
                    reason=refused.message,
                    code=refused.code,
                    points_missing=refused.points_missing,
                )
            )
    return offers


def redemptions_for_member(*, member: Member) -> QuerySet[Redemption]:
    """A member's redemptions, newest first, with the reward and the coupon joined in."""
    return Redemption.objects.filter(member=member).select_related("reward", "coupon").order_by("-created_at", "-id")
