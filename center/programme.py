"""Member center pages of the programme: the paid membership (/me/plus/: the plans, my
membership and its orders; buy, start a trial, pay a test order, turn auto-renew on or
off, cancel), points transfers (/me/transfers/: give points, accept, decline or take
back a transfer waiting), badges, contribution and partners (/me/partners/: partner
vouchers to buy with points, my vouchers, my partner benefits). Thin like the other
pages: each POST calls one service."""

import uuid

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from core.errors import LoyaltyError
from programme import badges, contribution, partners, selectors, services, transfers
from programme.models import PartnerOffer, Plan, PlanOrder, Transfer

from . import auth


def _back() -> HttpResponse:
    return redirect("center:plus")


def _flag(request: HttpRequest, name: str) -> bool:
    return request.POST.get(name) in ("1", "on", "true")


@auth.member_required
def plus(request: HttpRequest) -> HttpResponse:
    member, now = request.member, timezone.now()
    membership = selectors.membership_for(member)
    orders = selectors.orders_for(member, limit=10)
    pending = next((o for o in orders if o.status == PlanOrder.Status.PENDING and o.adapter == "fake"), None)
    return render(
        request,
        "center/programme/plus.html",
        {
            "plans": selectors.plans_on_sale(),
            "membership": membership,
            "active": membership is not None and membership.is_active_at(now),
            "orders": orders,
            "pending": pending,
            "never_member": membership is None and not orders,
            "nav": "plus",
        },
    )


def _run(request: HttpRequest, action, success: str) -> HttpResponse:
    try:
        action()
    except LoyaltyError as error:
        messages.error(request, str(error.message))
    else:
        messages.success(request, success)
    return _back()


@auth.member_required
@require_POST
def plus_buy(request: HttpRequest) -> HttpResponse:
    plan = get_object_or_404(Plan, code=request.POST.get("plan", ""))
    return _run(
        request,
        lambda: services.plan_purchase_start(
            member=request.member, plan=plan, auto_renew=_flag(request, "auto_renew"), consent=_flag(request, "consent")
        ),
        _("Your order is open. Pay it to start your membership."),
    )


@auth.member_required
@require_POST
def plus_trial(request: HttpRequest) -> HttpResponse:
    plan = get_object_or_404(Plan, code=request.POST.get("plan", ""))
    return _run(
        request,
        lambda: services.trial_start(member=request.member, plan=plan, consent=_flag(request, "consent")),
        _("Your free trial has started."),
    )


@auth.member_required
@require_POST
def plus_pay(request: HttpRequest, number: str) -> HttpResponse:
    order = get_object_or_404(PlanOrder, number=number, member=request.member)
    return _run(
        request,
        lambda: services.fake_payment_complete(order=order, member=request.member),
        _("Paid. Welcome!"),
    )


@auth.member_required
@require_POST
def plus_auto_renew(request: HttpRequest) -> HttpResponse:
    on = _flag(request, "on")
    return _run(
        request,
        lambda: services.membership_auto_renew_set(member=request.member, on=on, consent=_flag(request, "consent")),
        _("Automatic renewal is on.") if on else _("Automatic renewal is off."),
    )


@auth.member_required
@require_POST
def plus_cancel(request: HttpRequest) -> HttpResponse:
    return _run(
        request,
        lambda: services.membership_cancel(member=request.member),
        _("Cancelled: your benefits last until the end of the period."),
    )


# --- points transfers ---------------------------------------------------------------------------


@auth.member_required
def transfers_page(request: HttpRequest) -> HttpResponse:
    member = request.member
    return render(
        request,
        "center/programme/transfers.html",
        {"transfers": selectors.transfers_for(member), "member": member, "nav": "transfers"},
    )


@auth.member_required
@require_POST
def transfer_give(request: HttpRequest) -> HttpResponse:
    raw = request.POST.get("points", "")
    points = int(raw) if raw.strip().isdigit() else raw

    def give():
        transfers.transfer_create(
            giver=request.member, to=request.POST.get("to", ""), points=points, message=request.POST.get("message", "")
        )

    return _run_to(request, give, _("Points sent."), "center:transfers")


def _run_to(request: HttpRequest, action, success: str, target: str) -> HttpResponse:
    try:
        action()
    except LoyaltyError as error:
        messages.error(request, str(error.message))
    else:
        messages.success(request, success)
    return redirect(target)


def _transfer_post(service, success: str):
    @auth.member_required
    @require_POST
    def view(request: HttpRequest, transfer_id: int) -> HttpResponse:
        transfer = get_object_or_404(Transfer, pk=transfer_id)
        if request.member.pk not in (transfer.giver_id, transfer.receiver_id):
            raise Http404
        return _run_to(request, lambda: service(transfer=transfer, member=request.member), success, "center:transfers")

    return view


transfer_accept = _transfer_post(transfers.transfer_accept, gettext_lazy("Points received."))
transfer_decline = _transfer_post(transfers.transfer_decline, gettext_lazy("Declined: the points went back."))
transfer_cancel = _transfer_post(transfers.transfer_cancel, gettext_lazy("Taken back."))


# --- badges ----------------------------------------------------------------------------------------


@auth.member_required
def badges_page(request: HttpRequest) -> HttpResponse:
    progress = badges.badges_progress(request.member)
    held = [p for p in progress if p.percent == 100 and p.held is not None]
    return render(
        request,
        "center/programme/badges.html",
        {"held": held, "next": [p for p in progress if p not in held], "nav": "badges"},
    )


# --- dual membership -------------------------------------------------------------------------------


@auth.member_required
def contribution_page(request: HttpRequest) -> HttpResponse:
    member = request.member
    return render(
        request,
        "center/programme/contribution.html",
        {
            "standing": contribution.standing(member),
            "history": member.contributions.order_by("-created_at", "-id")[:20],
            "nav": "contribution",
        },
    )


# --- partners --------------------------------------------------------------------------------------


@auth.member_required
def partners_page(request: HttpRequest) -> HttpResponse:
    member = request.member
    return render(
        request,
        "center/programme/partners.html",
        {
            "offers": partners.offers_available(),
            "vouchers": partners.member_vouchers(member),
            "benefits": partners.partner_benefits_for(member),
            "key": uuid.uuid4().hex,
            "now": timezone.now(),
            "nav": "partners",
        },
    )


@auth.member_required
@require_POST
def partner_redeem(request: HttpRequest, offer_id: int) -> HttpResponse:
    offer = get_object_or_404(PartnerOffer, pk=offer_id)

    def redeem():
        partners.partner_voucher_redeem(member=request.member, offer=offer, idempotency_key=request.POST.get("key", ""))

    return _run_to(request, redeem, _("Done: your voucher is below."), "center:partners")
