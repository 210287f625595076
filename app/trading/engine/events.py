"""The outbox events of a batch: book levels, trades, ticker, each user's fills and orders,
each built by its topic in the catalogue (``app.events.topics``), so a fill goes
``topics.fill`` -> outbox -> relay -> ``myFills`` by one name."""

from __future__ import annotations

from datetime import datetime

from app.events import topics
from app.trading.domain.orders import OrderStatus, Side
from app.trading.engine.market import MarketState
from app.trading.engine.state import Batch


def events_of(state: MarketState, batch: Batch, now: datetime) -> list[tuple[str, int | None, str]]:
    """The batch's outbox events (``topics.Event.row()``): book levels, trades, ticker,
    fills, order states."""
    assert state.book is not None
    spec = state.spec
    symbol = spec.symbol
    events: list[topics.Event] = []
    if batch.levels:
        bids, asks = [], []
        for side, price in sorted(batch.levels, key=lambda x: (x[0].value, x[1])):
            lots, count = state.book.level(side, price)
            (bids if side is Side.BUY else asks).append(
                (spec.price(price), spec.quantity(lots), count)
            )
        events.append(
            topics.book_levels(
                topics.BookLevels(
                    symbol=symbol,
                    sequence=state.applied,
                    previous_sequence=state.book_seq,
                    bids=tuple(bids),
                    asks=tuple(asks),
                )
            )
        )
    for trade in batch.trades:
        events.append(topics.trade(topics.Trade(symbol=symbol, at=now, **trade)))
    if batch.trades:
        best_bid, best_ask = state.book.best_bid, state.book.best_ask
        events.append(
            topics.ticker(
                topics.Ticker(
                    symbol=symbol,
                    last=spec.price(state.last_price) if state.last_price else None,
                    best_bid=None if best_bid is None else spec.price(best_bid),
                    best_ask=None if best_ask is None else spec.price(best_ask),
                    sequence=state.applied,
                    at=now,
                )
            )
        )
    for fill in batch.fills:
        events.append(
            topics.fill(
                fill.user_id,
                topics.Fill(
                    trade_id=fill.trade_id,
                    order_id=fill.order_id,
                    symbol=symbol,
                    side=fill.side,
                    liquidity=fill.liquidity,
                    price=fill.price,
                    quantity=fill.quantity,
                    quote_amount=fill.quote_amount,
                    fee=fill.fee,
                    fee_currency=spec.quote,
                    sequence=fill.seq,
                    at=now,
                ),
            )
        )
    for order in batch.orders.values():
        # A refusal on arrival is the placing caller's error, not an event; a
        # conditional order refused once it fired has no caller waiting: announce it.
        refused_on_arrival = order.status is OrderStatus.REJECTED and order.trigger is None
        if order.changed and not refused_on_arrival:
            events.append(
                topics.order_updated(
                    order.user_id,
                    topics.OrderUpdated(
                        order_id=order.id,
                        symbol=symbol,
                        side=order.side.value,
                        status=order.status.value,
                        filled_quantity=spec.quantity(order.filled),
                        quantity=spec.quantity(order.quantity),
                        reason=order.reason,
                        sequence=state.applied,
                        at=now,
                    ),
                )
            )
        order.changed = False
    return [event.row() for event in events]
