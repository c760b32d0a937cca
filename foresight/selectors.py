"""Foresight's shared reads: the leakage cases a staff user sees, and their count for the
needs-attention list (docs/foresight.md)."""

from django.db.models import QuerySet

from members.scoping import staff_stores

from .models import LeakageCase


def cases_for(user) -> QuerySet[LeakageCase]:
    """The cases ``user`` may see: every case for brand admins, else those of their stores."""
    cases = LeakageCase.objects.all()
    stores = staff_stores(user) if user is not None else None
    if stores is not None:
        cases = cases.filter(store__in=stores)
    return cases


def open_cases_count(user=None) -> int:
    """How many leakage cases are open, brand-wide or (given a staff ``user``) in their stores."""
    return cases_for(user).filter(status=LeakageCase.Status.OPEN).count()
