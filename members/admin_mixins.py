"""The admins' phone search: find a member by their phone number in any spelling.

Every app's admin that lists members' rows uses it; it lives with the phone rules it needs
(``members.phone``), the read-only mixins in ``core.admin``.
"""

import re

from core.errors import LoyaltyError

from .phone import normalize_phone

_PHONE_LIKE = re.compile(r"^\+?[\d\s\-()]{7,24}$")


def phone_from_search(term: str) -> str | None:
    """The E.164 form of a search term that is a phone number in any spelling, else None."""
    term = (term or "").strip()
    if not _PHONE_LIKE.match(term):
        return None
    try:
        return normalize_phone(term)
    except LoyaltyError:
        return None


class PhoneSearchMixin:
    """Also find the member whose phone is the search term in another spelling (138 0013 8000, 0086...).

    The plain ``icontains`` search already finds ``13800138000`` inside ``+8613800138000``;
    this adds an exact match on the normalised number, which the words-split search misses.
    """

    phone_lookup = "phone"

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        phone = phone_from_search(search_term)
        if phone is not None:
            results = results | queryset.filter(**{self.phone_lookup: phone})
        return results, may_have_duplicates
