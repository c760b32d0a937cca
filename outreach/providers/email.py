"""Email through Django's email backend (``EMAIL_BACKEND``, SMTP in production): a text
part and an HTML part rendered from ``outreach/email/notice.txt`` and ``.html``."""

import smtplib

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.message import make_msgid
from django.template.loader import render_to_string

from .base import BadRecipient, Message, TemporaryError


class EmailSender:
    name = "email"

    def send(self, message: Message, *, template: object = None) -> str:
        context = {"title": message.title, "body": message.body, "brand": settings.OUTREACH_BRAND_NAME}
        email = EmailMultiAlternatives(
            subject=message.title,
            body=render_to_string("outreach/email/notice.txt", context),
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[message.recipient],
            headers={"Message-ID": make_msgid(domain=settings.DEFAULT_FROM_EMAIL.rpartition("@")[2] or "localhost")},
        )
        email.attach_alternative(render_to_string("outreach/email/notice.html", context), "text/html")
        try:
            email.send()
        except smtplib.SMTPRecipientsRefused as error:
            raise BadRecipient("recipient_refused", str(error)[:200]) from None
        except (smtplib.SMTPException, OSError) as error:
            raise TemporaryError("smtp", str(error)[:200]) from None
        return email.extra_headers.get("Message-ID", "")
