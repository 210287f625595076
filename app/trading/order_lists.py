"""Order lists: an OCO (two orders sharing one hold, the first to fill or trigger cancels
the other) or a bracket (an entry, then a take-profit and a stop-loss as an OCO)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import UserError
from app.runtime import Runtime
from app.trading import markets
from app.trading.command_queue import after_engine, enqueue, first_command, raise_if_refused
from app.trading.domain import orders as rules
from app.trading.domain.errors import ClientOrderIdReused, InvalidOrder
from app.trading.domain.lists import OCO_ROLES, Bracket, ListKind, ListRole  # noqa: F401 (callers' names)
from app.trading.domain.orders import OrderRequest, OrderStatus, OrderType, Side, ValidOrder
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
        uid = await lock_trader(session, user_id)
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
        market, usd_rate = await markets.market_with_quote_rate(session, symbol)
        order_list = OrderList(
            user_id=uid,
            market_id=market.id,
            kind=kind,
            client_list_id=client_list_id,
            request_hash=digest,
        )
        session.add(order_list)
        await session.flush()
        if oco is not None:
            plan = _plan_oco(rt, market, oco)
        else:
            assert bracket is not None
            plan = _plan_bracket(rt, market, bracket)
        check_risk(
            rt,
            market,
            [valid for _, valid, _, _ in plan],
            usd_rate=usd_rate,
            open_orders=await count_open_orders(session, uid),
        )
        rows = []
        for i, (request, valid, role, status) in enumerate(plan):
            row = order_row(
                user_id=uid,
                market=market,
                request=request,
                valid=valid,
                client_order_id=f"{client_list_id}:{i}",
                digest=digest,
                status=status,
                list_id=order_list.id,
                list_role=role,
            )
            session.add(row)
            rows.append(row)
        await session.flush()
        funded = [
            (v, row)
            for (_, v, _, status), row in zip(plan, rows, strict=True)
            if status is not OrderStatus.PENDING
        ]
        currency, amount = hold_amount(market, [v for v, _ in funded])
        hold_id = await hold_funds(session, uid, currency, amount, f"order-list:{order_list.id}")
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


_Plan = list[tuple[OrderRequest, ValidOrder, str, OrderStatus]]


def _validate(
    rt: Runtime, market: MarketRow, request: OrderRequest, band: bool = True
) -> ValidOrder:
    return rules.validate_order(
        request,
        market.spec,
        now=rt.now(),
        reference_price=market.last_price,
        price_band_bps=rt.settings.trading_price_band_bps if band else None,
    )


def _plan_oco(rt: Runtime, market: MarketRow, legs: Sequence[OrderRequest]) -> _Plan:
    if len(legs) != 2:
        raise InvalidOrder("An OCO has exactly two orders", field="orders")
    first, second = legs
    if first.side != second.side or first.quantity != second.quantity:
        raise InvalidOrder("Both orders of an OCO have the same side and quantity", field="orders")
    if OrderType.MARKET in (first.type, second.type) or first.type == second.type:
        raise InvalidOrder(
            "An OCO joins two different order types, neither of them MARKET", field="orders"
        )
    plan: _Plan = []
    for request in legs:
        valid = _validate(rt, market, request)
        status, _ = first_command(valid)
        plan.append((request, valid, ListRole.LEG, status))
    return plan


def _plan_bracket(rt: Runtime, market: MarketRow, bracket: Bracket) -> _Plan:
    entry = bracket.entry
    if entry.type not in (OrderType.LIMIT, OrderType.MARKET):
        raise InvalidOrder("A bracket's entry is a LIMIT or MARKET order", field="entry")
    valid_entry = _validate(rt, market, entry)
    exit_side = Side.SELL if entry.side is Side.BUY else Side.BUY
    entry_price = market.spec.price(valid_entry.price) if entry.type is OrderType.LIMIT else None
    reference = entry_price or market.last_price
    take_profit = OrderRequest(
        side=exit_side,
        type=OrderType.LIMIT,
        quantity=entry.quantity,
        price=bracket.take_profit_price,
    )
    stop_loss = OrderRequest(
        side=exit_side,
        type=OrderType.STOP_LIMIT if bracket.stop_loss_limit_price else OrderType.STOP_MARKET,
        quantity=entry.quantity,
        stop_price=bracket.stop_loss_price,
        price=bracket.stop_loss_limit_price,
    )
    valid_tp = rules.validate_order(
        take_profit, market.spec, now=rt.now(), reference_price=None, price_band_bps=None
    )
    if reference is not None:
        beyond = (
            bracket.take_profit_price > reference
            if entry.side is Side.BUY
            else (bracket.take_profit_price < reference)
        )
        if not beyond:
            raise InvalidOrder(
                "The take-profit price must be beyond the entry price", field="takeProfitPrice"
            )
    try:
        valid_sl = rules.validate_order(
            stop_loss, market.spec, now=rt.now(), reference_price=reference, price_band_bps=None
        )
    except UserError as error:
        error.field = "stopLossPrice" if error.field == "stopPrice" else error.field
        raise
    return [
        (entry, valid_entry, ListRole.ENTRY, OrderStatus.NEW),
        (take_profit, valid_tp, ListRole.TAKE_PROFIT, OrderStatus.PENDING),
        (stop_loss, valid_sl, ListRole.STOP_LOSS, OrderStatus.PENDING),
    ]
