"""``{% programme_card member %}``: what the programme adds to the member card: the paid
plan while it is active, the track (owner or fan, by the configured names), and the
badges held (the latest six). Three queries."""

from django import template
from django.utils import timezone

from loyalty.models import Order
from programme.benefits import membership_active
from programme.contribution import track_name
from programme.models import MemberBadge

register = template.Library()


@register.inclusion_tag("center/programme/_card.html")
def programme_card(member):
    membership = membership_active(member.pk, timezone.now())
    held = list(
        MemberBadge.objects.filter(member=member, revoked_at__isnull=True)
        .select_related("badge")
        .order_by("-awarded_at", "-id")[:6]
    )
    is_owner = Order.objects.counting().filter(member=member).exists()
    track = track_name(is_owner=is_owner)
    return {"plan": membership.plan if membership else None, "track": track, "badges": held}
