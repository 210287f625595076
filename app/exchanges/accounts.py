"""Connected exchange accounts: connect (the key checked with the exchange first, the
balances it read mirrored), list, read balances, disconnect (the secret erased, the
mirror closed; the live orders canceled first by ``app.exchanges.disconnecting``), and
the periodic re-check. Suspending or disconnecting an account disarms its armed stops
and ends its order lists in the same transaction (``app.exchanges.protections``).

The exchange is called outside any database transaction; the credentials are sealed
before they reach the database and opened only by the connector, for signing."""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import NotFound, UserError, ValidationFailed
from app.exchanges import custody, protections
from app.exchanges.connector import ExchangeConnector, ExchangeSession
from app.exchanges.domain.accounts import Balance, Credentials, KeyCheck, credentials_for
from app.exchanges.domain.catalogue import ExchangeId, parse_exchange
from app.exchanges.domain.errors import (
    ExchangeKeyAllowsWithdrawals,
    ExchangeKeyInvalid,
    ExchangeOrdersStillOpen,
    ExchangePermissionDenied,
)
from app.exchanges.domain.orders import LIVE
from app.exchanges.domain.sealing import Binding, SealedSecret
from app.exchanges.domain.triggers import ACCOUNT_DISCONNECTED, ACCOUNT_SUSPENDED
from app.runtime import Runtime
from db.models import ExchangeConnection, ExchangeOrder

log = logging.getLogger(__name__)

MAX_LABEL_LENGTH = 64
MAX_CONNECTIONS = 20  # per user, not counting disconnected ones
ACTIVE, SUSPENDED, DISCONNECTED = "ACTIVE", "SUSPENDED", "DISCONNECTED"
# a re-check that ends in one of these suspends the connection; any other failure (the
# exchange unavailable, its rate limit) leaves it as it was
_SUSPENDING: tuple[type[UserError], ...] = (
    ExchangeKeyInvalid,
    ExchangeKeyAllowsWithdrawals,
    ExchangePermissionDenied,
)


@dataclass(frozen=True, slots=True)
class Connected:
    connection: ExchangeConnection
    balances: tuple[Balance, ...]


def binding_of(row: ExchangeConnection) -> Binding:
    return Binding(user_id=row.user_id, exchange=row.exchange, connection_id=row.id)


def sealed_of(row: ExchangeConnection) -> SealedSecret:
    if row.key_id is None or row.wrapped_key is None or row.sealed_secret is None:
        raise NotFound("This exchange account is disconnected", field="id")
    return SealedSecret(row.key_id, row.wrapped_key, row.sealed_secret)


def _label(text: str) -> str:
    label = text.strip()
    printable = all(unicodedata.category(c)[0] != "C" for c in label)
    if not label or len(label) > MAX_LABEL_LENGTH or not printable:
        raise ValidationFailed(
            f"The label must be 1 to {MAX_LABEL_LENGTH} printable characters", field="label"
        )
    return label


async def check_key(session: ExchangeSession) -> KeyCheck:
    """The key's permissions (refused when it may withdraw, or may not read), then
    its balances (which prove it reads)."""
    permissions = await session.permissions()
    refusal = permissions.refusal()
    if refusal is not None:
        raise refusal
    return KeyCheck(permissions, tuple(await session.balances()))


async def connect_account(
    rt: Runtime,
    *,
    user_id: int,
    exchange: str,
    label: str,
    api_key: str,
    secret: str,
    passphrase: str | None = None,
) -> Connected:
    exchange_id = parse_exchange(exchange)
    clean_label = _label(label)
    credentials = credentials_for(
        exchange_id, api_key=api_key, secret=secret, passphrase=passphrase
    )
    async with rt.reads() as session:
        if await _open_connections(session, user_id) >= MAX_CONNECTIONS:
            raise ValidationFailed(
                f"At most {MAX_CONNECTIONS} exchange accounts can be connected", field="exchange"
            )
    read_at = rt.now()
    check = await _check(rt.exchanges, exchange_id, credentials)
    async with rt.sessions() as session, session.begin():
        row = await _insert(rt, session, user_id, exchange_id, clean_label, credentials, check)
        # the balances the check read become the mirror, with the row that owns it
        await custody.apply_reading(session, row, trigger=custody.CONNECT,
                                    balances=check.balances, read_at=read_at)  # fmt: skip
    extra = {"user_id": user_id, "exchange": exchange_id.value, "connection": row.id}
    log.info("exchange account connected", extra=extra)
    return Connected(row, check.balances)


async def _check(
    connector: ExchangeConnector, exchange: ExchangeId, credentials: Credentials
) -> KeyCheck:
    async with connector.session(exchange, credentials) as session:
        return await check_key(session)


async def _open_connections(session: AsyncSession, user_id: int) -> int:
    count = await session.scalar(
        select(func.count()).where(
            ExchangeConnection.user_id == user_id, ExchangeConnection.status != DISCONNECTED
        )
    )
    return int(count or 0)


async def _insert(
    rt: Runtime,
    session: AsyncSession,
    user_id: int,
    exchange: ExchangeId,
    label: str,
    credentials: Credentials,
    check: KeyCheck,
) -> ExchangeConnection:
    """The row, its id taken first: the sealed secret's associated data names it."""
    sequence = func.pg_get_serial_sequence(ExchangeConnection.__tablename__, "id")
    pk = int(await session.scalar(select(func.nextval(sequence))) or 0)
    sealed = rt.exchange_keys.seal(credentials.to_bytes(), Binding(user_id, exchange.value, pk))
    permissions = check.permissions
    row = ExchangeConnection(
        id=pk, user_id=user_id, exchange=exchange.value, label=label, status=ACTIVE,
        key_id=sealed.key_id, wrapped_key=sealed.wrapped_key, sealed_secret=sealed.ciphertext,
        can_read=permissions.can_read, can_trade=permissions.can_trade,
        can_withdraw=permissions.can_withdraw, ip_restricted=permissions.ip_restricted,
        last_checked_at=rt.now(), sync_attempted_at=rt.now(),  # synced with this check
    )  # fmt: skip
    session.add(row)
    await session.flush()
    return row


async def list_accounts(session: AsyncSession, *, user_id: int) -> list[ExchangeConnection]:
    """The user's connections that are not disconnected, oldest first."""
    rows = await session.scalars(
        select(ExchangeConnection)
        .where(ExchangeConnection.user_id == user_id, ExchangeConnection.status != DISCONNECTED)
        .order_by(ExchangeConnection.id)
    )
    return list(rows)


async def accounts_by_ids(
    session: AsyncSession, *, user_id: int, ids: list[int]
) -> dict[int, ExchangeConnection]:
    rows = await session.scalars(
        select(ExchangeConnection).where(
            ExchangeConnection.id.in_(ids),
            ExchangeConnection.user_id == user_id,
            ExchangeConnection.status != DISCONNECTED,
        )
    )
    return {row.id: row for row in rows}


async def balances(rt: Runtime, connection: ExchangeConnection) -> list[Balance]:
    """The account's balances, read from the exchange now."""
    exchange = ExchangeId(connection.exchange)
    sealed = sealed_of(connection)
    async with rt.exchanges.sealed_session(exchange, sealed, binding_of(connection)) as session:
        return await session.balances()


async def disconnect_account(
    rt: Runtime,
    *,
    user_id: int,
    connection_id: int,
    refuse_live: bool = False,
    canceled: int = 0,
) -> ExchangeConnection:
    """Erase the secret; the row stays (DISCONNECTED) for the record. In the same
    transaction its armed stops are disarmed and its lists ended
    (``protections.stop_protections``). ``refuse_live``: ``ExchangeOrdersStillOpen``,
    nothing changed, while one of its orders is live (the caller canceled them first,
    ``canceled`` of them: ``app.exchanges.disconnecting``); else they are left open at
    the exchange, no longer followed."""
    async with rt.sessions() as session, session.begin():
        row = await session.scalar(
            select(ExchangeConnection)
            .where(
                ExchangeConnection.id == connection_id,
                ExchangeConnection.user_id == user_id,
                ExchangeConnection.status != DISCONNECTED,
            )
            .with_for_update()
        )
        if row is None:
            raise NotFound("No such exchange account of yours", field="id")
        live = await live_orders(session, connection_id)
        if live and refuse_live:
            raise ExchangeOrdersStillOpen(field="id")
        await protections.stop_protections(session, row, reason=ACCOUNT_DISCONNECTED,
                                           now=rt.now(), canceled=canceled,
                                           left_open=len(live))  # fmt: skip
        await custody.close_custody(session, row, at=rt.now())
        row.status = DISCONNECTED
        row.key_id = row.wrapped_key = row.sealed_secret = None
        row.disconnected_at = rt.now()
    rt.exchanges.forget(connection_id)
    log.info("exchange account disconnected",
             extra={"user_id": user_id, "connection": connection_id})  # fmt: skip
    return row


async def live_orders(session: AsyncSession, connection_id: int) -> list[ExchangeOrder]:
    """The account's orders live at the exchange (or whose placement is not settled),
    oldest first."""
    return list(
        await session.scalars(
            select(ExchangeOrder)
            .where(ExchangeOrder.connection_id == connection_id,
                   ExchangeOrder.status.in_(sorted(s.value for s in LIVE)))
            .order_by(ExchangeOrder.id)
        )
    )  # fmt: skip


async def rewrap_secrets(rt: Runtime, *, limit: int = 500) -> int:
    """Re-wrap the data keys of secrets sealed under a master key that is no longer the
    active one (a background job: rotation). The sealed secrets do not change; no
    secret is opened. Returns how many were re-wrapped."""
    ring = rt.exchange_keys
    async with rt.sessions() as session, session.begin():
        rows = list(
            await session.scalars(
                select(ExchangeConnection)
                .where(
                    ExchangeConnection.status != DISCONNECTED,
                    ExchangeConnection.key_id != ring.active,
                )
                .order_by(ExchangeConnection.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        for row in rows:
            rewrapped = ring.rewrap(sealed_of(row), binding_of(row))
            row.key_id, row.wrapped_key = rewrapped.key_id, rewrapped.wrapped_key
    if rows:
        log.info("exchange secrets re-wrapped", extra={"count": len(rows), "key": ring.active})
    return len(rows)


async def claim_due(
    rt: Runtime, stamp: Any, *where: ColumnElement[bool], limit: int
) -> list[ExchangeConnection]:
    """Claim up to ``limit`` connections matching ``where`` for a background job: oldest
    ``stamp`` (a timestamp column, never set first) first, each moved on to now in the
    same statement, rows another process holds skipped, so processes running the job
    share the work."""
    async with rt.sessions() as session, session.begin():
        return list(
            await session.scalars(
                update(ExchangeConnection)
                .where(
                    ExchangeConnection.id.in_(
                        select(ExchangeConnection.id)
                        .where(*where)
                        .order_by(stamp.asc().nulls_first())
                        .limit(limit)
                        .with_for_update(skip_locked=True)
                    )
                )
                .values({stamp: rt.now()})
                .returning(ExchangeConnection)
            )
        )


async def recheck_due(rt: Runtime, *, limit: int = 50) -> int:
    """Check again the keys whose last check is older than EXCHANGE_RECHECK_AFTER_HOURS
    (a background job): a key that the exchange now refuses, or that may withdraw, is
    SUSPENDED (its armed stops disarmed and its order lists ended in that transaction:
    ``protections``); one that passes is ACTIVE again. Each connection is claimed first (its
    ``last_checked_at`` moved on), so processes running the job share the work."""
    cutoff = rt.now() - timedelta(hours=rt.settings.exchange_recheck_after_hours)
    checked = ExchangeConnection.last_checked_at
    due = await claim_due(
        rt, checked, ExchangeConnection.status != DISCONNECTED, checked < cutoff, limit=limit
    )
    for row in due:
        await _recheck(rt, row)
    return len(due)


async def _recheck(rt: Runtime, row: ExchangeConnection) -> None:
    exchange = ExchangeId(row.exchange)
    values: dict[str, object]
    suspended: str | None = None  # why, when the check suspends it
    try:
        sealed = sealed_of(row)
        async with rt.exchanges.sealed_session(exchange, sealed, binding_of(row)) as session:
            check = await check_key(session)
    except _SUSPENDING as error:
        values = {"status": SUSPENDED, "last_check_code": error.code}
        suspended = error.code
    except UserError as error:  # unavailable, rate limited: try again next time
        values = {"last_check_code": error.code}
    else:
        p = check.permissions
        values = {"status": ACTIVE, "last_check_code": None, "can_read": p.can_read,
                  "can_trade": p.can_trade, "can_withdraw": p.can_withdraw,
                  "ip_restricted": p.ip_restricted}  # fmt: skip
    async with rt.sessions() as session, session.begin():
        changed = await session.scalar(
            update(ExchangeConnection)
            .where(ExchangeConnection.id == row.id, ExchangeConnection.status != DISCONNECTED)
            .values(**values)
            .returning(ExchangeConnection.id)
        )
        if changed is not None and suspended is not None:  # its protections stop with it
            await protections.stop_protections(session, row, reason=ACCOUNT_SUSPENDED,
                                               now=rt.now(), code=suspended)  # fmt: skip
    log.info("exchange account re-checked",
             extra={"connection": row.id, "code": values.get("last_check_code")})  # fmt: skip
