import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_schema_is_valid_openapi_with_every_endpoint(tmp_path):
    out = tmp_path / "schema.yaml"
    # --validate checks it against the OpenAPI 3 spec; --fail-on-warn refuses any guesswork
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    for path in ("/api/v1/pos/orders/", "/api/v1/me/entries/", "/api/v1/rewards/{id}/redeem/", "/api/v1/auth/otp/"):
        assert f"{path}:" in text


def test_every_operation_documents_its_errors_with_an_example():
    schema = APIClient().get("/api/schema/?format=json").json()
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            errors = {code: r for code, r in operation["responses"].items() if code.startswith(("4", "5"))}
            assert errors, f"{method} {path} documents no error"
            for code, response in errors.items():
                content = response["content"]["application/json"]
                assert content["schema"]["$ref"].endswith("/Error")
                assert content["examples"], f"{method} {path} {code} has no example"


def test_docs_page_needs_nothing_from_outside():
    page = APIClient().get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/api/v1/pos/coupons/verify/" in html and "coupon_used" in html
    assert "<script" not in html and "jsdelivr" not in html and "<link" not in html


def test_swagger_ui_points_at_the_schema():
    page = APIClient().get("/api/docs/swagger/")
    assert page.status_code == 200
    assert b"/api/schema/" in page.content
    # Served from our own static files, not a CDN the reader may not reach.
    assert b"/static/vendor/swagger-ui/swagger-ui-bundle.js" in page.content and b"cdn" not in page.content


def test_cors_allows_the_mini_program_origin(settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://mp.example.com"]
    response = APIClient().options(
        "/api/v1/auth/otp/",
        HTTP_ORIGIN="https://mp.example.com",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="idempotency-key",
    )
    assert response["Access-Control-Allow-Origin"] == "https://mp.example.com"
    assert "idempotency-key" in response["Access-Control-Allow-Headers"]
    other = APIClient().get("/api/v1/rewards/", HTTP_ORIGIN="https://evil.example.com")
    assert "Access-Control-Allow-Origin" not in other
