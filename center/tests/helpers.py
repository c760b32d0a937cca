"""Test helpers: a notification sender that keeps what it sends, so tests can read codes."""

import re


class OutboxSender:
    """Stands in for the SMS gateway; ``sent`` holds every notification it was given."""

    sent: list = []

    def send(self, notification) -> None:
        OutboxSender.sent.append(notification)


def last_code(phone: str) -> str:
    """The six digits of the newest one-time code sent to ``phone``."""
    for notification in reversed(OutboxSender.sent):
        if (notification.data or {}).get("phone") == phone:
            return re.search(r"\b(\d{6})\b", notification.body).group(1)
    raise AssertionError(f"no code was sent to {phone}")
