"""The ledger's write path: every balance change in the platform goes through ``post``.

Callers run inside their own transaction (``db.session.in_transaction``), so postings,
balances and the business rows they belong to commit or roll back together.
Accounts are locked with one ``SELECT ... ORDER BY id FOR UPDATE``, i.e. always in
primary-key order, so concurrent transfers cannot deadlock on each other.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import InsufficientFunds, InvariantViolation
from app.core.logs import request_id_var
from app.ledger.rules import AccountKind, AccountRef, Leg, check_entry
from db.models import JournalEntry, Posting
from db.raw import Arrays, columns, driver

# Lock accounts ($1 user ids, $2 currencies, $3 kinds), making the missing ones: those
# that exist locked in primary-key order (every locker of several accounts takes them in
# this one order, so two of them never deadlock), new ones locked by their INSERT.
# ``ACCOUNTS_LOCKED`` selects both (id, user_id, currency, kind, balance). An account
# another transaction makes after the statement's snapshot is missing from the answer.
# Each wanted account is found through the unique index, whatever the table's size or
# statistics: ``user_id = $x`` for a user's, ``user_id IS NULL`` for a system account's
# (``IS NOT DISTINCT FROM`` cannot use an index: it scanned every account), and the
# LIMIT keeps the lookup a nested loop the planner cannot turn into a scan and hash join.
_ACCOUNT_CTES = """
    wanted AS (
        SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]{more})
                      AS w(user_id, currency, kind{named})
    ), existing AS (
        SELECT found.id, w.user_id, w.currency, w.kind
        FROM wanted w CROSS JOIN LATERAL (
            SELECT a.id FROM ledger_accounts a
            WHERE a.user_id = w.user_id AND a.currency = w.currency AND a.kind = w.kind
            UNION ALL
            SELECT a.id FROM ledger_accounts a
            WHERE w.user_id IS NULL AND a.user_id IS NULL AND a.currency = w.currency
              AND a.kind = w.kind
            LIMIT 1
        ) AS found
    ), made AS (
        INSERT INTO ledger_accounts (user_id, currency, kind)
        SELECT w.user_id, w.currency, w.kind
        FROM wanted w
        WHERE NOT EXISTS (
            SELECT 1 FROM existing e
            WHERE e.user_id IS NOT DISTINCT FROM w.user_id AND e.currency = w.currency
              AND e.kind = w.kind
        ){made_only_if}
        ON CONFLICT DO NOTHING
        RETURNING id, user_id, currency, kind, balance
    ), locked AS (
        SELECT a.id, a.user_id, a.currency, a.kind, a.balance
        FROM ledger_accounts a
        WHERE a.id = ANY(ARRAY(SELECT id FROM existing))
        ORDER BY a.id
        FOR UPDATE OF a
    )
"""
ACCOUNT_CTES = _ACCOUNT_CTES.format(more="", named="", made_only_if="")
ACCOUNTS_LOCKED = "SELECT * FROM locked UNION ALL SELECT * FROM made"
_LOCK_SQL = f"WITH {ACCOUNT_CTES} {ACCOUNTS_LOCKED}"
# The same for holds, with $4: per wanted account the least amount a hold of its (user,
# currency) takes. Of the missing accounts only a HELD one is made, and only when its
# AVAILABLE one covers that amount: an order refused for funds makes no account.
_HOLD_ACCOUNT_CTES = _ACCOUNT_CTES.format(
    more=", $4::numeric[]",
    named=", least",
    made_only_if="""
          AND w.kind = 'HELD' AND EXISTS (
            SELECT 1 FROM ledger_accounts s
            WHERE s.user_id = w.user_id AND s.currency = w.currency AND s.kind = 'AVAILABLE'
              AND s.balance >= w.least
        )""",
)
_LOCK_FOR_HOLDS_SQL = f"WITH {_HOLD_ACCOUNT_CTES} {ACCOUNTS_LOCKED}"


@dataclass(frozen=True, slots=True)
class LockedAccount:
    id: int
    balance: Decimal


@dataclass(frozen=True, slots=True)
class Posted:
    entry_id: int
    balances: dict[AccountRef, Decimal]  # balance after the entry


def locked_accounts(rows: Iterable[Any]) -> dict[AccountRef, LockedAccount]:
    """``ACCOUNTS_LOCKED``' rows (id, user_id, currency, kind, balance) by account."""
    return {
        AccountRef(r["currency"], AccountKind(r["kind"]), r["user_id"]): LockedAccount(
            r["id"], r["balance"]
        )
        for r in rows
    }


def lock_accounts_parameters(refs: Iterable[AccountRef]) -> list[list[Any]]:
    """``ACCOUNT_CTES``' $1..$3 (user ids, currencies, kinds) for these accounts. Exchange
    custody is not found this way (``app.ledger.custody`` locks it): refused."""
    wanted = list(refs)
    if any(r.exchange_account_id is not None for r in wanted):
        raise InvariantViolation("exchange custody accounts are locked by app.ledger.custody")
    return columns(((r.user_id, r.currency, r.kind.value) for r in wanted), 3)


async def lock_accounts(
    session: AsyncSession, refs: Iterable[AccountRef]
) -> dict[AccountRef, LockedAccount]:
    """Get or create the accounts and lock them (one statement: ``_LOCK_SQL``; again if
    another transaction made one of them meanwhile)."""
    wanted = list(set(refs))
    parameters = lock_accounts_parameters(wanted)
    connection = await driver(session)
    found = locked_accounts(await connection.fetch(_LOCK_SQL, *parameters))
    if len(found) < len(wanted):
        found = locked_accounts(await connection.fetch(_LOCK_SQL, *parameters))
    if set(found) != set(wanted):
        raise InvariantViolation(f"ledger accounts missing: {set(wanted) - set(found)}")
    return found


def _combine(legs: Iterable[Leg]) -> dict[AccountRef, Decimal]:
    per_account: dict[AccountRef, Decimal] = defaultdict(Decimal)
    for leg in legs:
        per_account[leg.account] += leg.amount
    return {ref: amount for ref, amount in per_account.items() if amount != 0}


async def post(
    session: AsyncSession,
    *,
    kind: str,
    legs: Sequence[Leg],
    reference: str | None = None,
    memo: str | None = None,
) -> Posted:
    """Write one balanced journal entry and apply it to the balances (a ``JournalBatch``
    of one: two statements, locking the accounts and writing).

    Refuses (``InsufficientFunds``, nothing written) when a user account would go
    negative; the CHECK constraint on ledger_accounts is the backstop."""
    journal = JournalBatch()
    number = await journal.post(session, kind=kind, legs=legs, reference=reference, memo=memo)
    entry_ids = await journal.flush(session)
    return Posted(
        entry_id=entry_ids[number],
        balances={ref: journal.accounts[ref].balance for ref in _combine(legs)},
    )


def user_account(
    user_id: int, currency: str, kind: AccountKind = AccountKind.AVAILABLE
) -> AccountRef:
    return AccountRef(currency=currency, kind=kind, user_id=user_id)


def system_account(currency: str, kind: AccountKind) -> AccountRef:
    return AccountRef(currency=currency, kind=kind)


@dataclass(frozen=True, slots=True)
class HoldRequest:
    user_id: int
    currency: str
    amount: Decimal
    reference: str
    request_id: str | None = None


def hold_accounts(requests: Iterable[HoldRequest]) -> set[AccountRef]:
    """The accounts a hold moves between: AVAILABLE and HELD of each request."""
    return {
        user_account(r.user_id, r.currency, kind)
        for r in requests
        for kind in (AccountKind.AVAILABLE, AccountKind.HELD)
    }


async def lock_for_holds(
    session: AsyncSession, requests: Sequence[HoldRequest]
) -> tuple[dict[AccountRef, LockedAccount], list[bool]]:
    """Lock the AVAILABLE and HELD accounts of the requests (one statement, as
    ``lock_accounts``) and tell which requests AVAILABLE covers (``affordable``). The
    accounts a funded request needs are all there; a refused one makes none (an account
    that exists is locked all the same)."""
    least: dict[AccountRef, Decimal] = {}
    for r in requests:
        held = user_account(r.user_id, r.currency, AccountKind.HELD)
        least[held] = min(least.get(held, r.amount), r.amount)
    wanted = list(hold_accounts(requests))
    parameters = lock_accounts_parameters(wanted)
    amounts = [least.get(ref) for ref in wanted]  # None for AVAILABLE: never made
    connection = await driver(session)
    found = locked_accounts(await connection.fetch(_LOCK_FOR_HOLDS_SQL, *parameters, amounts))
    funded = affordable(found, requests)
    # A deposit committed after the statement's snapshot funds a request whose HELD
    # account the statement did not make: make it now.
    missing = {
        user_account(r.user_id, r.currency, AccountKind.HELD)
        for r, ok in zip(requests, funded, strict=True)
        if ok
    } - set(found)
    if missing:
        found.update(await lock_accounts(session, missing))
    return found, funded


def affordable(
    accounts: dict[AccountRef, LockedAccount], requests: Sequence[HoldRequest]
) -> list[bool]:
    """Whether AVAILABLE covers each request, taken in order (a refused one takes
    nothing from the ones after it); a missing account holds nothing."""
    left = {ref: account.balance for ref, account in accounts.items()}
    answers = []
    for r in requests:
        available = user_account(r.user_id, r.currency)
        ok = left.get(available, 0) >= r.amount
        if ok:
            left[available] -= r.amount
        answers.append(ok)
    return answers


class EntryRow(NamedTuple):
    """A journal entry as ``JOURNAL_CTES`` writes it (its id taken there)."""

    kind: str
    reference: str | None
    memo: str | None
    request_id: str | None


class PostingRow(NamedTuple):
    """A posting as ``JOURNAL_CTES`` writes it: ``n``, its entry's number in the batch."""

    n: int
    account_id: int
    currency: str
    amount: Decimal
    balance_after: Decimal


ENTRIES = Arrays("app.ledger.journal.ENTRIES", EntryRow, JournalEntry)
POSTINGS = Arrays("app.ledger.journal.POSTINGS", PostingRow, Posting, extra={"n": "bigint"})


# The journal's writes as common table expressions (``ids``, ``entries``, ``written``,
# ``changed``) on parameters $1..$11: ``_JOURNAL_SQL`` alone, or the start of a larger
# statement that writes other rows of the same transaction with them (``Pending``).
_CHANGED = 1 + len(ENTRIES) + len(POSTINGS)  # the accounts' ids and changes
JOURNAL_CTES = f"""
    ids AS (
        SELECT n, nextval(pg_get_serial_sequence('journal_entries', 'id')) AS id
        FROM generate_series(1, cardinality($1::text[])) AS n
    ), entries AS (
        INSERT INTO journal_entries (id, {", ".join(ENTRIES.columns)})
        OVERRIDING SYSTEM VALUE
        SELECT ids.id, {", ".join(f"e.{c}" for c in ENTRIES.columns)}
        FROM unnest({ENTRIES.parameters(1)}) WITH ORDINALITY
             AS e({ENTRIES.names}, n)
        JOIN ids USING (n)
        RETURNING 1
    ), written AS (
        INSERT INTO postings (entry_id, {", ".join(POSTINGS.columns)})
        SELECT ids.id, {", ".join(f"p.{c}" for c in POSTINGS.columns)}
        FROM unnest({POSTINGS.parameters(1 + len(ENTRIES))})
             AS p({POSTINGS.names})
        JOIN ids USING (n)
        RETURNING 1
    ), changed AS (
        UPDATE ledger_accounts AS a SET balance = a.balance + d.amount
        FROM unnest(${_CHANGED}::bigint[], ${_CHANGED + 1}::numeric[]) AS d(id, amount)
        WHERE a.id = d.id
        RETURNING 1
    )
"""  # noqa: S608 (no input in the text: column names and parameter numbers)
JOURNAL_PARAMETERS = _CHANGED + 1
JOURNAL_COUNTS = """
    (SELECT count(*) FROM entries) AS entries, (SELECT count(*) FROM written) AS written,
    (SELECT count(*) FROM changed) AS changed
"""
_JOURNAL_SQL = " ".join(
    ("WITH", JOURNAL_CTES, "SELECT n, id,", JOURNAL_COUNTS, "FROM ids ORDER BY n")
)


@dataclass(frozen=True, slots=True)
class Pending:
    """A ``JournalBatch``'s writes, taken out to run in a statement of the caller's:
    ``parameters`` are $1..$11 of ``JOURNAL_CTES``; ``check`` the row with the
    ``JOURNAL_COUNTS`` columns."""

    parameters: list[Any]
    entries: int
    postings: int
    changed: int

    def check(self, row: Any) -> None:
        if (row["entries"], row["written"], row["changed"]) != (
            self.entries,
            self.postings,
            self.changed,
        ):
            raise InvariantViolation("journal entries were not written exactly once")


@dataclass(frozen=True, slots=True)
class _Entry:
    kind: str
    reference: str | None
    memo: str | None
    request_id: str | None
    amounts: dict[AccountRef, Decimal]  # per account (``_combine``)


class JournalBatch:
    """Journal entries posted in memory during one transaction and written together by
    ``flush``: one statement for the entries, their postings and the balances, however
    many there are: the ledger's one write path (``post`` is a batch of one). ``post``
    checks each entry against the balances as the entries before it left them; accounts
    are locked on first use (``lock_accounts``) unless the caller locked them already and
    handed them over with ``adopt``.

    A writer that posts many entries in one transaction (the matching engine's batches, a
    batch of order holds) flushes once at the end. Nothing is written until ``flush``, so
    nothing else in the transaction may read these balances or postings before it.

    ``defer`` records an entry without locking its accounts yet, for a writer whose
    entries follow from funds it already holds (a trade settling two holds): it locks
    what they use all at once, in primary-key order (``unlocked``, ``adopt``, ``settle``),
    instead of a round trip for each new account in the order its events come. Deferred
    entries keep their place: a ``post`` after them settles them first."""

    def __init__(self) -> None:
        self.accounts: dict[AccountRef, LockedAccount] = {}
        self._start: dict[AccountRef, Decimal] = {}  # balances when locked
        self._entries: list[EntryRow] = []
        self._postings: list[PostingRow] = []
        self._deferred: list[_Entry] = []

    def adopt(self, accounts: dict[AccountRef, LockedAccount]) -> None:
        """Accounts this transaction has locked (balances as locked)."""
        for ref, account in accounts.items():
            if ref not in self.accounts:
                self.accounts[ref] = account
                self._start[ref] = account.balance

    async def post(self, session: AsyncSession, **entry: Any) -> int:
        """Record one balanced entry (``defer``'s arguments); its number in this batch
        (``flush`` maps numbers to entry ids). Refuses (``InsufficientFunds``, nothing
        recorded) when a user account would go negative. Entries deferred before it are
        settled first (their accounts locked with its own, in one statement)."""
        number = self.defer(**entry)
        await self.lock_and_settle(session)
        return number

    def defer(
        self,
        *,
        kind: str,
        legs: Sequence[Leg],
        reference: str | None = None,
        memo: str | None = None,
        request_id: str | None = None,
    ) -> int:
        """Record one balanced entry whose accounts are locked later (``settle``); its
        number in this batch. No round trip. ``request_id``: the current request's unless
        given."""
        check_entry(kind, legs)
        self._deferred.append(
            _Entry(kind, reference, memo, request_id or request_id_var.get(), _combine(legs))
        )
        return len(self._entries) + len(self._deferred)

    def unlocked(self) -> set[AccountRef]:
        """The accounts deferred entries use that this batch has not locked yet."""
        return {ref for e in self._deferred for ref in e.amounts if ref not in self.accounts}

    async def lock_and_settle(self, session: AsyncSession) -> None:
        """Lock the accounts deferred entries use that are not locked yet (one
        statement, when there are any), then ``settle``."""
        if missing := self.unlocked():
            self.adopt(await lock_accounts(session, missing))
        self.settle()

    def settle(self) -> None:
        """Record the deferred entries, in order, each refused (``InsufficientFunds``,
        it and those after it not recorded) if a user account would go negative (their
        accounts locked and adopted first: ``unlocked``)."""
        deferred, self._deferred = self._deferred, []
        for entry in deferred:
            self._record(entry)

    def _record(self, entry: _Entry) -> int:
        for ref, amount in entry.amounts.items():
            if ref.user_id is not None and self.accounts[ref].balance + amount < 0:
                raise InsufficientFunds(f"Insufficient {ref.currency} balance", field="amount")
        self._entries.append(
            ENTRIES.row(
                kind=entry.kind,
                reference=entry.reference,
                memo=entry.memo,
                request_id=entry.request_id,
            )
        )
        number = len(self._entries)
        for ref, amount in entry.amounts.items():
            account = self.accounts[ref]
            after = account.balance + amount
            self.accounts[ref] = LockedAccount(account.id, after)
            self._postings.append(
                POSTINGS.row(
                    n=number,
                    account_id=account.id,
                    currency=ref.currency,
                    amount=amount,
                    balance_after=after,
                )
            )
        return number

    def take(self) -> Pending | None:
        """What was posted, to write in the caller's statement (``Pending``); the batch is
        empty afterwards. None when nothing was posted. Deferred entries must be settled."""
        if self._deferred:
            raise InvariantViolation("deferred journal entries were not settled")
        if not self._entries:
            return None
        changed = {
            ref: account.balance - self._start[ref]
            for ref, account in self.accounts.items()
            if account.balance != self._start[ref]
        }
        pending = Pending(
            parameters=[
                *ENTRIES.arrays(self._entries),
                *POSTINGS.arrays(self._postings),
                [self.accounts[ref].id for ref in changed],
                list(changed.values()),
            ],
            entries=len(self._entries),
            postings=len(self._postings),
            changed=len(changed),
        )
        self._start = {ref: account.balance for ref, account in self.accounts.items()}
        self._entries, self._postings = [], []
        return pending

    async def flush(self, session: AsyncSession) -> dict[int, int]:
        """Write what was posted (deferred entries too); entry id by number. The batch is
        empty afterwards."""
        await self.lock_and_settle(session)
        pending = self.take()
        if pending is None:
            return {}
        connection = await driver(session)
        rows = await connection.fetch(_JOURNAL_SQL, *pending.parameters)
        if len(rows) != pending.entries:
            raise InvariantViolation("journal entries were not written exactly once")
        pending.check(rows[0])
        return {row["n"]: row["id"] for row in rows}


_INVARIANTS = {
    "entry does not sum to zero per currency": """
        SELECT entry_id, currency, sum(amount) FROM postings
        GROUP BY entry_id, currency HAVING sum(amount) <> 0""",
    "balance differs from the sum of its postings": """
        SELECT a.id, a.balance, coalesce(p.total, 0) FROM ledger_accounts a
        LEFT JOIN (SELECT account_id, sum(amount) AS total FROM postings GROUP BY account_id) p
          ON p.account_id = a.id
        WHERE a.balance <> coalesce(p.total, 0)""",
    "negative user balance": """
        SELECT id, balance FROM ledger_accounts WHERE user_id IS NOT NULL AND balance < 0""",
    "posting currency differs from its account's": """
        SELECT p.id FROM postings p JOIN ledger_accounts a ON a.id = p.account_id
        WHERE p.currency <> a.currency""",
    "currency does not sum to zero over all accounts": """
        SELECT currency, sum(balance) FROM ledger_accounts
        GROUP BY currency HAVING sum(balance) <> 0""",
    "HELD balance differs from the pending holds": """
        SELECT a.user_id, a.currency, a.balance, coalesce(h.total, 0) FROM ledger_accounts a
        LEFT JOIN (SELECT user_id, currency, sum(remaining) AS total FROM holds
                   WHERE status = 'PENDING' GROUP BY user_id, currency) h
          ON h.user_id = a.user_id AND h.currency = a.currency
        WHERE a.kind = 'HELD' AND a.balance <> coalesce(h.total, 0)""",
    "entry mixes exchange custody with another book": """
        SELECT p.entry_id FROM postings p JOIN ledger_accounts a ON a.id = p.account_id
        GROUP BY p.entry_id
        HAVING count(DISTINCT a.exchange_account_id) > 1
            OR (count(a.exchange_account_id) > 0 AND count(a.exchange_account_id) < count(*))""",
    "negative exchange mirror balance": """
        SELECT id, balance FROM ledger_accounts
        WHERE kind IN ('EXCHANGE_FREE', 'EXCHANGE_USED') AND balance < 0""",
}


async def check_invariants(session: AsyncSession) -> list[str]:
    """Every broken ledger invariant, as readable lines; empty when all hold."""
    problems = []
    for name, sql in _INVARIANTS.items():
        for row in (await session.execute(text(sql))).all():
            problems.append(f"{name}: {tuple(row)}")
    return problems
