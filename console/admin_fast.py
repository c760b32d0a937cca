"""The FAST panel page in the admin, and its drill-down to members (figures: ``operations.fast``).

``/admin/fast/`` shows the figures of the staff user's stores (members.scoping): the
whole brand for brand admins, their own stores for store managers, one store of those
with ``?store=<id>``. ``/admin/fast/members/`` lists the members behind one figure.
Bad input (a store outside the scope, an unknown figure or month) gets the page with a
clear message and status 400; it changes nothing.
"""

import datetime as dt

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.translation import gettext as _

from core.errors import LoyaltyError
from members.models import Member, Stage, Store
from members.scoping import staff_stores
from operations import fast

PERMISSION = "loyalty.view_dashboard"
PER_PAGE = 100


class _BadInput(Exception):
    pass


def _percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.1f}%"


def _scope(request) -> tuple[list[int] | None, list[Store], Store | None]:
    """The store ids the figures cover (None: the whole brand), the stores the user may
    pick from, and the one picked (None: all of them)."""
    allowed = staff_stores(request.user)
    stores = list((Store.objects.all() if allowed is None else allowed).order_by("name", "pk"))
    raw = request.GET.get("store", "")
    if not raw:
        return (None if allowed is None else [s.pk for s in stores]), stores, None
    picked = next((s for s in stores if str(s.pk) == raw), None)
    if picked is None:
        raise _BadInput(_("That store is not one of yours."))
    return [picked.pk], stores, picked


def _month(raw: str) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise _BadInput(_("The month must be one of the last 12.")) from None


def _instant(raw: str | None) -> dt.datetime:
    """The instant the figure was computed at (the panel's ``now``, so the list matches the
    number clicked); now when not given. Refuses a malformed or future instant."""
    now = timezone.now()
    if not raw:
        return now
    try:
        at = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise _BadInput(_("The figures' time is not a valid date and time.")) from None
    if timezone.is_naive(at):
        at = timezone.make_aware(at)
    if at > now:
        raise _BadInput(_("The figures' time is not a valid date and time."))
    return at


def _base_context(request, title: str) -> dict:
    return {**admin.site.each_context(request), "title": title}


def _link(store: Store | None, **query) -> str:
    if store is not None:
        query["store"] = store.pk
    return f"{reverse('loyalty_fast_members')}?{urlencode(query)}"


def fast_view(request):
    """GET: the FAST panel and new vs. returning customers, 12 months, for the user's scope
    (cached like the dashboard); POST: compute them again now."""
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    context = _base_context(request, _("FAST panel"))
    try:
        stores, choices, picked = _scope(request)
    except _BadInput as error:
        context.update(error=str(error), stores=[])
        return TemplateResponse(request, "operations/fast/panel.html", context, status=400)
    if request.method == "POST":
        fast.fast_panel_cached(stores=stores, refresh=True)
        messages.success(request, _("The figures were computed again just now."))
        return redirect(request.get_full_path())
    try:
        panel = fast.fast_panel_cached(stores=stores)
    except LoyaltyError as error:  # not PostgreSQL: the figures are PostgreSQL statements
        context.update(error=str(error.message), stores=choices, picked=picked)
        return TemplateResponse(request, "operations/fast/panel.html", context)
    months = [m.strftime("%Y-%m") for m in panel.months]

    at = panel.now.isoformat()

    def cells(values, **query):
        return [(value, _link(picked, month=i, at=at, **query)) for i, value in enumerate(values)]

    reachable = [
        (fast.CHANNEL_LABELS[channel], cells(panel.reachable[channel], figure="reachable", channel=channel))
        for channel in (*panel.channels, "any")
    ]
    conversions = [
        {
            "label": fast.CONVERSION_LABELS[c.code],
            "rates": [_percent(rate) for rate in c.rates],
            "base": cells(c.base, figure="conversion", conversion=c.code),
            "converted": cells(c.converted, figure="converted", conversion=c.code),
        }
        for c in panel.conversions
    ]
    super_users = cells(panel.super_users, figure="super")
    super_active = cells(panel.super_active, figure="super_active")
    returning = [
        {
            "month": months[i],
            "row": row,
            "first_link": _link(picked, figure="first", month=i, at=at),
            "repeat_link": _link(picked, figure="repeat", month=i, at=at),
            "repeat_share": _percent(row.repeat_revenue_share),
        }
        for i, row in enumerate(panel.returning)
    ]
    last = len(months) - 1
    new_growing = next(c for c in panel.conversions if c.code == "new_growing")
    summary = {
        "reachable": (panel.reachable["any"][last], reachable[-1][1][last][1]),
        "conversion": (
            _percent(new_growing.rates[last]),
            new_growing.converted[last],
            conversions[0]["converted"][last][1],
            new_growing.base[last],
        ),
        "super": super_users[last],
        "active": super_active[last],
        "share": _percent(panel.super_active_share[last]),
    }
    trend = {
        "months": months,
        "reachable": panel.reachable["any"],
        "super_users": panel.super_users,
        "share": [None if rate is None else round(rate * 100, 1) for rate in panel.super_active_share],
        "first_revenue": [float(row.first.revenue) for row in panel.returning],
        "repeat_revenue": [float(row.repeat.revenue) for row in panel.returning],
        "labels": {
            "reachable": str(fast.CHANNEL_LABELS["any"]).capitalize() + " (F)",
            "super_users": _("Super users (S)"),
            "share": _("Share active, % (T)"),
            "first": _("First orders"),
            "repeat": _("Repeat orders"),
        },
    }
    context.update(
        panel=panel,
        summary=summary,
        trend=trend,
        months=months,
        stores=choices,
        picked=picked,
        reachable=reachable,
        conversions=conversions,
        super_users=super_users,
        super_active=super_active,
        super_share=[_percent(rate) for rate in panel.super_active_share],
        super_segments=[Member.RfmSegment(code).label for code in fast.SUPER_SEGMENTS],
        channel_labels=[fast.CHANNEL_LABELS[c] for c in panel.channels],
        stage_labels={code: Stage(code).label for code in Stage.values},
        window_days=settings.LOYALTY_RFM_WINDOW_DAYS,
        active_days=fast.ACTIVE_DAYS,
        returning=returning,
    )
    return TemplateResponse(request, "operations/fast/panel.html", context)


def fast_members_view(request):
    """GET: the members behind one figure of the panel, a page at a time."""
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    context = _base_context(request, _("Members behind a FAST figure"))
    try:
        stores, _choices, picked = _scope(request)
        month = _month(request.GET.get("month"))
        try:
            page = max(1, int(request.GET.get("page", "1")))
        except ValueError:
            page = 1
        total, ids = fast.figure_members_page(
            request.GET.get("figure", ""),
            page=page,
            per_page=PER_PAGE,
            month=month,
            channel=request.GET.get("channel", "any"),
            conversion=request.GET.get("conversion", ""),
            now=_instant(request.GET.get("at")),
            stores=stores,
        )
    except (_BadInput, LoyaltyError) as error:
        context["error"] = error.message if isinstance(error, LoyaltyError) else str(error)
        return TemplateResponse(request, "operations/fast/members.html", context, status=400)
    members = {m.pk: m for m in Member.objects.filter(pk__in=ids).select_related("home_store")}
    query = request.GET.copy()
    pages = {}
    for name, number in (("previous", page - 1), ("next", page + 1)):
        if number >= 1 and (number - 1) * PER_PAGE < total:
            query["page"] = number
            pages[name] = f"?{query.urlencode()}"
    context.update(
        total=total,
        page=page,
        pages=pages,
        picked=picked,
        members=[members[pk] for pk in ids if pk in members],
        back=reverse("loyalty_fast") + (f"?store={picked.pk}" if picked else ""),
    )
    return TemplateResponse(request, "operations/fast/members.html", context)
