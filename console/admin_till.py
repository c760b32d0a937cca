"""The till screen in the admin (``/admin/till/``, docs/till.md): look up, record an order,
verify a coupon. Thin: the reads and actions are in ``console.till``.

GET ``?q=`` looks up what was typed or scanned; POST records an order or verifies a coupon
and redirects back to the member's card (so a reload does not send it again), with the
result and the new balance in a message. A refusal shows its message on the same page and
changes nothing.
"""

import datetime as dt
import uuid
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from core.errors import LoyaltyError
from loyalty.checkout import point_value
from loyalty.models import Currency
from loyalty.selectors import member_balances
from members.models import Store

from .till import (
    till_coupon_verify,
    till_lookup,
    till_order_record,
    till_order_refund,
    till_recent_orders,
    till_stores,
)

PERMISSION = "loyalty.use_till"
SESSION_STORE = "loyalty_till_store"


def _back(query: str = "", *, done: str = ""):
    """Back to the card of ``query``; ``done`` (the action just made) puts the focus in the
    lookup box, ready for the next customer's scan."""
    url = reverse("loyalty_till")
    params = {key: value for key, value in (("q", query), ("done", done)) if value}
    return redirect(f"{url}?{urlencode(params)}" if params else url)


# Where the focus goes after a refusal: the field the refusal is about.
ORDER_FIELD_OF = {
    "points_over_limit": "till-points-pay",
    "points_too_few": "till-points-pay",
    "insufficient_balance": "till-points-pay",
    "invalid_amount": "till-amount",
    "invalid_money": "till-amount",
}


def _chosen(stores: list[Store], raw) -> Store | None:
    """The store with id ``raw`` among the user's ``stores``; None for anything else."""
    return next((store for store in stores if str(store.pk) == str(raw or "")), None)


def _sentences(*parts: str) -> str:
    """Sentences one after the other: a space after an English one, none after a Chinese
    one (。！？；), so the Chinese till shows no stray spaces between sentences."""
    text = ""
    for part in filter(None, parts):
        text += part if not text or text.endswith(("。", "！", "？", "；", "）")) else " " + part
    return text


def _balance_text(member) -> str:
    balances = member_balances(member)
    points, growth = balances[Currency.POINTS], balances[Currency.GROWTH]
    return _("New balance: %(balance)s points available, %(pending)s pending; growth %(growth)s.") % {
        "balance": f"{points.balance:,}",
        "pending": f"{points.pending:,}",
        "growth": f"{growth.balance + growth.pending:,}",
    }


def _refund_message(result) -> str:
    refund = result.refund
    values = {"number": refund.order.number, "amount": f"¥{refund.amount:,.2f}"}
    if result.replayed:
        text = _("This refund of order %(number)s was already made (sent twice); nothing changed.") % values
    else:
        text = (
            _("Refunded %(amount)s of order %(number)s; its points and growth were taken back in proportion.") % values
        )
        if refund.points_shortfall:
            text = _sentences(
                text,
                _("%(points)s points had already been spent: they are owed and paid from what the member earns next.")
                % {"points": f"{refund.points_shortfall:,}"},
            )
    return _sentences(text, _balance_text(refund.order.member))


def _order_message(result) -> str:
    order = result.order
    points = result.entries.get(Currency.POINTS)
    earned = (points.amount + points.pending_amount) if points else 0
    paid = ""
    if order.points_paid_amount and not result.replayed:
        paid = _("%(value)s of it was paid with points.") % {"value": f"¥{order.points_paid_amount:,.2f}"}
    if result.replayed:
        text = _("Order %(number)s was already recorded at %(store)s (sent twice); nothing changed.") % {
            "number": order.number,
            "store": order.store.name,
        }
    elif points is not None and points.pending_amount:
        available = dt.datetime.fromisoformat(points.detail["available_at"])
        text = _("Order %(number)s recorded at %(store)s: %(points)s points earned, pending until %(date)s.") % {
            "number": order.number,
            "store": order.store.name,
            "points": f"{earned:,}",
            "date": timezone.localdate(available).isoformat(),
        }
    else:
        text = _("Order %(number)s recorded at %(store)s: %(points)s points earned.") % {
            "number": order.number,
            "store": order.store.name,
            "points": f"{earned:,}",
        }
    return _sentences(text, paid, _balance_text(order.member))


def _verify_message(result) -> str:
    coupon = result.coupon
    values = {"title": coupon.title, "code": coupon.code}
    if result.replayed:
        return _("Coupon “%(title)s” (%(code)s) was already verified by this form (sent twice); nothing changed.") % (
            values
        )
    return _("Coupon “%(title)s” (%(code)s) verified: it is used now. Give the customer what it offers.") % values


def _focus(card, failed, form, *, done: str, store) -> str:
    """The id of the field the keyboard lands in: the one a refusal is about, the lookup
    box after an action (the next customer) or without a member, else the order number
    (or the scanned coupon's Verify button). ``refund:<number>``: that order's refund amount.
    The page's script falls back to the order number, then the lookup box, when the field
    is not on the page."""
    if failed:
        action, code = failed
        if action == "order":
            return ORDER_FIELD_OF.get(code, "till-number")
        if action == "refund":
            return "refund:" + (form.get("refund_order") or "")
        return "till-q"
    if done or card is None or store is None or not card.is_active:
        return "till-q"
    coupon = card.coupon
    if coupon is not None and coupon.status == coupon.Status.ISSUED:
        return "till-verify-found"
    return "till-number"


def till_view(request):
    """GET: the screen and a lookup (``?q=``); POST: record an order, verify a coupon or pick a store."""
    user = request.user
    if not user.has_perm(PERMISSION):
        raise PermissionDenied
    stores = list(till_stores(user))
    store = _chosen(stores, request.session.get(SESSION_STORE)) or (stores[0] if stores else None)
    query = (request.GET.get("q") or "").strip()
    form = {}
    failed = None

    if request.method == "POST":
        action = request.POST.get("action")
        query = (request.POST.get("q") or "").strip()
        if action == "store":
            picked = _chosen(stores, request.POST.get("store"))
            if picked is None:
                messages.error(request, _("Choose one of your stores."))
            else:
                request.session[SESSION_STORE] = picked.pk
            return _back(query)
        store_posted = _chosen(stores, request.POST.get("store"))
        try:
            if action == "order":
                form = {
                    "number": (request.POST.get("number") or "").strip(),
                    "amount": (request.POST.get("amount") or "").strip(),
                    "points": (request.POST.get("points") or "").strip(),
                }
                result = till_order_record(
                    actor=user,
                    member_number=request.POST.get("member_number") or "",
                    store=store_posted,
                    number=form["number"],
                    amount=form["amount"],
                    points=form["points"],
                )
                messages.success(request, _order_message(result))
                return _back(result.order.member.member_number, done="order")
            if action == "verify":
                result = till_coupon_verify(
                    actor=user,
                    code=request.POST.get("code") or "",
                    store=store_posted,
                    submission=request.POST.get("submission") or "",
                )
                messages.success(request, _sentences(_verify_message(result), _balance_text(result.coupon.member)))
                return _back(query or result.coupon.code, done="verify")
            if action == "refund":
                form = {
                    "refund_order": (request.POST.get("order_number") or "").strip(),
                    "refund_amount": (request.POST.get("refund_amount") or "").strip(),
                }
                result = till_order_refund(
                    actor=user,
                    store=store_posted,
                    order_number=form["refund_order"],
                    amount=form["refund_amount"],
                    submission=request.POST.get("submission") or "",
                )
                messages.success(request, _refund_message(result))
                return _back(query or result.refund.order.member.member_number, done="refund")
            messages.error(request, _("Unknown till action."))
        except LoyaltyError as error:
            messages.error(request, error.message)
            failed = (action, error.code)

    card = None
    if query:
        try:
            card = till_lookup(query=query)
        except LoyaltyError as error:
            messages.error(request, error.message)
    orders = till_recent_orders(card.member, store) if card else []
    context = {
        **admin.site.each_context(request),
        "title": _("Till"),
        "query": query,
        "card": card,
        "orders": orders,
        "focus": _focus(card, failed, form, done=request.GET.get("done") or "", store=store),
        "point_value": str(point_value()),
        "max_share": str(settings.LOYALTY_MAX_DEDUCTION_SHARE),
        "can_refund": user.has_perm("api.pos_refund"),
        "stores": stores,
        "store": store,
        "form": form,
        # One token per rendered form: the same form sent twice verifies once.
        "submission": uuid.uuid4().hex,
        "now": timezone.now(),
    }
    return TemplateResponse(request, "admin/loyalty/till.html", context)
