"""The operations dashboard page in the admin (figures: ``operations.dashboard``)."""

import datetime as dt

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _

from members.models import RfmSegment, Stage, Store
from members.scoping import staff_stores
from operations import dashboard as figures

PERMISSION = "loyalty.view_dashboard"


def _percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.1f}%"


def _shade(n: int, top: int) -> str:
    return f"{0.05 + (n / top) * 0.8:.2f}" if top else "0.05"


def _lifecycle_context(board) -> dict:
    """The funnel, RFM grid, segments and stage moves, labelled in the request's language."""
    staged = sum(n for _code, n in board.stages)
    funnel = [(code, Stage(code).label, n, round(n / staged * 100, 1) if staged else None) for code, n in board.stages]
    top = max((n for row in board.rfm_grid for n in row), default=0)
    # Rows from R 5 (bought recently) down to R 1, columns F 1 to 5, as RFM grids are usually drawn.
    grid = (
        [(r, [(n, _shade(n, top)) for n in board.rfm_grid[r - 1]]) for r in reversed(figures.SCORES)]
        if board.rfm_grid
        else []
    )
    segments = [(code, RfmSegment(code).label, n) for code, n in board.rfm_segments]
    sources = ["", *Stage.values]
    moves = [
        (
            Stage(before).label if before else _("no stage yet"),
            [board.stage_move_pairs.get((before, after), 0) for after in Stage.values],
        )
        for before in sources
        if any(board.stage_move_pairs.get((before, after)) for after in Stage.values)
    ]
    chart = {
        "stages": [label for _code, label, _n, _share in funnel],
        "stage_members": [n for _code, _label, n, _share in funnel],
        "move_days": [day.day.strftime("%m-%d") for day in board.stage_moves],
        "moves_into": [
            {
                "label": _("into %(stage)s") % {"stage": Stage(code).label},
                "data": [d.into.get(code, 0) for d in board.stage_moves],
            }
            for code in Stage.values
        ],
        "labels": {"members": _("Members")},
    }
    value = board.value
    return {
        "funnel": funnel,
        "rfm_grid": grid,
        "rfm_scores": figures.SCORES,
        "rfm_segments": segments,
        "stage_labels": [Stage(code).label for code in Stage.values],
        "stage_moves": moves,
        "value": value,
        "value_repurchase": _percent(value.repurchase_rate) if value else "–",
        "value_retention": _percent(value.retention) if value else "–",
        "lifecycle_chart": chart,
        "staged_total": staged,
    }


def _scope(user) -> tuple[list[int] | None, str]:
    """The store ids ``user``'s figures cover (None: every store) and how the page names them."""
    stores = staff_stores(user)
    if stores is None:
        return None, _("All stores")
    rows = list(stores.order_by("name", "pk").values_list("pk", "name"))
    if not rows:
        return [], _("no store (your staff profile lists none, so every figure is zero)")
    return sorted(pk for pk, _name in rows), ", ".join(name for _pk, name in rows)


def _store_choices(user) -> list[tuple[int, str]]:
    """The stores the picker offers: the user's own (every active store for the brand)."""
    stores = staff_stores(user)
    if stores is None:
        stores = Store.objects.filter(is_active=True)
    return list(stores.order_by("name", "pk").values_list("pk", "name"))


def _picked(request, stores, label) -> tuple[list[int] | None, str, int | None]:
    """Narrow the scope to the store picked in ``?store=`` when it is one of the user's."""
    choices = dict(_store_choices(request.user))
    picked = request.GET.get("store", "")
    if picked.isdigit() and int(picked) in choices and (stores is None or int(picked) in stores):
        return [int(picked)], choices[int(picked)], int(picked)
    return stores, label, None


def _add_months(month: dt.date, n: int) -> dt.date:
    total = month.year * 12 + month.month - 1 + n
    return dt.date(total // 12, total % 12 + 1, 1)


def dashboard_view(request):
    """GET: the figures of the user's stores (cached); POST: compute them again now.

    Staff see the figures of their stores only (members.scoping); each scope is cached
    on its own, and "compute again" recomputes the caller's scope only.
    """
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    stores, scope_label = _scope(request.user)
    stores, scope_label, picked = _picked(request, stores, scope_label)
    if request.method == "POST":
        figures.dashboard(stores=stores, refresh=True)
        messages.success(request, _("The figures were computed again just now."))
        return redirect(f"{reverse('loyalty_dashboard')}?store={picked}" if picked else reverse("loyalty_dashboard"))
    board = figures.dashboard(stores=stores)
    months = board.points_by_month
    chart = {
        "months": [month.month.strftime("%Y-%m") for month in months],
        "issued": [month.issued for month in months],
        "redeemed": [month.redeemed for month in months],
        "expired": [month.expired for month in months],
        "tiers": [tier.name for tier in board.tiers],
        "tier_members": [tier.members for tier in board.tiers],
        "labels": {"issued": _("Issued"), "redeemed": _("Redeemed"), "expired": _("Expired")},
    }
    # Each cell: (percent, shade 0.05-0.85, the month it counts "YYYY-MM") or None for a
    # month still to come; a cell opens the cohort's members who bought in that month.
    cohorts = [
        (
            cohort,
            [
                None
                if share is None
                else (round(share * 100, 1), f"{0.05 + share * 0.8:.2f}", f"{_add_months(cohort.month, k):%Y-%m}")
                for k, share in enumerate(cohort.retention)
            ],
        )
        for cohort in board.cohorts
    ]
    context = {
        **admin.site.each_context(request),
        "title": _("Operations dashboard"),
        "board": board,
        "scope_label": scope_label,
        "scoped": stores is not None,
        "store_choices": _store_choices(request.user),
        "picked_store": picked,
        # Drill-downs of one picked store open its members only.
        "drill_suffix": f"&home_store__id__exact={picked}" if picked else "",
        "members_url": reverse("admin:members_member_changelist"),
        "repurchase_rate": _percent(board.repurchase_rate),
        "redemption_rate": _percent(board.redemption_rate),
        "breakage_rate": _percent(board.breakage_rate),
        "cohorts": cohorts,
        "tiered_total": sum(tier.members for tier in board.tiers),
        "cohort_offsets": range(figures.COHORT_MONTHS),
        "chart": chart,
        **_lifecycle_context(board),
    }
    return TemplateResponse(request, "admin/loyalty/dashboard.html", context)
