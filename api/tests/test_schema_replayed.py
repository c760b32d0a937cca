"""The schema declares the Idempotent-Replayed header where a replay can carry it (the SDK reads it)."""

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def _schema():
    return APIClient().get("/api/schema/?format=json").json()


def test_replayed_header_is_declared_on_the_answers_a_retry_can_replay():
    schema = _schema()
    redeem = schema["paths"]["/api/v1/rewards/{id}/redeem/"]["post"]["responses"]
    verify = schema["paths"]["/api/v1/pos/coupons/verify/"]["post"]["responses"]
    for responses, status in ((redeem, "201"), (redeem, "409"), (redeem, "422"), (verify, "200"), (verify, "409")):
        header = responses[status]["headers"]["Idempotent-Replayed"]
        assert header["schema"] == {"type": "string", "enum": ["true"]}
    # answers that are never kept for a key: refused before the view, or a server error
    for status in ("401", "403", "429", "503"):
        assert "Idempotent-Replayed" not in redeem[status].get("headers", {})


def test_operations_without_an_idempotency_key_declare_no_replay():
    for path, item in _schema()["paths"].items():
        for operation in item.values():
            takes_key = any(p["name"] == "Idempotency-Key" for p in operation.get("parameters", []))
            for response in operation["responses"].values():
                if not takes_key:
                    assert "Idempotent-Replayed" not in response.get("headers", {}), path
