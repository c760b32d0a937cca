"""The member's points, lot by lot (/me/points/): "these 120 points expiring on 31 Dec came
from order A-1002 (Double points week)", and what each spend, expiry or refund took.
Thin: one selector (``foresight.provenance``), three queries."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from foresight.provenance import member_provenance

from . import auth


@auth.member_required
def points(request: HttpRequest) -> HttpResponse:
    report = member_provenance(request.member)
    return render(request, "center/provenance.html", {"report": report, "nav": "history"})
