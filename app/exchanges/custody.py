"""Exchange custody, in the database: a connection's mirror of its balances at the exchange
(``app.ledger.custody``: ledger accounts of its own, never the platform's) brought to a
reading, a sync record per run, the mirror closed on disconnect, and the reads.

Everything here runs in the caller's transaction with the connection's row locked (or
just inserted), so the entry, the sync record and the connection's ``synced_at`` commit
together or not at all, and two syncs of one connection take turns. The exchange is
read before (``app.exchanges.syncs``), outside any transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Context, Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import UserError
from app.exchanges.domain import custody as domain
from app.exchanges.domain.accounts import Balance
from app.ledger.custody import custody_by_connection_ids, lock_custody, post_custody
from db.models import Currency, ExchangeConnection, ExchangeSync, ReferencePrice
from db.queries import Page, PageKey, keyset_pages

CONNECT, SCHEDULED, MANUAL, DISCONNECT = "CONNECT", "SCHEDULED", "MANUAL", "DISCONNECT"
CHANGED, UNCHANGED, FAILED, SUPERSEDED, CLOSED = (
    "CHANGED", "UNCHANGED", "FAILED", "SUPERSEDED", "CLOSED",
)  # fmt: skip


async def _known_currencies(session: AsyncSession) -> frozenset[str]:
    return frozenset(await session.scalars(select(Currency.code)))


async def _mirror(session: AsyncSession, connection_id: int) -> dict[str, domain.Holding]:
    (balances,) = await custody_by_connection_ids(session, [connection_id])
    return domain.mirrored(connection_id, balances)


async def _post(
    session: AsyncSession, connection_id: int, kind: str, found: list[domain.Change]
) -> int | None:
    """The entry posting ``found`` (None when nothing changed)."""
    if not found:
        return None
    accounts = await lock_custody(session, connection_id, domain.accounts_for(connection_id, found))
    return await post_custody(
        session, exchange_account_id=connection_id, kind=kind, accounts=accounts,
        legs=domain.legs_for(connection_id, found), reference=f"exchange:{connection_id}",
    )  # fmt: skip


def _record(
    session: AsyncSession, connection: ExchangeConnection, **fields: object
) -> ExchangeSync:
    sync = ExchangeSync(connection_id=connection.id, **fields)
    session.add(sync)
    return sync


async def apply_reading(
    session: AsyncSession,
    connection: ExchangeConnection,
    *,
    trigger: str,
    balances: Iterable[Balance],
    read_at: datetime,
) -> ExchangeSync:
    """Bring the mirror to this reading (taken at ``read_at``): post the difference per
    currency, nothing when nothing changed; a reading older than the one the mirror is
    already at changes nothing (SUPERSEDED); one the ledger cannot hold is FAILED."""
    if connection.synced_at is not None and connection.synced_at >= read_at:
        sync = _record(session, connection, trigger=trigger, outcome=SUPERSEDED, read_at=read_at)
    else:
        try:
            reading = domain.reading_of(balances, await _known_currencies(session))
        except UserError as error:
            return await record_failure(session, connection, trigger=trigger, error=error,
                                        read_at=read_at)  # fmt: skip
        found = domain.changes(await _mirror(session, connection.id), reading.holdings)
        entry_id = await _post(session, connection.id, "EXCHANGE_SYNC", found)
        connection.synced_at = read_at
        sync = _record(
            session, connection, trigger=trigger, outcome=CHANGED if found else UNCHANGED,
            changes=[c.to_json() for c in found], journal_entry_id=entry_id, read_at=read_at,
            unmirrored={c: format(t.normalize(), "f") for c, t in reading.unmirrored.items()},
        )  # fmt: skip
    await session.flush()
    return sync


async def record_failure(
    session: AsyncSession,
    connection: ExchangeConnection,
    *,
    trigger: str,
    error: UserError,
    read_at: datetime,
) -> ExchangeSync:
    """A sync that could not read (or could not use) the exchange's balances: recorded
    with the error's code, nothing posted."""
    sync = _record(session, connection, trigger=trigger, outcome=FAILED, error_code=error.code,
                   read_at=read_at)  # fmt: skip
    await session.flush()
    return sync


async def close_custody(
    session: AsyncSession, connection: ExchangeConnection, *, at: datetime
) -> ExchangeSync:
    """Disconnecting: the mirror brought to zero by a final entry (its accounts and
    history stay), recorded as CLOSED."""
    found = domain.changes(await _mirror(session, connection.id), {})
    entry_id = await _post(session, connection.id, "EXCHANGE_CLOSE", found)
    connection.synced_at = at
    sync = _record(session, connection, trigger=DISCONNECT, outcome=CLOSED, read_at=at,
                   changes=[c.to_json() for c in found], journal_entry_id=entry_id)  # fmt: skip
    await session.flush()
    return sync


# reads


@dataclass(frozen=True, slots=True)
class MirroredBalance:
    currency: str
    free: Decimal
    used: Decimal
    usd_price: Decimal | None

    @property
    def total(self) -> Decimal:
        return self.free + self.used

    @property
    def usd_value(self) -> Decimal | None:
        if self.usd_price is None:
            return None
        # a mirror holds up to 10^20 of a currency: more digits than Decimal's default 28
        wide = Context(prec=60)
        return wide.multiply(self.total, self.usd_price).quantize(Decimal("0.01"), context=wide)


async def mirrored_by_connection_ids(
    session: AsyncSession, ids: Sequence[int]
) -> list[list[MirroredBalance]]:
    """Each connection's mirrored balances (non-zero, by currency) with the platform's
    USD reference price of each, in the order of ``ids`` (two queries)."""
    books = await custody_by_connection_ids(session, ids)
    held = [domain.mirrored(i, book) for i, book in zip(ids, books, strict=True)]
    currencies = {c for holdings in held for c in holdings}
    prices: dict[str, Decimal] = {}
    if currencies:
        found = await session.execute(
            select(ReferencePrice.currency, ReferencePrice.usd_price).where(
                ReferencePrice.currency.in_(currencies)
            )
        )
        prices = {currency: price for currency, price in found.all()}
    return [
        [MirroredBalance(c, h.free, h.used, prices.get(c)) for c, h in sorted(holdings.items())]
        for holdings in held
    ]


async def last_syncs_by_connection_ids(
    session: AsyncSession, ids: Sequence[int]
) -> list[ExchangeSync | None]:
    latest = (
        select(func.max(ExchangeSync.id))
        .where(ExchangeSync.connection_id.in_(list(ids)))
        .group_by(ExchangeSync.connection_id)
    )
    rows = await session.scalars(select(ExchangeSync).where(ExchangeSync.id.in_(latest)))
    found = {row.connection_id: row for row in rows}
    return [found.get(i) for i in ids]


async def sync_pages(session: AsyncSession, keys: Sequence[PageKey]) -> list[Page[ExchangeSync]]:
    """Pages of connections' sync records, newest first (one statement)."""
    return await keyset_pages(
        session, ExchangeSync, parent=ExchangeSync.connection_id, key=ExchangeSync.id,
        wanted=keys, descending=True,
    )  # fmt: skip


async def holdings_of_user(
    session: AsyncSession, *, user_id: int
) -> list[tuple[ExchangeConnection, list[MirroredBalance]]]:
    """The user's connected accounts (not disconnected), oldest first, each with its
    mirrored balances (three queries)."""
    connections = list(
        await session.scalars(
            select(ExchangeConnection)
            .where(
                ExchangeConnection.user_id == user_id, ExchangeConnection.status != "DISCONNECTED"
            )
            .order_by(ExchangeConnection.id)
        )
    )
    balances = await mirrored_by_connection_ids(session, [c.id for c in connections])
    return list(zip(connections, balances, strict=True))
