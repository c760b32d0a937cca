"""Property-based requests generated from the live OpenAPI schema (schemathesis).

Every operation gets a handful of generated requests with real credentials: a member's
access token, or a store key with every action on /pos/. Some fit the schema (positive),
some break it on purpose (negative: wrong types, missing fields, values out of range).
Checks: no 5xx for anything a client can send, every status and content type the answer
has is documented for the operation, and every body matches the schema.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.services import store_key_create, tokens_issue
from loyalty.services import points_award
from loyalty.tests.factories import MemberFactory, StoreFactory
from rewards.tests.factories import CouponFactory, RewardFactory

pytestmark = pytest.mark.django_db(transaction=True)

# Per operation and mode: both modes over every operation stay under a minute.
MAX_EXAMPLES = {GenerationMode.POSITIVE: 6, GenerationMode.NEGATIVE: 3}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def credentials(live_server, django_user_model):
    from django.contrib.auth.models import Permission

    store = StoreFactory(code="sh001")
    member = MemberFactory(phone="+8613800138000")
    points_award(member=member, currency="points", amount=1000, reason="seed", idempotency_key="seed")
    RewardFactory(points_cost=10, stock=100)
    CouponFactory(member=member)
    user = django_user_model.objects.create_user("fuzz-till", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="adjust_points"))
    actions = ["lookup", "earn", "refund", "adjust", "verify_coupon", "checkout"]
    _key, raw = store_key_create(store=store, name="fuzz", actions=actions, acting_user=user)
    return {"member": member, "store": f"Api-Key {raw}"}


def _authorization(path: str, credentials: dict) -> str:
    """A store key for /pos/; otherwise a fresh member token per operation, so one operation's
    sign-out cannot hide the others; erasure gets a member of its own."""
    if path.startswith("/api/v1/pos/"):
        return credentials["store"]
    member = MemberFactory() if path == "/api/v1/me/erase/" else credentials["member"]
    return f"Bearer {tokens_issue(member=member).access}"


def test_every_operation_conforms_to_the_live_schema(live_server, credentials):
    # schemathesis' own pytest plugin does not run under pytest 9; its Python API does.
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/?format=json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    failures = []
    for mode in MAX_EXAMPLES:
        for operation in operations:
            failures.extend(_run(operation, mode, live_server.url, credentials))
    assert failures == [], "\n\n".join(failures)


def _run(operation, mode: GenerationMode, base_url: str, credentials: dict) -> list[str]:
    auth = _authorization(operation.path, credentials)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES[mode],
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case):
        case.call_and_validate(
            base_url=base_url,
            headers={"Authorization": auth},
            checks=CHECKS,
        )

    try:
        check()
    except (Exception, BaseExceptionGroup) as error:  # noqa: BLE001 - collect every failure, then report
        return [f"{mode} {operation.method.upper()} {operation.path}: {error}"]
    return []
