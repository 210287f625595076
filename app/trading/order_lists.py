"""Order lists: an OCO (two orders sharing one hold, the first to fill or trigger cancels
the other) or a bracket (an entry, then a take-profit and a stop-loss as an OCO)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.risk import gate as risk_gate
from app.runtime import Runtime
from app.trading import markets
from app.trading.command_queue import after_engine, enqueue, raise_if_refused
from app.trading.domain.errors import ClientOrderIdReused, InvalidOrder
from app.trading.domain.lists import (
    Bracket,
    ListKind,
    ListRole,
    PlannedLeg,
    plan_bracket,
    plan_oco,
)
from app.trading.domain.orders import OrderRequest, OrderStatus
from app.trading.markets import MarketRow
from app.trading.pretrade import (
    check_client_id,
    check_risk,
    count_open_orders,
    hold_amount,
    hold_funds,
    lock_trader,
    order_row,
    request_digest,
)
from db.models import Order, OrderList
from db.session import in_transaction


@dataclass(frozen=True, slots=True)
class PlacedList:
    list: OrderList
    orders: list[Order]


async def place_order_list(
    rt: Runtime,
    *,
    user_id: int | None,
    symbol: str,
    client_list_id: str | None,
    oco: Sequence[OrderRequest] | None = None,
    bracket: Bracket | None = None,
) -> PlacedList:
    """An OCO (two orders of the same side and quantity sharing one hold: the first to
    fill or trigger cancels the other) or a BRACKET (an entry; once it has filled, a
    take-profit LIMIT and a stop-loss STOP as an OCO for the filled quantity)."""
    if (oco is None) == (bracket is None):
        raise InvalidOrder("Give an OCO or a bracket", field="kind")
    client_list_id = check_client_id(client_list_id, "clientListId")
    kind = ListKind.OCO if oco is not None else ListKind.BRACKET
    digest = request_digest(symbol.upper(), kind, *(oco or ()), *([bracket] if bracket else []))

    async def work(session: AsyncSession) -> tuple[OrderList, list[Order], int | None]:
        uid = await lock_trader(rt, session, user_id, symbols=[symbol.upper()])
        existing = await session.scalar(
            select(OrderList).where(
                OrderList.user_id == uid, OrderList.client_list_id == client_list_id
            )
        )
        if existing is not None:
            if existing.request_hash != digest:
                raise ClientOrderIdReused(
                    "This clientListId was used for a different list", field="clientListId"
                )
            rows = (
                await session.scalars(
                    select(Order).where(Order.list_id == existing.id).order_by(Order.id)
                )
            ).all()
            return existing, list(rows), None
        found, gate = await risk_gate.markets_and_gate(
            rt, session, [symbol.upper()], users=[uid], client_order_ids=[client_list_id]
        )
        if symbol.upper() not in found:
            raise markets.unknown_market(symbol)
        market, usd_rate = found[symbol.upper()]
        order_list = OrderList(
            user_id=uid,
            market_id=market.id,
            kind=kind,
            client_list_id=client_list_id,
            request_hash=digest,
        )
        session.add(order_list)
        await session.flush()
        plan = _plan(rt, market, oco, bracket)
        check_risk(
            rt,
            market,
            [leg.valid for leg in plan],
            usd_rate=usd_rate,
            open_orders=await count_open_orders(session, uid),
        )
        decisions = [
            gate.check(
                user_id=uid,
                market=market,
                valid=leg.valid,
                usd_rate=usd_rate,
                client_order_id=client_list_id,
            )
            for leg in plan
        ]
        rows = []
        for i, leg in enumerate(plan):
            row = order_row(
                user_id=uid,
                market=market,
                request=leg.request,
                valid=leg.valid,
                client_order_id=f"{client_list_id}:{i}",
                digest=digest,
                status=leg.status,
                list_id=order_list.id,
                list_role=leg.role,
            )
            session.add(row)
            rows.append(row)
        await session.flush()
        funded = [
            (leg.valid, row)
            for leg, row in zip(plan, rows, strict=True)
            if leg.status is not OrderStatus.PENDING
        ]
        currency, amount = hold_amount(market, [v for v, _ in funded])
        hold_id = await hold_funds(session, uid, currency, amount, f"order-list:{order_list.id}")
        await risk_gate.warn_pre_trade(session, gate, [(uid, d) for d in decisions])
        commands = [
            ("PLACE" if row.status == "NEW" else "ARM", row.id, uid, {}) for _, row in funded
        ]
        seq = await enqueue(
            session, market.id, commands, holds=[(row, hold_id) for _, row in funded]
        )
        return order_list, rows, seq

    order_list, rows, seq = await in_transaction(rt.sessions, work)
    ids = [row.id for row in rows]
    if seq is not None:
        rows = await after_engine(rt, order_list.market_id, seq, ids)
    for row in rows:
        if row.list_role in (ListRole.ENTRY, ListRole.LEG):
            raise_if_refused(row)
    return PlacedList(order_list, rows)


def _plan(
    rt: Runtime, market: MarketRow, oco: Sequence[OrderRequest] | None, bracket: Bracket | None
) -> list[PlannedLeg]:
    """The list checked by the one planning (``app.trading.domain.lists``), with the
    platform's price band."""
    now, last, band = rt.now(), market.last_price, rt.settings.trading_price_band_bps
    if oco is not None:
        return plan_oco(market.spec, oco, now=now, reference_price=last, price_band_bps=band)
    assert bracket is not None
    return plan_bracket(market.spec, bracket, now=now, reference_price=last, price_band_bps=band)
