"""The operations dashboard page in the admin (figures: ``loyalty.dashboard``)."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _

from . import dashboard as figures

PERMISSION = "loyalty.view_dashboard"


def _percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.1f}%"


def dashboard_view(request):
    """GET: the figures (cached); POST: compute them again now."""
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    if request.method == "POST":
        figures.dashboard(refresh=True)
        messages.success(request, _("The figures were computed again just now."))
        return redirect("loyalty_dashboard")
    board = figures.dashboard()
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
    # Each cell: (percent, shade 0.05-0.85) or None for a month still to come.
    cohorts = [
        (
            cohort,
            [
                None if share is None else (round(share * 100, 1), f"{0.05 + share * 0.8:.2f}")
                for share in cohort.retention
            ],
        )
        for cohort in board.cohorts
    ]
    context = {
        **admin.site.each_context(request),
        "title": _("Operations dashboard"),
        "board": board,
        "repurchase_rate": _percent(board.repurchase_rate),
        "redemption_rate": _percent(board.redemption_rate),
        "breakage_rate": _percent(board.breakage_rate),
        "cohorts": cohorts,
        "cohort_offsets": range(figures.COHORT_MONTHS),
        "chart": chart,
    }
    return TemplateResponse(request, "admin/loyalty/dashboard.html", context)
