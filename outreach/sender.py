"""The sender named by ``LOYALTY_NOTIFICATION_SENDER`` (members.notifications' pluggable
backend, like Django's ``EMAIL_BACKEND``): members never imports this app; the setting
plugs it in."""

import datetime as dt

from members.models import Notification

from . import services


class RoutingSender:
    """Outbox rows start their deliveries (routing, consent, quiet hours, cap); an unsaved
    message (a one-time code) is sent at once and raises when no provider took it."""

    def send(self, notification: Notification) -> None:
        if notification.pk is None:
            services.deliver_now(notification)
        else:
            services.deliveries_start(notification)

    def send_due(self, *, now: dt.datetime | None = None) -> dict[str, int]:
        """Deliveries whose retry or quiet hours are over, sent now."""
        return services.deliveries_send_due(now=now)
