"""The operations dashboard page in the admin (figures: ``operations.dashboard``).

Every member figure drills down: its link opens the member list filtered by the segment
rules that select exactly those members (``?rules=<JSON>``, operations.admin_segments
``SegmentRulesFilter``), and "Save as segment" (``dashboard_segment_view``, a POST) saves
the same rules as a segment. The scope's stores are part of the rules, so the list, the
segment and the figure count the same members.
"""

import datetime as dt
import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.translation import gettext as _

from core.errors import LoyaltyError
from members.models import RfmSegment, Stage, Store
from members.scoping import staff_stores
from operations import dashboard as figures
from operations.segments import segment_create

PERMISSION = "loyalty.view_dashboard"
SEGMENT_PERMISSION = "members.add_segment"

# Cohort and RFM cells: an indigo over white, darker with the share; the text colour is
# the one of the two with the higher contrast (WCAG AA asks 4.5:1 for text; test_dash_page).
_INDIGO = (49, 46, 129)
_DARK_TEXT = "#111827"
_LIGHT_TEXT = "#ffffff"


def _percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.1f}%"


def _luminance(hex_colour: str) -> float:
    """WCAG 2 relative luminance of ``#rrggbb``."""
    channels = []
    for i in (1, 3, 5):
        c = int(hex_colour[i : i + 2], 16) / 255
        channels.append(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4)
    r, g, b = channels
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(foreground: str, background: str) -> float:
    """WCAG 2 contrast ratio of two ``#rrggbb`` colours (1 to 21)."""
    a, b = sorted((_luminance(foreground), _luminance(background)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def shade(share: float) -> tuple[str, str]:
    """(background, text) of a cell for a share 0-1: darker with the share, always readable.

    Between the shades where dark text and where white text pass 4.5:1 lies a band where
    neither does; a share that lands there is drawn with the first shade dark enough for white.
    """
    alpha = 0.06 + 0.8 * min(max(share, 0.0), 1.0)
    while True:
        background = "#" + "".join(f"{round(255 - (255 - c) * alpha):02x}" for c in _INDIGO)
        text = max((_DARK_TEXT, _LIGHT_TEXT), key=lambda t: contrast_ratio(t, background))
        if contrast_ratio(text, background) >= 4.5 or alpha >= 1:
            return background, text
        alpha = min(1.0, alpha + 0.01)


def _members_link(rules: dict) -> str:
    return f"{reverse('admin:members_member_changelist')}?{urlencode({'rules': _rules_json(rules)})}"


def _rules_json(rules: dict) -> str:
    return json.dumps(rules, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


class Drill:
    """The drill-downs of one dashboard: each figure's rules, with the scope's stores added."""

    def __init__(self, scope_codes: list[str] | None):
        self.scope = {} if scope_codes is None else {"stores": scope_codes}

    def __call__(self, label: str, count: int, **rules) -> dict:
        rules = {**rules, **self.scope}
        return {"href": _members_link(rules), "rules": _rules_json(rules), "label": label, "count": count}


def _lifecycle_context(board, drill: Drill) -> dict:
    """The funnel, RFM grid, segments and stage moves, labelled in the request's language."""
    staged = sum(n for _code, n in board.stages)
    funnel = [
        (code, label, n, round(n / staged * 100, 1) if staged else None, drill(label, n, stages=[code]))
        for code, label, n in ((code, Stage(code).label, n) for code, n in board.stages)
    ]
    top = max((n for row in board.rfm_grid for n in row), default=0)
    # Rows from R 5 (bought recently) down to R 1, columns F 1 to 5, as RFM grids are usually drawn.
    grid = (
        [
            (
                r,
                [
                    (n, *shade(n / top if top else 0), drill(f"R{r} F{f}", n, rfm_recency=[r], rfm_frequency=[f]))
                    for f, n in zip(figures.SCORES, board.rfm_grid[r - 1], strict=True)
                ],
            )
            for r in reversed(figures.SCORES)
        ]
        if board.rfm_grid
        else []
    )
    segments = [
        (code, RfmSegment(code).label, n, drill(RfmSegment(code).label, n, rfm_segments=[code]))
        for code, n in board.rfm_segments
    ]
    sources = ["", *Stage.values]
    moves = [
        (
            Stage(before).label if before else _("no stage yet"),
            [board.stage_move_pairs.get((before, after), 0) for after in Stage.values],
        )
        for before in sources
        if any(board.stage_move_pairs.get((before, after)) for after in Stage.values)
    ]
    daily = len(board.stage_moves) <= figures.MAX_DAILY_DAYS
    chart = {
        "stages": [str(label).capitalize() for _code, label, _n, _share, _drill in funnel],
        "stage_members": [n for _code, _label, n, _share, _drill in funnel],
        "move_days": [day.day.strftime("%m-%d" if daily else "%Y-%m-%d") for day in board.stage_moves],
        "moves_into": [
            {
                "label": _("Into %(stage)s") % {"stage": Stage(code).label},
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


def period_from(query, today: dt.date) -> tuple[figures.Period, str | None]:
    """The period the query asks for (``period=<preset>``, or ``custom`` with ``from``/``to``)
    and an error message when it asks for one that cannot be shown (then the default)."""
    preset = query.get("period") or figures.DEFAULT_PRESET
    if preset in figures.PRESETS:
        return figures.period_preset(preset, today), None
    default = figures.period_preset(figures.DEFAULT_PRESET, today)
    if preset != "custom":
        return default, _("Pick one of the periods offered.")
    try:
        start = dt.date.fromisoformat(query.get("from", ""))
        end = dt.date.fromisoformat(query.get("to", ""))
    except ValueError:
        return default, _("Give the first and the last day of the period as dates.")
    if start > end:
        return default, _("The period's first day is after its last day.")
    if end > today:
        return default, _("The period cannot end after today.")
    if (end - start).days + 1 > figures.MAX_PERIOD_DAYS:
        return default, _("A period is at most %(days)d days.") % {"days": figures.MAX_PERIOD_DAYS}
    return figures.Period(start=start, end=end), None


def _period_query(period: figures.Period, picked: int | None) -> dict:
    query = {"period": period.preset}
    if period.preset == "custom":
        query.update({"from": period.start.isoformat(), "to": period.end.isoformat()})
    if picked:
        query["store"] = picked
    return query


def _scope_codes(stores: list[int] | None) -> list[str] | None:
    if stores is None:
        return None
    return sorted(Store.objects.filter(pk__in=stores).values_list("code", flat=True))


def dashboard_view(request):
    """GET: the figures of the user's stores over the period picked (cached); POST: compute
    them again now.

    Staff see the figures of their stores only (members.scoping); each scope and period is
    cached on its own, and "compute again" recomputes the caller's scope and period only.
    """
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    stores, scope_label = _scope(request.user)
    stores, scope_label, picked = _picked(request, stores, scope_label)
    today = timezone.localdate()
    period, period_error = period_from(request.GET, today)
    query = _period_query(period, picked)
    if request.method == "POST":
        figures.dashboard(stores=stores, refresh=True, period=period)
        messages.success(request, _("The figures were computed again just now."))
        return redirect(f"{reverse('loyalty_dashboard')}?{urlencode(query)}")
    if period_error:
        messages.error(request, period_error)
    board = figures.dashboard(stores=stores, period=period)
    drill = Drill(_scope_codes(stores))
    daily = period.bucket == "day"
    months = board.points_by_month
    moved = sum(m.issued + m.redeemed + m.expired + m.taken_back for m in months)
    chart = {
        "months": [m.month.strftime("%m-%d" if daily else "%Y-%m") for m in months],
        "issued": [m.issued for m in months],
        "redeemed": [m.redeemed for m in months],
        "expired": [m.expired for m in months],
        "tiers": [tier.name for tier in board.tiers],
        "tier_members": [tier.members for tier in board.tiers],
        "labels": {"issued": _("Issued"), "redeemed": _("Redeemed"), "expired": _("Expired")},
    }
    # Each cell: (percent, background, text colour, drill) or None for a month still to come.
    cohorts = []
    for cohort in board.cohorts:
        cells = []
        for k, (share, n) in enumerate(zip(cohort.retention, cohort.buyers, strict=True)):
            if share is None:
                cells.append(None)
                continue
            month = figures._month_start(cohort.month, -k)
            label = _("Joined %(joined)s, bought in %(month)s") % {
                "joined": f"{cohort.month:%Y-%m}",
                "month": f"{month:%Y-%m}",
            }
            cells.append((round(share * 100, 1), *shade(share), drill(label, n, **cohort.cell_rules(k, board.as_of))))
        size = drill(_("Joined %(joined)s") % {"joined": f"{cohort.month:%Y-%m}"}, cohort.size, **cohort.rules())
        cohorts.append((cohort, size, cells))
    window = {"from": period.start.isoformat(), "to": period.end.isoformat()}
    span = f"{period.start:%Y-%m-%d} – {period.end:%Y-%m-%d}"
    context = {
        **admin.site.each_context(request),
        "title": _("Operations dashboard"),
        "board": board,
        "period": period,
        "period_span": span,
        "period_presets": [
            ("7d", _("Last 7 days")),
            ("30d", _("Last 30 days")),
            ("90d", _("Last 90 days")),
            ("this_month", _("This month")),
            ("last_month", _("Last month")),
            ("custom", _("Custom")),
        ],
        "period_window": window,
        "today": today.isoformat(),
        "scope_label": scope_label,
        "scoped": stores is not None,
        "store_choices": _store_choices(request.user),
        "picked_store": picked,
        "query": urlencode(query),
        "can_save_segment": request.user.has_perm(SEGMENT_PERMISSION),
        "drill_new": drill(_("Joined %(span)s") % {"span": span}, board.members_new, **period.rules("joined")),
        "drill_buyers": drill(_("Bought %(span)s") % {"span": span}, board.buyers, **period.rules("bought")),
        "drill_repeat": drill(
            _("2+ orders %(span)s") % {"span": span}, board.repeat_buyers, bought_orders_min=2, **period.rules("bought")
        ),
        "drill_all": drill(_("All members"), board.members_total),
        "tier_drills": [(tier, drill(tier.name, tier.members, tiers=[tier.code])) for tier in board.tiers],
        "repurchase_rate": _percent(board.repurchase_rate),
        "redemption_rate": _percent(board.redemption_rate),
        "breakage_rate": _percent(board.breakage_rate),
        "cohorts": cohorts,
        "tiered_total": sum(tier.members for tier in board.tiers),
        "points_moved": moved,
        "points_daily": daily,
        "cohort_offsets": range(figures.COHORT_MONTHS),
        "chart": chart,
        **_lifecycle_context(board, drill),
    }
    return TemplateResponse(request, "admin/loyalty/dashboard.html", context)


def dashboard_segment_view(request):
    """POST: save the members of one dashboard figure as a segment (its rules, cleaned).

    Takes the dashboard permission; ``operations.segments.segment_create`` checks "add
    segment", narrows a scoped user's rules to their stores and refuses bad rules or a
    taken name (a message, back on the dashboard).
    """
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}) or not back.startswith("/admin/"):
        back = reverse("loyalty_dashboard")
    try:
        rules = json.loads(request.POST.get("rules", ""))
    except ValueError:
        messages.error(request, _("The selection's rules are not valid."))
        return redirect(back)
    try:
        segment = segment_create(actor=request.user, name=request.POST.get("name", ""), rules=rules)
    except LoyaltyError as error:
        messages.error(request, error.message)
        return redirect(back)
    messages.success(request, _("Saved the segment “%(name)s”.") % {"name": segment.name})
    return redirect(reverse("admin:members_segment_change", args=[segment.pk]))
