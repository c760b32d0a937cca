"""The database unreachable: every API operation answers 503 in the error shape, with Retry-After.

"Down" is real: the connection settings point at a local port nothing listens on (what a
client of a stopped PostgreSQL sees), or the server ends our open connection
(``pg_terminate_backend``, what a restart does to it).
"""

import socket
from contextlib import contextmanager

import psycopg
import pytest
from django.db import connection
from rest_framework.test import APIClient

from loyalty.tests.factories import MemberFactory, StoreFactory
from programme.models import Partner
from programme.partners import partner_key_create

from .conftest import client_for_key, client_for_member

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def database_down():
    """The default database refuses connections until the block ends."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings_dict = connection.settings_dict
    saved = settings_dict["HOST"], settings_dict["PORT"]
    connection.close()
    settings_dict["HOST"], settings_dict["PORT"] = "127.0.0.1", str(port)
    try:
        yield
    finally:
        connection.close()
        settings_dict["HOST"], settings_dict["PORT"] = saved


class EagerUserMiddleware:
    """Like many third-party middlewares, reads the user (the session, the database) itself."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.user.is_authenticated  # noqa: B018 - the read is the point
        return self.get_response(request)


def with_eager_user(middleware: list[str]) -> list[str]:
    at = middleware.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1
    return [*middleware[:at], "api.tests.test_errors_database.EagerUserMiddleware", *middleware[at:]]


def assert_unavailable(response, what=""):
    assert response.status_code == 503, (what, response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), what
    error = response.json()["error"]
    assert error["code"] == "service_unavailable" and "try again" in error["message"], what
    assert int(response["Retry-After"]) > 0, what


def _operations():
    schema = APIClient().get("/api/schema/?format=json").json()
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            body = (operation.get("requestBody") or {}).get("content", {}).get("application/json", {})
            example = next(iter(body.get("examples", {}).values()), {}).get("value", {})
            # Path parameters that must be right for the view to reach the database: the SMS
            # report callback checks its provider and URL token first (a wrong one is a 404).
            for name, value in {"{id}": "1", "{provider}": "aliyun", "{token}": REPORT_TOKEN}.items():
                path = path.replace(name, value)
            yield method, path, operation, example


REPORT_TOKEN = "report-token-for-the-test"


def test_every_operation_answers_503_json_when_the_database_is_down(settings):
    settings.OUTREACH_REPORT_TOKEN = REPORT_TOKEN
    member, store = MemberFactory(), StoreFactory()
    partner_client = APIClient()
    _key, raw = partner_key_create(partner=Partner.objects.create(code="p", name="P"), name="test")
    partner_client.credentials(HTTP_AUTHORIZATION=f"Partner-Key {raw}")
    callers = {
        "/api/v1/pos/": client_for_key(store),
        "/api/v1/partner/": partner_client,  # a partner's key (programme.partners)
        "/api/v1/": client_for_member(member),
    }
    operations = list(_operations())
    assert len(operations) >= 30
    with database_down():
        for method, path, operation, example in operations:
            client = next(c for prefix, c in callers.items() if path.startswith(prefix))
            response = getattr(client, method)(path, example, format="json")
            assert_unavailable(response, f"{method} {path}")
            assert "503" in operation["responses"], f"{method} {path} does not document 503"
    # Back up: the next request reconnects.
    assert client_for_member(member).get("/api/v1/me/").status_code == 200


def test_a_connection_the_server_ended_answers_503_then_recovers(member_client):
    assert member_client.get("/api/v1/me/balances/").status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    with psycopg.connect(**params, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    assert_unavailable(member_client.get("/api/v1/me/balances/"))
    connection.close()  # what close_old_connections does at the next request (the test client skips it)
    assert member_client.get("/api/v1/me/balances/").status_code == 200


def test_a_database_error_in_a_middleware_answers_503_json(settings):
    settings.MIDDLEWARE = with_eager_user(settings.MIDDLEWARE)
    # The test client re-raises what a view let through; the server answers the 503 regardless.
    client = APIClient(raise_request_exception=False)
    client.cookies["sessionid"] = "x" * 32  # any session key: reading it needs the database
    with database_down():
        assert_unavailable(client.get("/api/v1/rewards/"))
        in_chinese = client.get("/api/v1/rewards/", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert in_chinese.status_code == 503 and "稍后重试" in in_chinese.json()["error"]["message"]


def test_a_url_under_the_api_that_is_no_route_answers_the_error_shape(member_client):
    response = member_client.post("/api/v1/rewards/-5/redeem/", {}, format="json")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
