"""The development SMS provider: writes the message to the log. Refuses in production
(``DJANGO_ENV=production``), so a one-time code never lands in a production log."""

import logging

from django.conf import settings

from .base import GiveUp, Message

logger = logging.getLogger("outreach.sms")


class LogSms:
    name = "log"

    def send(self, message: Message, *, template: str) -> str:
        if settings.PRODUCTION:
            raise GiveUp("no_provider", "the log SMS provider does not send in production")
        logger.info("SMS to %s (%s, template %s): %s", message.recipient, message.kind, template, message.body)
        return ""
