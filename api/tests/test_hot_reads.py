"""The reads every API request makes, by one prepared statement on PostgreSQL (issue 18):
the token or store key with its related rows, the member a till names. They must give the
same instances as the ORM queries they replace, JSON columns included, and refuse the same."""

import pytest
from django.db import connection
from django.forms.models import model_to_dict

from api import authentication
from api.models import ApiToken, StoreApiKey, secret_hash
from api.services import staff_token_create, store_key_create, tokens_issue
from api.views.common import member_by_number
from core.db import prepared_first
from core.errors import LoyaltyError
from members.models import Member

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="the prepared reads are PostgreSQL's"),
]


@pytest.fixture(autouse=True, params=["prepared", "unprepared"])
def preparing(request, settings):
    """Each read both ways: prepared (a direct connection) and as behind a transaction pooler."""
    settings.DATABASE_PREPARED_STATEMENTS = request.param == "prepared"
    return request.param


def _same(a, b) -> bool:
    return type(a) is type(b) and model_to_dict(a) == model_to_dict(b) and a.pk == b.pk


def test_a_store_key_reads_as_the_orm_reads_it(store, adjuster):
    key, raw = store_key_create(store=store, name="till", actions=["earn", "refund"], acting_user=adjuster)
    read = authentication._store_key(secret_hash(raw))
    orm = StoreApiKey.objects.select_related("store", "acting_user").get(pk=key.pk)
    assert _same(read, orm) and _same(read.store, orm.store) and _same(read.acting_user, orm.acting_user)
    assert read.actions == ["earn", "refund"]  # a list, not the JSON text ("ref" in it would be true)
    assert "ref" not in read.actions
    assert authentication._store_key(secret_hash(raw + "x")) is None


def test_a_member_token_and_a_staff_token_read_as_the_orm_reads_them(member, adjuster):
    pair = tokens_issue(member=member)
    token = authentication._bearer_token(secret_hash(pair.access))
    orm = ApiToken.objects.select_related("member", "user").get(key_hash=secret_hash(pair.access))
    assert _same(token, orm) and _same(token.member, orm.member) and token.user is None
    # A refresh token is not a bearer token.
    assert authentication._bearer_token(secret_hash(pair.refresh)) is None
    _staff, raw = staff_token_create(username="supervisor", password="not-a-real-password-42")
    read = authentication._bearer_token(secret_hash(raw))
    assert read.kind == ApiToken.Kind.STAFF and read.member is None and _same(read.user, adjuster)


def test_the_member_a_till_names_and_the_refusals(member):
    found = member_by_number(member.member_number)
    assert _same(found, Member.objects.get(pk=member.pk))
    with pytest.raises(LoyaltyError) as missing:
        member_by_number("8000000000")
    assert missing.value.code == "member_not_found"


def _prepared_count() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", ['%"member_number" = $1%']
        )
        return cursor.fetchone()[0]


def test_each_read_is_one_statement_prepared_once_per_connection(member, django_assert_num_queries, preparing):
    before = _prepared_count()
    prepared_first(Member, member_number=member.member_number)
    with django_assert_num_queries(1):
        found = prepared_first(Member, member_number=member.member_number)
    assert found.pk == member.pk
    after = _prepared_count()
    if preparing == "prepared":
        assert after == 1 and after - before <= 1  # prepared at most once, then reused
    else:
        assert after == before  # nothing prepared behind a transaction pooler
