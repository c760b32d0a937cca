"""Member center pages. Thin: a form checks the input, one service or selector does the work.

Refusals from services (``LoyaltyError``) become a message that says what to do next
(``_error_message``); another member's ids give 404 because every lookup starts from
``request.member``.
"""

import datetime as dt
import json
import uuid

import phonenumbers
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate, update_session_auth_hash
from django.contrib.auth.forms import PasswordChangeForm, SetPasswordForm
from django.contrib.auth.hashers import make_password
from django.core.paginator import Paginator
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from core.errors import LoyaltyError
from engagement.checkin import check_in_status, member_check_in
from engagement.referrals import referral_on_join, referral_share_text, referral_summary
from loyalty import selectors as loyalty_selectors
from loyalty.models import Currency
from loyalty.tiers import tier_progress
from members.models import Member, Notification
from members.otp import OTP_RESEND_SECONDS
from members.services import member_set_consent
from programme import partners
from rewards import selectors as rewards_selectors
from rewards.models import Coupon, RewardCategory

from . import auth, codes
from .forms import (
    CodeForm,
    EraseForm,
    HistoryFilterForm,
    PasswordSignInForm,
    PhoneForm,
    ProfileForm,
    RedeemForm,
    RewardsFilterForm,
    erase_word,
)
from .history import history_page

PAGE_SIZE = 20
SOON_DAYS = 30
SESSION_PHONE = "center_sign_in_phone"
SESSION_NEXT = "center_sign_in_next"
SESSION_REFERRAL = "center_sign_in_referral"
# When the last code was sent (epoch seconds): the code page counts down to the next resend.
SESSION_SENT_AT = "center_sign_in_sent_at"


def _next_steps() -> dict[str, str]:
    return {
        "insufficient_balance": _("Points from recent orders become available when the return window ends."),
        "out_of_stock": _("Choose another reward, or check back later."),
        "limit_reached": _("Choose another reward."),
        "tier_too_low": _("Earn growth with every order to reach the tier this reward needs."),
        "reward_unavailable": _("Choose another reward."),
        "member_inactive": _("Please contact our staff in any store."),
        "member_closed": _("Please contact our staff in any store."),
        "otp_invalid": _("Check the code in the text message and try again."),
        "already_checked_in": _("Your next check-in opens at midnight."),
    }


def _error_message(error: LoyaltyError) -> str:
    """The refusal and, when it does not say so already, what to do next (never twice)."""
    message = str(error.message)
    hint = _next_steps().get(error.code)
    if not hint or hint in message:
        return message
    # Chinese sentences run on without a space; English ones take one.
    return f"{message}{hint}" if message.endswith(("。", "！", "？")) else f"{message} {hint}"


def _safe_next(request: HttpRequest, target: str | None) -> str:
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("center:home")


def _today(now: dt.datetime) -> dt.date:
    return timezone.localtime(now).date()


# --- sign-in --------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def sign_in(request: HttpRequest) -> HttpResponse:
    """Step 1 of the code sign-in: the phone number; sends the one-time code."""
    from members.otp import otp_send

    if auth.current_member(request) is not None:
        return redirect(_safe_next(request, request.GET.get("next")))
    if request.method == "GET" and request.GET.get("next"):
        request.session[SESSION_NEXT] = request.GET["next"]
    if request.method == "GET" and request.GET.get("ref"):
        # A friend's share link (/me/sign-in/?ref=CODE) fills the code in.
        request.session[SESSION_REFERRAL] = request.GET["ref"][:20]
    initial = {
        "phone": request.session.get(SESSION_PHONE, ""),
        "referral_code": request.session.get(SESSION_REFERRAL, ""),
    }
    form = PhoneForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        phone = form.cleaned_data["phone"]
        if form.cleaned_data["referral_code"]:
            # Kept for step 2; "send a new code" posts the phone only and keeps it.
            request.session[SESSION_REFERRAL] = form.cleaned_data["referral_code"]
        try:
            otp_send(phone=phone, purpose="sign_in")
        except LoyaltyError as error:
            messages.error(request, _error_message(error))
            if request.POST.get("resend") and request.session.get(SESSION_PHONE) == phone:
                # A refused resend stays on the code page, with its countdown.
                return redirect("center:sign_in_code")
        else:
            request.session[SESSION_PHONE] = phone
            request.session[SESSION_SENT_AT] = int(timezone.now().timestamp())
            return redirect("center:sign_in_code")
    return render(
        request,
        "center/sign_in.html",
        {"form": form, "password_form": PasswordSignInForm(), "staff_without_member": _staff_without_member(request)},
    )


def _staff_without_member(request: HttpRequest) -> bool:
    return request.user.is_authenticated


def _finish_sign_in(request: HttpRequest, member: Member) -> HttpResponse:
    target = _safe_next(request, request.session.get(SESSION_NEXT))
    auth.sign_in(request, member)
    request.session.pop(SESSION_PHONE, None)
    request.session.pop(SESSION_NEXT, None)
    request.session.pop(SESSION_REFERRAL, None)
    request.session.pop(SESSION_SENT_AT, None)
    return redirect(target)


def _report_referral(request: HttpRequest, outcome) -> None:
    """Say what became of the referral code the member signed in with (never an error page)."""
    if outcome is None:
        return
    if outcome.status == "recorded":
        messages.success(request, outcome.message)
    else:
        messages.info(request, _("The referral code was not applied: %(reason)s") % {"reason": outcome.message})


@require_http_methods(["GET", "POST"])
def sign_in_code(request: HttpRequest) -> HttpResponse:
    """Step 2: the code from the text message; signs the member in (creating them if new)."""
    from members.otp import otp_verify
    from operations.actions import member_sign_in_or_join

    phone = request.session.get(SESSION_PHONE)
    if not phone:
        return redirect("center:sign_in")
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        now = timezone.now()
        try:
            verified = otp_verify(phone=phone, code=form.cleaned_data["code"], purpose="sign_in")
            member, created = member_sign_in_or_join(phone=verified, now=now)
        except LoyaltyError as error:
            form.add_error("code", _error_message(error))
        else:
            code = request.session.get(SESSION_REFERRAL)
            _report_referral(request, referral_on_join(member=member, code=code, created=created, now=now))
            return _finish_sign_in(request, member)
    sent_at = request.session.get(SESSION_SENT_AT) or 0
    wait = max(0, OTP_RESEND_SECONDS - (int(timezone.now().timestamp()) - int(sent_at))) if sent_at else 0
    context = {"form": form, "phone": phone, "phone_display": _phone_display(phone), "resend_wait": wait}
    return render(request, "center/sign_in_code.html", context)


def _phone_display(phone: str) -> str:
    """+8613800138000 as people read it: +86 138 0013 8000."""
    try:
        return phonenumbers.format_number(phonenumbers.parse(phone), phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    except phonenumbers.NumberParseException:
        return phone


@require_http_methods(["GET", "POST"])
def sign_in_password(request: HttpRequest) -> HttpResponse:
    """Phone and password, for members who set a password; rate limited per phone and client."""
    form = PasswordSignInForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        phone, password = form.cleaned_data["phone"], form.cleaned_data["password"]
        if auth.password_attempts_exhausted(request, phone):
            form.add_error(
                None,
                _("Too many attempts. Try again in 15 minutes, or sign in with a code sent to your phone."),
            )
        else:
            member = Member.objects.select_related("user").filter(phone=phone).first()
            user = None
            if member is not None and member.user is not None and member.user.has_usable_password():
                user = authenticate(request, username=member.user.get_username(), password=password)
            else:
                make_password(password)  # the same work as a real check, so timing tells nothing
            if user is None or member.status == Member.Status.CLOSED:
                auth.password_failure_record(request, phone)
                form.add_error(
                    None,
                    _(
                        "That phone number and password do not match. "
                        "If you have not set a password, sign in with a code."
                    ),
                )
            else:
                auth.password_failures_clear(request, phone)
                return _finish_sign_in(request, member)
    return render(
        request,
        "center/sign_in.html",
        {"form": PhoneForm(), "password_form": form, "method": "password"},
    )


@require_POST
def sign_out(request: HttpRequest) -> HttpResponse:
    auth.sign_out(request)
    messages.success(request, _("You have signed out."))
    return redirect("center:sign_in")


# --- home -----------------------------------------------------------------------------


@auth.member_required
def home(request: HttpRequest) -> HttpResponse:
    member = request.member
    now = timezone.now()
    today = _today(now)
    progress = tier_progress(member, now=now)
    balances = loyalty_selectors.member_balances(member, now=now, soon_days=SOON_DAYS)
    soon = today + dt.timedelta(days=SOON_DAYS)
    expiring = [
        bucket
        for bucket in loyalty_selectors.expiry_calendar(member, currency=Currency.POINTS, now=now, months=2)
        if bucket.date <= soon
    ]
    pending = loyalty_selectors.pending_releases(member, now=now)
    notifications = list(Notification.objects.filter(member=member).order_by("-created_at", "-id")[:5])
    return render(
        request,
        "center/home.html",
        {
            "checkin": check_in_status(member, now),
            "progress": progress,
            "progress_percent": _progress_percent(progress),
            "points": balances.get(Currency.POINTS),
            "growth": balances.get(Currency.GROWTH),
            "expiring": expiring,
            "pending": pending,
            "notifications": notifications,
            "soon_days": SOON_DAYS,
            "nav": "home",
        },
    )


@auth.member_required
@require_POST
def check_in(request: HttpRequest) -> HttpResponse:
    """Today's check-in from the home page card; the card then shows the points and streak."""
    try:
        done = member_check_in(member=request.member)
    except LoyaltyError as error:
        messages.error(request, _error_message(error))
    else:
        messages.success(
            request,
            _("Checked in: +%(points)s points. Day %(streak)s of your streak.")
            % {"points": done.points, "streak": done.streak},
        )
    return redirect(f"{reverse('center:home')}#check-in")


def _progress_percent(progress) -> int:
    """How far the member is from their tier's threshold to the next one, 0 to 100."""
    if progress.next_tier is None:
        return 100
    start = progress.tier.qualify_threshold if progress.tier else 0
    span = progress.next_tier.qualify_threshold - start
    if span <= 0:
        return 100
    return max(0, min(100, int((progress.growth - start) * 100 / span)))


# --- member card code ------------------------------------------------------------------


def _card_code(member: Member) -> dict:
    from members.member_code import STEP_SECONDS, member_code_issue

    made = member_code_issue(member)
    label = _("Member code %(code)s") % {"code": made.code}
    return {
        "code": made.code,
        "grouped": " ".join(made.code[i : i + 4] for i in range(0, len(made.code), 4)),
        "qr": codes.qr_svg(made.code, label=label),
        "barcode": codes.barcode_svg(made.code, label=label),
        "expires_at": made.expires_at,
        # The next code is due when the next step starts (plus a second for clock jitter).
        "refresh_in": STEP_SECONDS - int(timezone.now().timestamp()) % STEP_SECONDS + 1,
    }


@never_cache
@auth.member_required
def card(request: HttpRequest) -> HttpResponse:
    """The member code to show at the till: QR, barcode and digits, renewed by the page."""
    from members.member_code import VALID_SECONDS

    context = {"card": _card_code(request.member), "valid_minutes": VALID_SECONDS // 60, "nav": "home"}
    return render(request, "center/card.html", context)


@never_cache
@auth.member_required
def card_code(request: HttpRequest) -> JsonResponse:
    """A fresh member code for the card page's script (never cached)."""
    made = _card_code(request.member)
    response = JsonResponse(
        {
            "code": made["code"],
            "grouped": made["grouped"],
            "qr": str(made["qr"]),
            "barcode": str(made["barcode"]),
            "expires_at": made["expires_at"].isoformat(),
            "refresh_in": made["refresh_in"],
        }
    )
    return response


# --- history --------------------------------------------------------------------------


@auth.member_required
def history(request: HttpRequest) -> HttpResponse:
    form = HistoryFilterForm(request.GET or None)
    filters = {}
    if form.is_bound and form.is_valid():
        filters = {key: value for key, value in form.cleaned_data.items() if value}
    page = history_page(request.member, **filters, page=request.GET.get("page"), size=PAGE_SIZE)
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "center/history.html",
        {"form": form, "page": page, "query": query.urlencode(), "nav": "history"},
    )


# --- rewards --------------------------------------------------------------------------


@auth.member_required
def rewards(request: HttpRequest) -> HttpResponse:
    """The mall: the brand's rewards and the partners' vouchers in one list (partners' marked)."""
    member = request.member
    now = timezone.now()
    brand = rewards_selectors.reward_offers(member=member, now=now)
    partner = partners.partner_mall_offers(member)
    catalogue = [*brand, *partner]
    balances = loyalty_selectors.member_balances(member, now=now, soon_days=SOON_DAYS)
    points = balances.get(Currency.POINTS)
    balance = points.balance if points else 0
    form = RewardsFilterForm(request.GET or None)
    chosen = form.cleaned_data if form.is_bound and form.is_valid() else {}
    offers = catalogue
    if chosen.get("category") == RewardsFilterForm.PARTNER:
        offers = list(partner)
    elif chosen.get("category"):
        offers = [offer for offer in brand if offer.reward.category == chosen["category"]]
    if chosen.get("afford"):
        offers = [offer for offer in offers if offer.points_cost <= balance]
    if chosen.get("sort"):
        # Stable: rewards of one cost keep the mall's order.
        offers = sorted(offers, key=lambda offer: offer.points_cost, reverse=chosen["sort"] == "-cost")
    present = {offer.reward.category for offer in brand if offer.reward.category}
    shelves = [(value, label) for value, label in RewardCategory.choices if value in present]
    if partner:
        shelves.append((RewardsFilterForm.PARTNER, _("Partner rewards")))
    query = request.GET.copy()
    query.pop("category", None)
    cheapest = min((offer.points_cost for offer in catalogue), default=None)
    return render(
        request,
        "center/rewards.html",
        {
            "offers": offers,
            "catalogue_size": len(catalogue),
            "points": points,
            "form": form,
            "chosen": chosen,
            "shelves": shelves,
            "shelf_query": query.urlencode(),
            "cheapest": cheapest,
            "key": uuid.uuid4().hex,
            "nav": "rewards",
        },
    )


def _offer_for(member: Member, reward_id: int, now: dt.datetime):
    for offer in rewards_selectors.reward_offers(member=member, now=now):
        if offer.reward.pk == reward_id:
            return offer
    raise Http404


@auth.member_required
@require_http_methods(["GET", "POST"])
def redeem(request: HttpRequest, reward_id: int) -> HttpResponse:
    """GET: the confirmation step, carrying a fresh idempotency key. POST: redeem once."""
    from rewards.services import reward_redeem

    member = request.member
    now = timezone.now()
    offer = _offer_for(member, reward_id, now)
    if request.method == "POST":
        form = RedeemForm(request.POST)
        if form.is_valid():
            try:
                redemption = reward_redeem(
                    member=member,
                    reward=offer.reward,
                    idempotency_key=f"web:{form.cleaned_data['idempotency_key']}",
                    now=now,
                )
            except LoyaltyError as error:
                messages.error(request, _error_message(error))
                return redirect("center:rewards")
            if not getattr(redemption, "replayed", False):
                messages.success(request, _("Redeemed. Your coupon is ready."))
            return redirect("center:redemption", redemption_id=redemption.pk)
        messages.error(request, _("That confirmation has expired; please confirm again."))

    balances = loyalty_selectors.member_balances(member, now=now, soon_days=SOON_DAYS)
    points = balances.get(Currency.POINTS)
    return render(
        request,
        "center/redeem_confirm.html",
        {
            "offer": offer,
            "form": RedeemForm(initial={"idempotency_key": uuid.uuid4()}),
            "points": points,
            "balance_after": (points.balance if points else 0) - offer.reward.points_cost,
            "nav": "rewards",
        },
    )


@auth.member_required
def redemption(request: HttpRequest, redemption_id: int) -> HttpResponse:
    found = get_object_or_404(rewards_selectors.redemptions_for_member(member=request.member), pk=redemption_id)
    context = {"redemption": found, "coupon": found.coupon, "usable": _usable(found.coupon), "nav": "rewards"}
    return render(request, "center/redemption.html", context)


def _usable(coupon: Coupon | None) -> bool:
    return coupon is not None and coupon.status == Coupon.Status.ISSUED and coupon.expires_at > timezone.now()


# --- coupons --------------------------------------------------------------------------

COUPON_TABS = ("active", "used", "expired")


def _coupons_in_tab(member: Member, tab: str, now: dt.datetime):
    coupons = rewards_selectors.coupons_for_member(member=member, status=None)
    if tab == "active":
        return coupons.filter(status=Coupon.Status.ISSUED, expires_at__gt=now)
    if tab == "used":
        return coupons.filter(status=Coupon.Status.USED).order_by("-used_at", "-id")
    # An issued coupon past its date is expired even before the nightly job marks it.

    return coupons.filter(
        Q(status__in=[Coupon.Status.EXPIRED, Coupon.Status.VOID]) | Q(status=Coupon.Status.ISSUED, expires_at__lte=now)
    ).order_by("-expires_at", "-id")


@auth.member_required
def coupons(request: HttpRequest) -> HttpResponse:
    tab = request.GET.get("tab", "active")
    if tab not in COUPON_TABS:
        tab = "active"
    page = Paginator(_coupons_in_tab(request.member, tab, timezone.now()), PAGE_SIZE).get_page(request.GET.get("page"))
    tabs = [
        ("active", _("Active")),
        ("used", _("Used")),
        ("expired", _("Expired")),
    ]
    return render(request, "center/coupons.html", {"page": page, "tab": tab, "tabs": tabs, "nav": "coupons"})


@auth.member_required
def coupon(request: HttpRequest, coupon_id: int) -> HttpResponse:
    found = get_object_or_404(rewards_selectors.coupons_for_member(member=request.member, status=None), pk=coupon_id)
    return render(request, "center/coupon.html", {"coupon": found, "usable": _usable(found), "nav": "coupons"})


# --- profile --------------------------------------------------------------------------


@auth.member_required
@require_http_methods(["GET", "POST"])
def profile(request: HttpRequest) -> HttpResponse:
    from members.services import member_update_profile

    member = request.member
    form = ProfileForm(request.POST or None, member=member)
    if request.method == "POST" and form.is_valid():
        try:
            fields = form.changed_profile_fields()
            if fields:
                member = member_update_profile(member=member, **fields)
            for channel, granted in form.changed_consents():
                member = member_set_consent(member=member, channel=channel, granted=granted, source="web")
        except LoyaltyError as error:
            for field, problem in (error.extra.get("fields") or {}).items():
                form.add_error(field if field in form.fields else None, problem)
            if not error.extra.get("fields"):
                form.add_error(None, _error_message(error))
        else:
            messages.success(request, _("Your profile is saved."))
            return redirect("center:profile")
    has_password = member.user is not None and member.user.has_usable_password()
    context = {
        "form": form,
        "has_password": has_password,
        "referral_points": settings.LOYALTY_REFERRAL_POINTS,
        "nav": "profile",
    }
    return render(request, "center/profile.html", context)


@auth.member_required
def invite(request: HttpRequest) -> HttpResponse:
    """The member's referral code to share, and how many friends joined with it."""
    summary = referral_summary(request.member)
    link = request.build_absolute_uri(reverse("center:sign_in")) + f"?ref={summary.code}"
    return render(
        request,
        "center/invite.html",
        {"summary": summary, "link": link, "share_text": referral_share_text(summary.code, link), "nav": "profile"},
    )


@auth.member_required
@require_http_methods(["GET", "POST"])
def password(request: HttpRequest) -> HttpResponse:
    """Set a password (first time) or change it (then the current one is asked for)."""
    user = request.user
    form_class = PasswordChangeForm if user.has_usable_password() else SetPasswordForm
    form = form_class(user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        form.save()
        update_session_auth_hash(request, user)  # stay signed in here; other sessions end
        messages.success(request, _("Your password is set. You can now sign in with it."))
        return redirect("center:profile")
    return render(
        request,
        "center/password.html",
        {"form": form, "changing": form_class is PasswordChangeForm, "nav": "profile"},
    )


@auth.member_required
def export(request: HttpRequest) -> HttpResponse:
    """Everything we hold about the member, as a JSON download."""
    from operations.privacy import member_export

    data = member_export(member=request.member)
    response = HttpResponse(
        json.dumps(data, cls=DjangoJSONEncoder, ensure_ascii=False, indent=2),
        content_type="application/json; charset=utf-8",
    )
    filename = f"my-data-{request.member.member_number}.json"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@auth.member_required
@require_http_methods(["GET", "POST"])
def erase(request: HttpRequest) -> HttpResponse:
    """Erase the account after the member types the confirmation word; then sign out."""
    from operations.privacy import member_erase

    form = EraseForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            member_erase(member=request.member)
        except LoyaltyError as error:
            form.add_error(None, _error_message(error))
        else:
            auth.sign_out(request)
            messages.success(request, _("Your account is erased and you are signed out. Thank you for being a member."))
            return redirect("center:sign_in")
    return render(request, "center/erase.html", {"form": form, "word": erase_word(), "nav": "profile"})
