"""A cursor or page size the API did not give out is a 400 in the error shape, on every list."""

from base64 import b64encode

import pytest
from django.urls import get_resolver
from rest_framework.test import APIClient

from api.pagination import CursorPagination
from loyalty.services import points_award
from members.models import Notification

from .conftest import client_for_key, client_for_member

pytestmark = pytest.mark.django_db


def _b64(text: str) -> str:
    return b64encode(text.encode()).decode()


BAD_CURSORS = [
    "garbage!!",
    "%%%",
    "漢字",
    "cD0y",  # base64 of "p=2": a position that is no date
    _b64("hello world"),
    _b64("x=1"),
    _b64("o=-1"),
    _b64("o=99999999999999999999"),
    _b64("o=abc"),
    _b64("r=2"),
    _b64("o=1&o=2"),
    _b64("p=not-a-date"),
    _b64("p=99999-01-01 00:00:00+00:00"),
]
BAD_PAGE_SIZES = ["abc", "-1", "0", "101", "99999999999999999999", "1.5"]


def _list_operations() -> list[tuple[str, set[str]]]:
    """Every operation of the live schema that pages by cursor, with its query parameters."""
    schema = APIClient().get("/api/schema/?format=json").json()
    found = []
    for path, item in schema["paths"].items():
        operation = item.get("get")
        names = {p["name"] for p in (operation or {}).get("parameters", []) if p["in"] == "query"}
        if "cursor" in names:
            found.append((path, names))
    return found


@pytest.fixture
def callers(member, store):
    points_award(member=member, currency="points", amount=10, reason="seed", idempotency_key="seed")
    return {"/api/v1/pos/": client_for_key(store), "/api/v1/": client_for_member(member)}


def _client(callers, path: str):
    return next(client for prefix, client in callers.items() if path.startswith(prefix))


def test_every_paginated_view_uses_the_strict_cursor():
    views = []

    def walk(patterns):
        for pattern in patterns:
            if hasattr(pattern, "url_patterns"):
                walk(pattern.url_patterns)
            elif getattr(pattern.callback, "cls", None) is not None:
                views.append(pattern.callback.cls)

    walk(get_resolver().url_patterns)
    paginated = [view for view in views if getattr(view, "pagination_class", None)]
    assert len(paginated) >= 2
    for view in paginated:
        assert issubclass(view.pagination_class, CursorPagination), view


@pytest.mark.parametrize("cursor", BAD_CURSORS)
def test_a_cursor_the_api_did_not_give_is_400_on_every_list(callers, cursor):
    operations = _list_operations()
    assert len(operations) >= 2
    for path, _names in operations:
        response = _client(callers, path).get(path, {"cursor": cursor})
        assert response.status_code == 400, (path, cursor, response.status_code, response.content[:200])
        error = response.json()["error"]
        assert error["code"] == "invalid_cursor"
        assert "cursor" in error["fields"]


@pytest.mark.parametrize("page_size", BAD_PAGE_SIZES)
def test_a_page_size_out_of_range_is_400_on_every_list(callers, page_size):
    operations = [(path, names) for path, names in _list_operations() if "page_size" in names]
    assert operations
    for path, _names in operations:
        response = _client(callers, path).get(path, {"page_size": page_size})
        assert response.status_code == 400, (path, page_size, response.status_code)
        assert response.json()["error"]["code"] == "invalid_page_size"
        assert "page_size" in response.json()["error"]["fields"]


def test_the_schema_says_the_page_size_range():
    schema = APIClient().get("/api/schema/?format=json").json()
    parameter = next(p for p in schema["paths"]["/api/v1/me/entries/"]["get"]["parameters"] if p["name"] == "page_size")
    assert parameter["schema"]["minimum"] == 1 and parameter["schema"]["maximum"] == 100


def test_the_cursors_the_api_gives_still_work_both_ways(member):
    for n in range(3):
        points_award(member=member, currency="points", amount=1 + n, reason="seed", idempotency_key=f"s{n}")
        Notification.objects.create(member=member, kind="other", title=f"n{n}", dedupe_key=f"d{n}")
    client = client_for_member(member)
    seen = []
    url = "/api/v1/me/entries/?page_size=1"
    while url:
        page = client.get(url)
        assert page.status_code == 200
        seen += [entry["amount"] for entry in page.json()["results"]]
        url = page.json()["next"]
        if len(seen) == 2:
            back = client.get(page.json()["previous"])
            assert back.status_code == 200 and [e["amount"] for e in back.json()["results"]] == [seen[0]]
    assert seen == [3, 2, 1]
    # An empty cursor is no cursor: the first page.
    assert client.get("/api/v1/me/notifications/", {"cursor": ""}).status_code == 200
