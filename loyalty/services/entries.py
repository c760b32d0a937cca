"""The ledger's ground floor: locking accounts, appending entries, opening and consuming lots.

Locking: every writer locks the member's account rows first (``SELECT ... FOR UPDATE``
in id order), then the lots it will touch, so the balance it decides on cannot change
under it. Entries are appended, never updated. Spending and expiry consume lots first in,
first out by ``expires_at`` then ``id`` and record which lots they took as allocations.

Every other module of ``loyalty.services`` builds on these; they change nothing by
themselves outside a caller's transaction.
"""

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Sequence

from django.db import connection
from django.db.models import Exists, F, OuterRef, Subquery
from django.db.models.signals import post_save
from django.utils.translation import gettext as _

from core.db import from_row, is_postgresql, prepared_cursor, select_list
from core.errors import LoyaltyError
from members.models import Member

from ..configuration import version_expression
from ..models import Account, Allocation, Currency, LedgerEntry, Lot, MemberTier, Order, OrderLine, ProgrammeVersion
from ..policies import expiry_policy

CURRENCIES: tuple[str, ...] = (Currency.POINTS, Currency.GROWTH)


def _fingerprint(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _lock_accounts(member_id: int, currencies: Sequence[str] = CURRENCIES) -> dict[str, Account]:
    """Lock the member's accounts in id order, opening any that do not exist yet."""

    def fetch() -> dict[str, Account]:
        rows = Account.objects.select_for_update().filter(member_id=member_id, currency__in=currencies).order_by("id")
        return {account.currency: account for account in rows}

    accounts = fetch()
    if len(accounts) < len(currencies):
        _open_accounts(member_id, currencies)
        accounts = fetch()
    return accounts


def _lock_members_accounts(
    member_ids: Iterable[int], currencies: Sequence[str] = CURRENCIES
) -> dict[int, dict[str, Account]]:
    """Several members' accounts, locked in member-id order, then account-id order within a
    member: the order every writer of more than one member uses (transfers, merges, refunds
    of a moved order), so no two of them can wait on each other."""
    return {member_id: _lock_accounts(member_id, currencies) for member_id in sorted(set(member_ids))}


def _open_accounts(member_id: int, currencies: Sequence[str]) -> None:
    """Open the member's accounts in ``currencies`` that do not exist yet: one
    ``INSERT ... ON CONFLICT DO NOTHING`` (a member's first earn opens both). A writer
    opening the same account at the same time waits for the other's commit and then
    inserts nothing; the caller locks what is there afterwards."""
    Account.objects.bulk_create(
        [Account(member_id=member_id, currency=currency) for currency in currencies], ignore_conflicts=True
    )


def _require_active(member_id: int) -> None:
    status = Member.objects.values_list("status", flat=True).get(pk=member_id)
    if status != Member.Status.ACTIVE:
        raise LoyaltyError(
            "member_inactive",
            _("This member is %(status)s and cannot earn or spend points. Reactivate the member first.")
            % {"status": Member.Status(status).label},
        )


def _new_entry(
    account: Account, *, kind: str, now: dt.datetime, amount: int = 0, pending_amount: int = 0, **fields
) -> LedgerEntry:
    """Apply a change to the locked account in memory and return its (unsaved) entry."""
    account.balance += amount
    account.pending += pending_amount
    account.updated_at = now
    return LedgerEntry(
        account=account,
        member_id=account.member_id,
        currency=account.currency,
        kind=kind,
        amount=amount,
        pending_amount=pending_amount,
        balance_after=account.balance,
        pending_after=account.pending,
        created_at=now,
        **fields,
    )


def _save_entry(account: Account, entry: LedgerEntry) -> LedgerEntry:
    entry.save()
    account.save(update_fields=["balance", "pending", "lifetime_earned", "lifetime_spent", "owed", "updated_at"])
    return entry


def _open_lots(account: Account, *, first: Lot | None = None) -> list[Lot]:
    """The account's available lots in spending order, locked; ``first`` goes to the front."""
    lots = list(
        Lot.objects.select_for_update()
        .filter(account=account, pending=False, remaining__gt=0)
        .order_by(F("expires_at").asc(nulls_last=True), "id")
    )
    if first is not None:
        lots.sort(key=lambda lot: lot.pk != first.pk)
    return lots


def _consume(entry: LedgerEntry, lots: Iterable[Lot], amount: int) -> int:
    """Take up to ``amount`` from ``lots`` in order for the saved ``entry``; return what was taken."""
    taken, touched, allocations = _take(entry, lots, amount)
    Lot.objects.bulk_update(touched, ["remaining"])
    Allocation.objects.bulk_create(allocations)
    return taken


def _take(entry: LedgerEntry, lots: Iterable[Lot], amount: int) -> tuple[int, list[Lot], list[Allocation]]:
    """:func:`_consume` in memory: what was taken, the lots changed, the (unsaved) allocations."""
    taken, allocations, touched = 0, [], []
    for lot in lots:
        if taken == amount:
            break
        take = min(lot.remaining, amount - taken)
        if take <= 0:
            continue
        lot.remaining -= take
        taken += take
        touched.append(lot)
        allocations.append(Allocation(entry=entry, lot=lot, amount=take))
    return taken, touched, allocations


def _open_lot(account: Account, entry: LedgerEntry, *, amount: int, pending: bool, available_at, earned_at) -> Lot:
    lot = _new_lot(account, entry, amount=amount, pending=pending, available_at=available_at, earned_at=earned_at)
    lot.save(force_insert=True)
    return lot


def _new_lot(account: Account, entry: LedgerEntry, *, amount: int, pending: bool, available_at, earned_at) -> Lot:
    """The (unsaved) lot ``entry`` opens in ``account``, expiring by the currency's policy."""
    return Lot(
        account=account,
        member_id=account.member_id,
        currency=account.currency,
        entry=entry,
        amount=amount,
        remaining=amount,
        pending=pending,
        available_at=available_at,
        expires_at=expiry_policy(account.currency).expires_at(earned_at),
        created_at=entry.created_at,
    )


def _replayed_entry(account: Account, idempotency_key: str | None, request_hash: str) -> LedgerEntry | None:
    if idempotency_key is None:
        return None
    entry = LedgerEntry.objects.filter(account=account, idempotency_key=idempotency_key).first()
    if entry is None:
        return None
    entry.replayed = True
    if entry.request_hash != request_hash:
        raise LoyaltyError(
            "idempotency_key_reused",
            _("This idempotency key was already used for a different request. Send a new key for a new request."),
        )
    return entry


# --- the earn's own statements: one lock read, one write ---------------------------------


def _lock_for_earn(member_id: int, now: dt.datetime) -> tuple[dict[str, Account], Member, bool, int | None]:
    """Lock the member's accounts (id order) and read, in the same statement, what the earn
    decides on: the member (status, birthday, tier row, unlocked), whether any lot is due
    to be released or expired at ``now``, and the programme version.

    Returns (accounts by currency, member, due, programme version). Opens missing accounts
    first (then a few more statements), as :func:`_lock_accounts`.
    """
    locked = _lock_reading(member_id, CURRENCIES, now, tier=True)
    due = any(account.release_due or account.expiry_due for account in locked.values())
    first = next(iter(locked.values()))
    return locked, first.member, due, first.programme_version


def _lock_reading(
    member_id: int, currencies: Sequence[str], now: dt.datetime, *, tier: bool = False, idempotency_key=None
) -> dict[str, Account]:
    """:func:`_lock_accounts`, reading in the same statement the member (``account.member``;
    with ``tier`` their tier row too), whether a lot is due (``release_due``,
    ``expiry_due``), the programme version (``programme_version``) and, with
    ``idempotency_key``, the id of the entry already written under it (``replay_id``)."""
    due_lots = Lot.objects.filter(account_id=OuterRef("pk"))
    annotations = {
        "release_due": Exists(due_lots.filter(pending=True, available_at__lte=now)),
        "expiry_due": Exists(due_lots.filter(pending=False, remaining__gt=0, expires_at__lte=now)),
        "programme_version": version_expression(),
    }
    if idempotency_key is not None:
        keyed = LedgerEntry.objects.filter(account_id=OuterRef("pk"), idempotency_key=idempotency_key)
        annotations["replay_id"] = Subquery(keyed.values("id")[:1])

    if is_postgresql():
        return _lock_reading_sql(member_id, currencies, now, tier=tier, idempotency_key=idempotency_key)

    def fetch() -> list[Account]:
        related = ("member", "member__tier_state") if tier else ("member",)
        return list(
            Account.objects.select_for_update(of=("self",))
            .select_related(*related)
            .filter(member_id=member_id, currency__in=currencies)
            .annotate(**annotations)
            .order_by("id")
        )

    rows = fetch()
    if len(rows) < len(currencies):
        _open_accounts(member_id, currencies)
        rows = fetch()
    return {account.currency: account for account in rows}


_LOCK_SQL: dict[tuple, tuple[str, list, list, list]] = {}


def _lock_sql(tier: bool, keyed: bool) -> tuple[str, list, list, list]:
    """The lock statement of :func:`_lock_reading_sql` and the attnames of its three row
    parts (account, member, tier row), worked out once per process: building and compiling
    the same queryset took about half the earn's Python time (bench/README.md)."""
    key = (tier, keyed)
    if key not in _LOCK_SQL:
        quote = connection.ops.quote_name
        account_cols, account_names = select_list(Account, "a")
        member_cols, member_names = select_list(Member, "m")
        tier_cols, tier_names = select_list(MemberTier, "t") if tier else ([], [])
        lot = quote(Lot._meta.db_table)
        extras = [
            f"EXISTS (SELECT 1 FROM {lot} l WHERE l.account_id = a.id AND l.pending AND l.available_at <= %(now)s)",
            f"EXISTS (SELECT 1 FROM {lot} l WHERE l.account_id = a.id AND NOT l.pending AND l.remaining > 0 "
            "AND l.expires_at <= %(now)s)",
            f"(SELECT v.version FROM {quote(ProgrammeVersion._meta.db_table)} v WHERE v.id = 1)",
            (
                f"(SELECT e.id FROM {quote(LedgerEntry._meta.db_table)} e "
                "WHERE e.account_id = a.id AND e.idempotency_key = %(key)s LIMIT 1)"
                if keyed
                else "NULL"
            ),
        ]
        joins = f" LEFT JOIN {quote(MemberTier._meta.db_table)} t ON t.{quote('member_id')} = m.id" if tier else ""
        sql = (
            f"SELECT {', '.join(account_cols + member_cols + tier_cols + extras)} "
            f"FROM {quote(Account._meta.db_table)} a JOIN {quote(Member._meta.db_table)} m ON m.id = a.member_id"
            f"{joins} WHERE a.member_id = %(member)s AND a.currency = ANY(%(currencies)s) ORDER BY a.id FOR UPDATE OF a"
        )
        _LOCK_SQL[key] = (sql, account_names, member_names, tier_names)
    return _LOCK_SQL[key]


def _lock_reading_sql(
    member_id: int, currencies: Sequence[str], now: dt.datetime, *, tier: bool, idempotency_key
) -> dict[str, Account]:
    """:func:`_lock_reading` on PostgreSQL: the same statement the ORM builds, kept as text
    and turned into model instances with ``from_db`` (what the ORM does with its rows)."""
    sql, account_names, member_names, tier_names = _lock_sql(tier, idempotency_key is not None)
    params = {"member": member_id, "currencies": list(currencies), "now": now, "key": idempotency_key}

    def fetch() -> list[tuple]:
        with prepared_cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    rows = fetch()
    if len(rows) < len(currencies):
        _open_accounts(member_id, currencies)
        rows = fetch()
    accounts: dict[str, Account] = {}
    n_account, n_member, n_tier = len(account_names), len(member_names), len(tier_names)
    member = None
    for row in rows:
        account = from_row(Account, account_names, row[:n_account])
        if member is None:  # the same member on every row: one instance, as the callers use it
            member = from_row(Member, member_names, row[n_account : n_account + n_member])
        if tier and "tier_state" not in member._state.fields_cache:
            values = row[n_account + n_member : n_account + n_member + n_tier]
            state = from_row(MemberTier, tier_names, values) if values[0] is not None else None
            member._state.fields_cache["tier_state"] = state
            if state is not None:
                state._state.fields_cache["member"] = member
        account._state.fields_cache["member"] = member
        account.release_due, account.expiry_due, account.programme_version, account.replay_id = row[-4:]
        accounts[account.currency] = account
    return accounts


def _require_status_active(member: Member) -> None:
    """:func:`_require_active` for a member row the caller has just read."""
    if member.status != Member.Status.ACTIVE:
        raise LoyaltyError(
            "member_inactive",
            _("This member is %(status)s and cannot earn or spend points. Reactivate the member first.")
            % {"status": Member.Status(member.status).label},
        )


ACCOUNT_FIGURES = ["balance", "pending", "lifetime_earned", "lifetime_spent", "owed", "updated_at"]


def _write_credits(
    accounts: Sequence[Account],
    entries: Sequence[LedgerEntry],
    lots: Sequence[Lot],
    *,
    order: Order | None = None,
    lines: Sequence[OrderLine] = (),
    config=None,
) -> None:
    """Save new ``entries`` (at most one per account), the ``lots`` they open (``lot.entry``
    set, same order) and the ``accounts``' figures, which :func:`_new_entry` changed in memory;
    with ``order`` (unsaved) that order first, its ``lines`` and the entries' ``order``.
    ``config``, the programme configuration the earn ran under, goes with the order's
    ``post_save`` as ``programme`` (its listeners read their facts from it, not the database).

    PostgreSQL: one statement (:func:`_write_credits_sql`); elsewhere three to five
    (:func:`_write_credits_orm`). Both write the same rows (loyalty/tests/test_earn_statements.py);
    the statement stays for the earn's statement count and its figure (bench/README.md). The
    order's unique store + number raises IntegrityError from either, as ``Order.save`` would.
    """
    if not is_postgresql():
        _write_credits_orm(accounts, entries, lots, order=order, lines=lines)
        return
    _write_credits_sql(accounts, entries, lots, order=order, lines=lines)
    if order is not None:
        # What Order.save sends; its listeners (badges) count on it for every new order.
        post_save.send(
            sender=Order, instance=order, created=True, update_fields=None, raw=False, using="default", programme=config
        )


def _write_credits_orm(
    accounts: Sequence[Account],
    entries: Sequence[LedgerEntry],
    lots: Sequence[Lot],
    *,
    order: Order | None = None,
    lines: Sequence[OrderLine] = (),
) -> None:
    if order is not None:
        order.save(force_insert=True)
        for item in [*lines, *entries]:
            item.order = order
        OrderLine.objects.bulk_create(lines)
    if not entries:
        return
    LedgerEntry.objects.bulk_create(entries)
    Lot.objects.bulk_create(lots)  # each lot's entry has its id now
    Account.objects.bulk_update(accounts, ACCOUNT_FIGURES)


def _json_value(value):
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


_COLUMNS: dict[tuple, tuple[list, list[str]]] = {}


def _record(model, obj, skip: tuple[str, ...] = ()) -> tuple[list[str], dict]:
    """The columns of ``model`` but the key and ``skip`` (attnames), with their SQL types, and ``obj``'s values."""
    key = (model, skip, connection.vendor)
    if key not in _COLUMNS:  # the same for every row: worked out once per process
        fields = [f for f in model._meta.concrete_fields if not f.primary_key and f.attname not in skip]
        _COLUMNS[key] = (fields, [f"{connection.ops.quote_name(f.column)} {f.db_type(connection)}" for f in fields])
    fields, types = _COLUMNS[key]
    return types, {f.column: f.get_prep_value(getattr(obj, f.attname)) for f in fields}


def _saved(obj, pk: int) -> None:
    obj.pk = pk
    obj._state.adding, obj._state.db = False, "default"


def _write_credits_sql(
    accounts: Sequence[Account],
    entries: Sequence[LedgerEntry],
    lots: Sequence[Lot],
    *,
    order: Order | None = None,
    lines: Sequence[OrderLine] = (),
) -> None:
    """:func:`_write_credits` in one PostgreSQL statement: data-modifying CTEs (the order,
    its lines, the entries, the lots joined to the new entries by account, one entry per
    account; the accounts), the rows sent as JSON documents."""
    quote = connection.ops.quote_name

    def names(types: list[str]) -> list[str]:
        return [spec.split('" ', 1)[0] + '"' for spec in types]  # quoted names never hold '" '

    def insert(model, alias: str, rows: Sequence, skip: tuple[str, ...], extra: str, returning: str) -> str:
        types = _record(model, rows[0], skip)[0]
        cols = names(types)
        params.append(json.dumps([_record(model, row, skip)[1] for row in rows], default=_json_value))
        extra_cols, extra_values, joins = "", "", ""
        if extra:  # (column, value, join)
            column, value, join = extra
            extra_cols, extra_values, joins = f", {column}", f", {value}", f" {join}"
        return (
            f"{alias} AS (INSERT INTO {quote(model._meta.db_table)} ({', '.join(cols)}{extra_cols}) "
            f"SELECT {', '.join(f'v.{c}' for c in cols)}{extra_values} "
            f"FROM json_to_recordset(%s::json) AS v({', '.join(types)}){joins} RETURNING {returning})"
        )

    params: list = []
    ctes = []
    by_order = ("order_id",) if order is not None else ()
    if order is not None:
        ctes.append(insert(Order, "o", [order], (), "", "id"))
        if lines:
            ctes.append(insert(OrderLine, "ol", lines, by_order, ("order_id", "o.id", "CROSS JOIN o"), "id"))
    if entries:
        ctes.append(
            insert(
                LedgerEntry,
                "e",
                entries,
                by_order,
                ("order_id", "o.id", "CROSS JOIN o") if order is not None else "",
                "id, account_id",
            )
        )
        if lots:
            by_entry = ("entry_id", "e.id", "JOIN e ON e.account_id = v.account_id")
            ctes.append(insert(Lot, "l", lots, ("entry_id",), by_entry, "id, entry_id"))
        account_fields = [Account._meta.get_field(name) for name in ["id", *ACCOUNT_FIGURES]]
        account_types = [f"{quote(f.column)} {f.db_type(connection)}" for f in account_fields]
        sets = ", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in account_fields[1:])
        ctes.append(
            f"a AS (UPDATE {quote(Account._meta.db_table)} AS t SET {sets} "
            f"FROM json_to_recordset(%s::json) AS v({', '.join(account_types)}) "
            # The ids again as an array: the planner guesses 100 rows for a JSON record set
            # and would scan the whole table to hash-join them; = ANY probes the key.
            "WHERE t.id = v.id AND t.id = ANY(%s::bigint[]) RETURNING t.id)"
        )
        account_rows = [{f.column: f.get_prep_value(getattr(a, f.attname)) for f in account_fields} for a in accounts]
        params += [json.dumps(account_rows, default=_json_value), [a.pk for a in accounts]]
    order_id = "(SELECT id FROM o)" if order is not None else "NULL"
    if entries:
        lot_id = "l.id" if lots else "NULL"
        lot_join = " LEFT JOIN l ON l.entry_id = e.id" if lots else ""
        select = f"SELECT {order_id}, e.account_id, e.id, {lot_id} FROM e{lot_join}"
    else:
        select = f"SELECT {order_id}, NULL, NULL, NULL"
    with prepared_cursor() as cursor:
        cursor.execute(f"WITH {', '.join(ctes)} {select}", params)
        rows = cursor.fetchall()
    if order is not None:
        _saved(order, rows[0][0])
        for line in lines:
            line.order = order
        for entry in entries:
            entry.order = order
    ids = {account_id: (entry_id, lot_id) for _order_id, account_id, entry_id, lot_id in rows}
    for entry in entries:
        _saved(entry, ids[entry.account_id][0])
    for lot in lots:
        _saved(lot, ids[lot.account_id][1])
        lot.entry_id = lot.entry.pk


def _write_debit(
    account: Account, entry: LedgerEntry, touched: Sequence[Lot], allocations: Sequence[Allocation]
) -> None:
    """Save a new spending ``entry``, the account's figures, the ``touched`` lots' remainders
    and the ``allocations`` (``_take``'s plan): one statement on PostgreSQL
    (:func:`_write_debit_sql`), four elsewhere (:func:`_write_debit_orm`); both write the same
    rows (rewards/tests/test_hot_statements.py)."""
    if is_postgresql():
        _write_debit_sql(account, entry, touched, allocations)
    else:
        _write_debit_orm(account, entry, touched, allocations)


def _write_debit_orm(account: Account, entry: LedgerEntry, touched: Sequence[Lot], allocations: Sequence[Allocation]):
    entry.save(force_insert=True)
    Account.objects.bulk_update([account], ACCOUNT_FIGURES)
    Lot.objects.bulk_update(touched, ["remaining"])
    Allocation.objects.bulk_create(allocations)  # each allocation's entry has its id now


def _write_debit_sql(account: Account, entry: LedgerEntry, touched: Sequence[Lot], allocations: Sequence[Allocation]):
    quote = connection.ops.quote_name
    entry_types, entry_row = _record(LedgerEntry, entry)
    entry_cols = [spec.split('" ', 1)[0] + '"' for spec in entry_types]
    account_fields = [Account._meta.get_field(name) for name in ["id", *ACCOUNT_FIGURES]]
    account_types = [f"{quote(f.column)} {f.db_type(connection)}" for f in account_fields]
    account_row = {f.column: f.get_prep_value(getattr(account, f.attname)) for f in account_fields}
    sets = ", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in account_fields[1:])
    sql = (
        f"WITH e AS (INSERT INTO {quote(LedgerEntry._meta.db_table)} ({', '.join(entry_cols)}) "
        f"SELECT {', '.join(f'v.{c}' for c in entry_cols)} "
        f"FROM json_to_recordset(%s::json) AS v({', '.join(entry_types)}) RETURNING id), "
        f"a AS (UPDATE {quote(Account._meta.db_table)} AS t SET {sets} "
        # "t.id = %s" and "= ANY": the key probed, not the table scanned (see _write_credits_sql).
        f"FROM json_to_recordset(%s::json) AS v({', '.join(account_types)}) WHERE t.id = v.id AND t.id = %s "
        "RETURNING t.id), "
        f"l AS (UPDATE {quote(Lot._meta.db_table)} AS t SET remaining = v.remaining "
        "FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, remaining) WHERE t.id = v.id AND t.id = ANY(%s::bigint[]) "
        "RETURNING t.id), "
        f"al AS (INSERT INTO {quote(Allocation._meta.db_table)} (entry_id, lot_id, amount) "
        "SELECT e.id, v.lot_id, v.amount FROM e, unnest(%s::bigint[], %s::bigint[]) AS v(lot_id, amount) "
        "RETURNING id) "
        "SELECT (SELECT id FROM e), ARRAY(SELECT id FROM al ORDER BY id)"
    )
    params = [
        json.dumps([entry_row], default=_json_value),
        json.dumps([account_row], default=_json_value),
        account.pk,
        [lot.pk for lot in touched],
        [lot.remaining for lot in touched],
        [lot.pk for lot in touched],
        [a.lot.pk for a in allocations],
        [a.amount for a in allocations],
    ]
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        entry_id, allocation_ids = cursor.fetchone()
    entry.pk = entry_id
    entry._state.adding, entry._state.db = False, "default"
    for allocation, pk in zip(allocations, sorted(allocation_ids), strict=True):
        allocation.pk, allocation.entry_id = pk, entry_id
