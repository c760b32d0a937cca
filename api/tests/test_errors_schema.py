"""Every status an operation can answer is in its OpenAPI entry, with the error shape."""

import pytest
from django.urls import resolve
from rest_framework.permissions import AllowAny
from rest_framework.test import APIClient

from api.permissions import IsStaffCaller
from loyalty.tests.factories import MemberFactory, StoreFactory
from programme.models import Partner
from programme.partners import partner_key_create

from .conftest import client_for_key, client_for_member

pytestmark = pytest.mark.django_db


def _operations():
    schema = APIClient().get("/api/schema/?format=json").json()
    found = []
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            found.append((method, path, operation))
    assert len(found) >= 30
    return found


def _view(path: str):
    view = resolve(path.replace("{id}", "1")).func.cls()
    return view


def _documented(operation) -> set[int]:
    return {int(code) for code in operation["responses"]}


def test_each_operation_documents_the_statuses_its_view_can_answer():
    for method, path, operation in _operations():
        view = _view(path)
        expected = {406, 503}
        locations = {p["in"] for p in operation.get("parameters", [])}
        if operation.get("requestBody"):
            expected |= {400, 415}
        if locations & {"query", "header"}:
            expected.add(400)
        if "path" in locations:
            expected.add(404)
        if any(not isinstance(p, AllowAny) for p in view.get_permissions()):
            expected |= {401, 403}
        if view.get_authenticators():
            expected.add(401)
        if view.get_throttles():
            expected.add(429)
        missing = expected - _documented(operation)
        assert not missing, f"{method.upper()} {path} does not document {sorted(missing)}"
        for code in (429, 503):
            if code in _documented(operation):
                assert "Retry-After" in operation["responses"][str(code)]["headers"], (method, path, code)


def _call(client, method: str, path: str, **kwargs):
    return getattr(client, method)(path.replace("{id}", "1"), **kwargs)


def assert_documented(response, method, path, operation, what):
    assert response.status_code in _documented(operation), (
        f"{what}: {method.upper()} {path} answered {response.status_code}, documents {sorted(_documented(operation))}"
    )
    assert response.status_code >= 400, (what, method, path, response.status_code)
    assert set(response.json()) == {"error"} and response.json()["error"]["code"], (what, method, path)


def test_a_caller_without_credentials_or_with_bad_ones_gets_a_documented_status():
    authenticated = [
        (m, p, o) for m, p, o in _operations() if any(not isinstance(x, AllowAny) for x in _view(p).get_permissions())
    ]
    assert len(authenticated) >= 25
    anonymous, forged = APIClient(), APIClient()
    forged.credentials(HTTP_AUTHORIZATION="Bearer at_not-a-token")
    for method, path, operation in authenticated:
        for client, what in ((anonymous, "no credentials"), (forged, "forged token")):
            response = _call(client, method, path, data={}, format="json")
            assert response.status_code == 401, (what, method, path, response.status_code)
            assert_documented(response, method, path, operation, what)


def test_the_wrong_kind_of_caller_gets_a_documented_status():
    member_client, key_client = client_for_member(MemberFactory()), client_for_key(StoreFactory())
    for method, path, operation in _operations():
        if "security" not in operation or not any(operation["security"]):
            continue
        # A member at the till, a store key on a member's own data.
        client = member_client if path.startswith("/api/v1/pos/") else key_client
        response = _call(client, method, path, data={}, format="json")
        if response.status_code < 400:
            continue  # an operation both kinds of caller may use
        assert_documented(response, method, path, operation, "wrong caller")


def test_bodies_and_accept_headers_the_api_cannot_read_get_a_documented_status(staff_client):
    member, key_client = MemberFactory(), client_for_key(StoreFactory())
    partner_client = APIClient()
    _key, raw = partner_key_create(partner=Partner.objects.create(code="p", name="P"), name="test")
    partner_client.credentials(HTTP_AUTHORIZATION=f"Partner-Key {raw}")
    for method, path, operation in _operations():
        # A fresh token each time: signing out (a body it ignores) ends the one it used. Staff
        # operations outside the till (paid membership refunds, badges) get a staff token.
        staff_only = any(isinstance(permission, IsStaffCaller) for permission in _view(path).get_permissions())
        if path.startswith("/api/v1/pos/"):
            client = key_client
        elif path.startswith("/api/v1/partner/"):  # a partner's key (programme.partners)
            client = partner_client
        else:
            client = staff_client if staff_only else client_for_member(member)
        response = _call(client, method, path, HTTP_ACCEPT="text/html")
        assert response.status_code == 406, (method, path, response.status_code)
        assert_documented(response, method, path, operation, "Accept: text/html")
        if not operation.get("requestBody"):
            if method != "get":  # a body it does not take is ignored, or refused as documented
                response = _call(client, method, path, data='{"phone": ', content_type="application/json")
                assert response.status_code in _documented(operation), (method, path, response.status_code)
            continue
        response = _call(client, method, path, data="phone=1", content_type="text/plain")
        assert response.status_code == 415, (method, path, response.status_code)
        assert_documented(response, method, path, operation, "text/plain body")
        response = _call(client, method, path, data='{"phone": ', content_type="application/json")
        assert response.status_code == 400, (method, path, response.status_code)
        assert_documented(response, method, path, operation, "broken JSON")
