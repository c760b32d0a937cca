"""The notification outbox: write a notice, deliver it through a pluggable sender (issue 3).

Code that wants to tell members something calls :func:`notices_enqueue` (many notices, one
insert) or :func:`notify` (one) inside its own transaction; the rows commit or roll back
with the change that caused them. That one function owns the rules every notice follows:
the dedupe key (a notice already written is skipped), the member's language for the text,
no notice to an erased or closed member, and marketing consent for a marketing notice.
A one-time code, which must never be stored, goes out through :func:`notice_send_unsaved`.
The
``members.send_notifications`` task then calls :func:`notifications_send_pending`, which
hands unsent rows to the sender named by ``settings.LOYALTY_NOTIFICATION_SENDER``:
``outreach.sender.RoutingSender`` by default, which routes each row to SMS, WeChat,
email or in-app and keeps a delivery record per attempt (docs/channels.md); a sender
with a ``send_due`` method also gets to send its retries on each run.

Texts are kept as written in the code with their values (``data["text"]``: the English
message ids and the parameters) and rendered in the member's language
(``Member.language``): once when the notice is written, so the member pages have it at
once, and again when it is delivered, so a member who switched language since gets the
notice in the new one. A parameter that is itself content (a tier's or a plan's name) is
passed through :func:`in_languages` and rendered in the same language as the text.

Delivery is at most once per row: a row is claimed (``sent_at`` set by a conditional
update) before it is sent, so two workers never send the same row. A send that raises
releases the claim and the row is tried again on the next run; a worker killed between
claim and send loses that one notice rather than sending it twice.
"""

import datetime as dt
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from django.conf import settings
from django.db import connection
from django.utils import timezone, translation
from django.utils.functional import Promise
from django.utils.module_loading import import_string

from core.db import prepared_cursor

from .models import Member, Notification

logger = logging.getLogger(__name__)


class Sender(Protocol):
    def send(self, notification: Notification) -> None:
        """Deliver one notification; raise to have it tried again later."""


class LogSender:
    """The default sender: writes each notification to the log (development, first runs)."""

    def send(self, notification: Notification) -> None:
        if notification.kind == Notification.Kind.ONE_TIME_CODE and settings.PRODUCTION:
            # A one-time code never goes to a production log.
            raise RuntimeError("LogSender does not send one-time codes in production")
        logger.info(
            "notification %s to member %s (%s): %s | %s",
            notification.pk,
            notification.member_id,
            notification.kind,
            notification.title,
            notification.body,
        )


def get_sender() -> Sender:
    """An instance of the class named by ``settings.LOYALTY_NOTIFICATION_SENDER``."""
    return import_string(settings.LOYALTY_NOTIFICATION_SENDER)()


@dataclass(frozen=True)
class Notice:
    """One notice to put in the outbox.

    ``title`` and ``body`` are the texts as written in the code: a ``gettext_lazy`` string
    (with ``%(name)s`` placeholders filled from ``params``), kept untranslated with its
    ``params`` and rendered in the member's language; or plain text such as a journey's
    message (``params`` None: taken as is, in every language). A ``params`` value may be a
    lazy string or :func:`in_languages` content: it is rendered in the member's language too.
    """

    member_id: int
    kind: str
    title: str
    dedupe_key: str
    body: str = ""
    params: dict | None = None
    data: dict = field(default_factory=dict)


# A notice parameter given in every language: {"i18n": {"en": "Gold", "zh-hans": "金卡"}}.
LANGUAGES_KEY = "i18n"


def in_languages(instance, field_name: str) -> dict:
    """``instance.<field_name>`` in every language of ``settings.LANGUAGES``, as a notice
    parameter: the member reads the one in their language. For content stored per
    language (``name`` of a tier, a plan, a reward; see loyalty/translation.py)."""
    texts = {}
    for code, _name in settings.LANGUAGES:
        with translation.override(code):
            texts[code] = str(getattr(instance, field_name) or "")
    return {LANGUAGES_KEY: texts}


def _source(text) -> str:
    """A lazy string's message id (its English source), a plain string as it is: called
    with translation deactivated (``translation.override(None)``)."""
    return str(text)


def _stored_params(params: dict) -> dict:
    """``params`` as JSON keeps them: numbers as numbers, lazy strings in every language."""
    stored = {}
    for key, value in params.items():
        if isinstance(value, Promise):
            value = {LANGUAGES_KEY: {code: _in(code, value) for code, _name in settings.LANGUAGES}}
        elif not (isinstance(value, int | float) or (isinstance(value, dict) and LANGUAGES_KEY in value)):
            value = str(value)
        stored[key] = value
    return stored


def _in(language: str, text) -> str:
    with translation.override(language):
        return str(text)


def _param_in(value, language: str):
    if isinstance(value, dict) and LANGUAGES_KEY in value:
        texts = value[LANGUAGES_KEY]
        return texts.get(language) or next((text for text in texts.values() if text), "")
    return value


def text_render(text: dict, language: str) -> tuple[str, str, dict]:
    """A stored notice text (``data["text"]``: ``title``, ``body`` message ids and
    ``params``) in ``language``: the title, the body, and the values for the channels'
    templates (``data["params"]``)."""
    with translation.override(language):
        return _render_active(text, language)


def _render_active(text: dict, language: str, cache: dict | None = None) -> tuple[str, str, dict]:
    """:func:`text_render` with ``language`` already active (a batch switches once and
    looks each message up once: ``cache``, message id -> translation)."""
    cache = {} if cache is None else cache

    def translated(message: str) -> str:
        if message not in cache:
            cache[message] = translation.gettext(message)
        return cache[message]

    params = {key: _param_in(value, language) for key, value in (text.get("params") or {}).items()}
    # Counts read grouped in the text (9,688 growth); the channels' templates get the numbers.
    shown = {key: f"{value:,}" if type(value) is int else value for key, value in params.items()}
    title = translated(text["title"]) % shown if text.get("title") else ""
    body = translated(text["body"]) % shown if text.get("body") else ""
    return title[:200], body, params


def notification_text(notification: Notification, language: str | None = None) -> tuple[str, str]:
    """A notification's title and body in ``language`` (default: the active one), for the
    pages and the API that show it; a plain-text notice (a journey's) as written."""
    text = (notification.data or {}).get("text")
    if not text:
        return notification.title, notification.body
    title, body, _params = text_render(text, language or translation.get_language() or settings.LANGUAGE_CODE)
    return title, body


# Marketing needs consent on at least one of these channels (PIPL article 24).
CONSENT_CHANNELS = ("sms", "email", "wechat")


def has_marketing_consent(member: dict) -> bool:
    """Whether a member's values (``sms_consent_at`` ...), already read, allow marketing."""
    return any(member[f"{channel}_consent_at"] is not None for channel in CONSENT_CHANNELS)


def member_language(member: Member) -> str:
    """The language a member's notices are written in: their own (``Member.language``,
    set by members.language when they sign in or switch), else the site's."""
    return member.language or settings.LANGUAGE_CODE


def _languages() -> list[str]:
    return [code for code, _name in settings.LANGUAGES]


INSERT_BATCH = 1000  # notices per INSERT: 4 + 3 per language parameters each (10), under every database's limit


def _rendered(notices: list[Notice], marketing: bool) -> list[list]:
    """Each notice's title, body and data in each language, in ``settings.LANGUAGES``
    order. The language is switched once per batch, not per notice: a job's thousands of
    notices render in a few milliseconds per language."""
    languages = _languages()
    datas, texts = [], []
    seen: dict[int, tuple[object, str]] = {}

    def sources(text) -> str:
        # A caller that builds one lazy text for the batch has it read once.
        if id(text) not in seen:
            seen[id(text)] = (text, _source(text))
        return seen[id(text)][1]

    with translation.override(None):  # the message ids, untranslated
        for notice in notices:
            data = dict(notice.data)
            if marketing:
                # A marketing notice is routed under the marketing rules (outreach.routing).
                data["marketing"] = True
            datas.append(data)
            if notice.params is None:
                texts.append(None)
            else:
                title, body = sources(notice.title), sources(notice.body)
                texts.append({"title": title, "body": body, "params": notice.params})
    for text in texts:
        if text is not None:
            text["params"] = _stored_params(text["params"])
    out: list[list] = [[] for _notice in notices]
    for code in languages:
        cache: dict[str, str] = {}
        with translation.override(code):
            for row, notice, data, text in zip(out, notices, datas, texts, strict=True):
                if text is None:
                    # Plain text (a journey's message, a test's "hi"): the same in every language.
                    row += [str(notice.title)[:200], str(notice.body), data]
                    continue
                title, body, params = _render_active(text, code, cache)
                # The channels' templates (SMS, WeChat) take the values, not the text.
                row += [title, body, {**data, "params": params, "text": text}]
    return out


def notices_enqueue(notices: Iterable[Notice], *, now: dt.datetime | None = None, marketing: bool = False) -> int:
    """Put ``notices`` in the outbox inside the caller's transaction; return how many were new.

    Skips, writing nothing for them: a notice whose ``dedupe_key`` is in the outbox
    already (a job run twice, two workers), a member erased or closed, and for a
    ``marketing`` notice a member without marketing consent on any channel. Texts are kept
    untranslated in ``data["text"]`` and rendered into each member's language
    (:func:`member_language`, picked in SQL from every language's rendering), titles and
    keys cut to 200 characters. One ``INSERT ... SELECT`` per :data:`INSERT_BATCH`
    notices: the member rules are its ``WHERE``, the dedupe key its ``ON CONFLICT DO NOTHING``.
    """
    now = now or timezone.now()
    data_field = Notification._meta.get_field("data")
    languages = _languages()
    notices = list(notices)
    # PostgreSQL: each batch as one JSON document (json_to_recordset), one parameter instead
    # of 10 a notice, which the driver spent more time passing than the server inserting.
    as_json = connection.vendor == "postgresql"
    rows = []
    for notice, texts in zip(notices, _rendered(notices, marketing), strict=True):
        if not as_json:
            texts[2::3] = [data_field.get_db_prep_save(data, connection) for data in texts[2::3]]
        rows.append(
            [notice.member_id, notice.kind, notice.dedupe_key[:200], now.isoformat() if as_json else now, *texts]
        )
    consent = ""
    if marketing:
        consent = " AND (" + " OR ".join(f"m.{channel}_consent_at IS NOT NULL" for channel in CONSENT_CHANNELS) + ")"
    # The columns are column1..columnN (VALUES' own names; the JSON record's on PostgreSQL):
    # 4 fixed, then title, body, data for each language; the member's language picks its three.
    language = "COALESCE(NULLIF(m.language, ''), %s)"

    def pick(offset: int) -> str:
        whens = " ".join(f"WHEN %s THEN v.column{5 + 3 * i + offset}" for i in range(len(languages)))
        default = 5 + 3 * languages.index(settings.LANGUAGE_CODE) + offset if settings.LANGUAGE_CODE in languages else 5
        return f"CASE {language} {whens} ELSE v.column{default} END"

    pick_params = ([settings.LANGUAGE_CODE, *languages]) * 3
    width = 4 + 3 * len(languages)
    new = 0
    # Each language's data as json (its text kept, not parsed): only the member's becomes jsonb.
    types = ["bigint", "text", "text", "timestamptz", *(["text", "text", "json"] * len(languages))]
    record = ", ".join(f"column{i} {kind}" for i, kind in enumerate(types, 1))
    for first in range(0, len(rows), INSERT_BATCH):
        batch = rows[first : first + INSERT_BATCH]
        if as_json:
            source = f"json_to_recordset(%s::json) AS v({record})"
            values = [json.dumps([{f"column{i}": value for i, value in enumerate(row, 1)} for row in batch])]
        else:
            placeholders = "(" + ", ".join(["%s"] * width) + ")"
            source = f"(VALUES {', '.join([placeholders] * len(batch))}) AS v"
            values = [value for row in batch for value in row]
        sql = (
            "INSERT INTO members_notification (member_id, kind, title, body, data, dedupe_key, created_at) "
            f"SELECT v.column1, v.column2, {pick(0)}, {pick(1)}, ({pick(2)}){'::jsonb' if as_json else ''}, "
            "v.column3, v.column4 "
            f"FROM {source} "
            "JOIN members_member m ON m.id = v.column1 "
            f"WHERE m.erased_at IS NULL AND m.status <> %s{consent} "
            "ON CONFLICT (dedupe_key) DO NOTHING RETURNING id"
        )
        # The JSON form's text is the same for every batch: prepared, and its one big
        # parameter sent as it is instead of quoted into the statement's text.
        with prepared_cursor() if as_json else connection.cursor() as cursor:
            cursor.execute(
                sql,
                pick_params + values + [Member.Status.CLOSED.value],
            )
            new += len(cursor.fetchall())
    return new


def notification_render_for_delivery(notification: Notification, language: str) -> Notification:
    """Render ``notification`` in ``language`` as it is delivered, saving the new texts
    when they differ from those written at enqueue (the member switched language since)."""
    text = (notification.data or {}).get("text")
    if not text:
        return notification
    title, body, params = text_render(text, language)
    if (title, body, params) != (notification.title, notification.body, notification.data.get("params")):
        notification.title, notification.body = title, body
        notification.data = {**notification.data, "params": params}
        Notification.objects.filter(pk=notification.pk).update(title=title, body=body, data=notification.data)
    return notification


def notify(
    *,
    member_id: int,
    kind: str,
    title: str,
    body: str = "",
    params: dict | None = None,
    data: dict | None = None,
    dedupe_key: str,
    now: dt.datetime | None = None,
) -> bool:
    """One notice through :func:`notices_enqueue`; False when nothing was written (the
    ``dedupe_key`` was used before, or the member is erased or closed)."""
    notice = Notice(
        member_id=member_id, kind=kind, title=title, body=body, params=params, data=data or {}, dedupe_key=dedupe_key
    )
    return notices_enqueue([notice], now=now) == 1


def notice_send_unsaved(*, kind: str, title: str, body: str, data: dict, now: dt.datetime | None = None) -> None:
    """Hand a message straight to the sender without writing it to the outbox: for what
    must never be stored (a one-time code) or has no member yet. Raises what the sender raises."""
    get_sender().send(
        Notification(kind=kind, title=title[:200], body=body, data=data, created_at=now or timezone.now())
    )


def notifications_send_pending(*, limit: int = 500, now: dt.datetime | None = None) -> dict[str, int]:
    """Send up to ``limit`` unsent notifications, oldest first; returns counts.

    Safe with several workers at once: each row is claimed with
    ``UPDATE ... SET sent_at = now WHERE id = x AND sent_at IS NULL`` and only the worker
    whose update changed the row sends it. Sending happens outside any transaction, so a
    slow gateway never holds a database lock.
    """
    now = now or timezone.now()
    sender = get_sender()
    counts = {"sent": 0, "failed": 0, "taken_by_others": 0}
    candidates = list(
        Notification.objects.filter(sent_at__isnull=True)
        .order_by("created_at", "id")
        .values_list("pk", flat=True)[:limit]
    )
    for pk in candidates:
        if Notification.objects.filter(pk=pk, sent_at__isnull=True).update(sent_at=now) != 1:
            counts["taken_by_others"] += 1
            continue
        notification = Notification.objects.select_related("member").get(pk=pk)
        try:
            sender.send(notification_render_for_delivery(notification, member_language(notification.member)))
        except Exception:
            # Give the row back so the next run tries again.
            Notification.objects.filter(pk=pk, sent_at=now).update(sent_at=None)
            logger.exception("sending notification %s failed; it will be tried again", pk)
            counts["failed"] += 1
        else:
            counts["sent"] += 1
    # A sender that keeps its own retries (outreach's deliveries) sends those due now.
    send_due = getattr(sender, "send_due", None)
    if send_due is not None:
        counts["retried"] = send_due(now=now)["attempted"]
    return counts


def notification_mark_read(*, notification: Notification, now: dt.datetime | None = None) -> Notification:
    """Mark a notification read by its member. Only the first read counts: a second call
    keeps the first time and writes nothing."""
    Notification.objects.filter(pk=notification.pk, read_at__isnull=True).update(read_at=now or timezone.now())
    notification.refresh_from_db(fields=["read_at"])
    return notification
