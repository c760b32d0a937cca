"""Notification senders for tests (settings.LOYALTY_NOTIFICATION_SENDER)."""


class CapturingSender:
    """Keeps what it would have delivered, in ``sent``, instead of delivering it."""

    sent: list = []

    def send(self, notification):
        CapturingSender.sent.append(notification)

    @classmethod
    def last_code(cls) -> str:
        """The six-digit one-time code in the last message sent."""
        return next(w for w in cls.sent[-1].body.replace(".", " ").split() if w.isdigit() and len(w) == 6)
