"""Events that can satisfy a badge: a new order, a check-in, a tier change. Each queues
``programme.evaluate_badges`` for the member after the transaction commits (the earn path
pays one enqueue after its commit, not the evaluation, and no query: whether a badge is
active comes with the cached programme configuration the earn ran under; nothing while no
badge is active). Referrals are decided by an UPDATE, which sends no signal: the nightly
sweep awards referral badges. Off with PROGRAMME_BADGES_ON_EVENTS."""

import logging

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_save

from engagement.models import CheckIn
from loyalty.models import MemberTier, Order
from members.models import Member

from . import contribution
from .benefits import BADGES_ACTIVE, badges_active
from .tasks import evaluate_badges

logger = logging.getLogger(__name__)


def _queue(member_id: int, badges: bool | None = None) -> None:
    if badges is None:
        badges = badges_active()
    if not badges:
        return  # no badge to earn: no message to the broker
    try:
        evaluate_badges.delay(member_id)
    except Exception:  # a broker down must not fail the order; the nightly sweep catches up
        logger.exception("could not queue the badge evaluation of member %s", member_id)


def _on_save(sender, instance, created, **kwargs) -> None:
    if not settings.PROGRAMME_BADGES_ON_EVENTS or (sender is not MemberTier and not created):
        return
    member_id = instance.member_id
    badges = None
    config = kwargs.get("programme")  # an earn's order: the configuration of its own version
    if config is not None and config.version is not None:
        badges = config.extra.get(BADGES_ACTIVE)
    transaction.on_commit(lambda: _queue(member_id, badges))


def _contribution_on_check_in(sender, instance, created, **kwargs) -> None:
    if created:
        contribution.on_check_in(instance)


def _contribution_on_member_saved(sender, instance, **kwargs) -> None:
    contribution.on_profile_saved(instance)


def connect() -> None:
    for model in (Order, CheckIn, MemberTier):
        post_save.connect(_on_save, sender=model, dispatch_uid=f"programme-badges-{model.__name__}")
    # Contribution (dual membership): a check-in, a completed profile.
    post_save.connect(_contribution_on_check_in, sender=CheckIn, dispatch_uid="programme-contribution-check-in")
    post_save.connect(_contribution_on_member_saved, sender=Member, dispatch_uid="programme-contribution-profile")
