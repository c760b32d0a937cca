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

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from core.errors import LoyaltyError
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


def _back(query: str = ""):
    url = reverse("loyalty_till")
    return redirect(f"{url}?{urlencode({'q': query})}" if query else url)


def _chosen(stores: list[Store], raw) -> Store | None:
    """The store with id ``raw`` among the user's ``stores``; None for anything else."""
    return next((store for store in stores if str(store.pk) == str(raw or "")), None)


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
            text += " " + _(
                "%(points)s points had already been spent: they are owed and paid from what the member earns next."
            ) % {"points": f"{refund.points_shortfall:,}"}
    return f"{text} {_balance_text(refund.order.member)}"


def _order_message(result) -> str:
    order = result.order
    points = result.entries.get(Currency.POINTS)
    earned = (points.amount + points.pending_amount) if points else 0
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
    return f"{text} {_balance_text(order.member)}"


def _verify_message(result) -> str:
    coupon = result.coupon
    values = {"title": coupon.title, "code": coupon.code}
    if result.replayed:
        return _("Coupon “%(title)s” (%(code)s) was already verified by this form (sent twice); nothing changed.") % (
            values
        )
    return _("Coupon “%(title)s” (%(code)s) verified: it is used now. Give the customer what it offers.") % values


def till_view(request):
    """GET: the screen and a lookup (``?q=``); POST: record an order, verify a coupon or pick a store."""
    user = request.user
    if not user.has_perm(PERMISSION):
        raise PermissionDenied
    stores = list(till_stores(user))
    store = _chosen(stores, request.session.get(SESSION_STORE)) or (stores[0] if stores else None)
    query = (request.GET.get("q") or "").strip()
    form = {}

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
                return _back(result.order.member.member_number)
            if action == "verify":
                result = till_coupon_verify(
                    actor=user,
                    code=request.POST.get("code") or "",
                    store=store_posted,
                    submission=request.POST.get("submission") or "",
                )
                messages.success(request, f"{_verify_message(result)} {_balance_text(result.coupon.member)}")
                return _back(query or result.coupon.code)
            if action == "refund":
                result = till_order_refund(
                    actor=user,
                    store=store_posted,
                    order_number=request.POST.get("order_number") or "",
                    amount=request.POST.get("refund_amount") or "",
                    submission=request.POST.get("submission") or "",
                )
                messages.success(request, _refund_message(result))
                return _back(query or result.refund.order.member.member_number)
            messages.error(request, _("Unknown till action."))
        except LoyaltyError as error:
            messages.error(request, error.message)

    card = None
    if query:
        try:
            card = till_lookup(query=query)
        except LoyaltyError as error:
            messages.error(request, error.message)
    context = {
        **admin.site.each_context(request),
        "title": _("Till"),
        "query": query,
        "card": card,
        "orders": till_recent_orders(card.member, store) if card else [],
        "can_refund": user.has_perm("api.pos_refund"),
        "stores": stores,
        "store": store,
        "form": form,
        # One token per rendered form: the same form sent twice verifies once.
        "submission": uuid.uuid4().hex,
        "now": timezone.now(),
    }
    return TemplateResponse(request, "admin/loyalty/till.html", context)
