"""A market's or the platform's state or limit changing while orders are being placed
(real PostgreSQL, concurrent transactions): the change waits for the placements that
read what it replaces, and every placement after it reads what it made. Without the
scope lock an admin's halt could commit while an order that read ACTIVE was still being
written, and that order would then rest on a halted market.

Each test holds a row lock a placement needs at its write (the market's row, locked
last), so a placement is caught in flight after its risk check; then the change starts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from app.risk import limits as risk_limits
from app.risk.domain.errors import RiskHalted, RiskLimitReached
from app.risk.domain.limits import LimitKind
from app.risk.domain.states import RiskState, Scope
from app.risk.limits import Target
from app.runtime import Runtime
from app.trading.domain.orders import Side
from tests.risk.support import make_admin, set_limit
from tests.support.trading import eventually, funded_user, limit, market_id, place, scalar

BUY = Side.BUY

_WAITING = """
    SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE NOT l.granted AND l.locktype = $1 AND a.datname = current_database()
"""


@asynccontextmanager
async def market_row_held(rt: Runtime, market: int) -> AsyncIterator[Any]:
    """The market's row locked by another transaction until the block ends."""
    engine = rt.engine.execution_options(isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        raw = (await connection.get_raw_connection()).driver_connection
        transaction = raw.transaction()
        await transaction.start()
        await raw.execute("SELECT 1 FROM markets WHERE id = $1 FOR UPDATE", market)
        try:
            yield raw
        finally:
            await transaction.rollback()


async def waiting(rt: Runtime, locktype: str) -> int:
    return int(await scalar(rt, _WAITING, locktype))


async def in_flight(rt: Runtime, uid: int) -> asyncio.Task[Any]:
    """A placement caught at its write, after its risk check read the scopes."""
    placing = asyncio.create_task(place(rt, uid, limit(BUY, "0.1", "100")))
    assert await eventually(lambda: _at_the_write(rt, 1)), placing
    assert not placing.done()
    return placing


async def test_a_market_halt_waits_for_the_placement_that_read_it_active(rt, engines):
    admin = await make_admin(rt)
    uid = await funded_user(rt, "trader", USDT="100000")
    btc = await market_id(rt)
    target = Target(Scope.MARKET, symbol="BTC/USDT")
    async with market_row_held(rt, btc):
        placing = await in_flight(rt, uid)
        halting = asyncio.create_task(risk_limits.set_state(
            rt, actor_id=admin, target=target, state=RiskState.HALTED, reason="maintenance"
        ))  # fmt: skip
        assert await eventually(lambda: waiting(rt, "advisory"))  # behind the placement
        assert not halting.done()
    order = await placing
    await halting
    assert order.status == "OPEN"  # it read ACTIVE and was written before the halt
    with pytest.raises(RiskHalted):
        await place(rt, uid, limit(BUY, "0.1", "100"))


async def test_a_platform_limit_set_waits_too_and_binds_the_next_placement(rt, engines):
    admin = await make_admin(rt)
    uid = await funded_user(rt, "trader", USDT="100000")
    async with market_row_held(rt, await market_id(rt)):
        placing = await in_flight(rt, uid)
        setting = asyncio.create_task(set_limit(
            rt, admin, LimitKind.ORDER_NOTIONAL, 5, target=Target(Scope.PLATFORM)
        ))  # fmt: skip
        assert await eventually(lambda: waiting(rt, "advisory"))
        assert not setting.done()
    assert (await placing).status == "OPEN"
    await setting
    with pytest.raises(RiskLimitReached):
        await place(rt, uid, limit(BUY, "0.1", "100"))  # 10 USD > 5


async def _at_the_write(rt: Runtime, placements: int) -> bool:
    return await waiting(rt, "tuple") + await waiting(rt, "transactionid") >= placements
