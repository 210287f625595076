"""The outbox events of a batch: book levels, trades, ticker, each user's fills and orders."""

from __future__ import annotations

import json
from datetime import datetime

from app.trading.domain.orders import OrderStatus, Side
from app.trading.engine.market import MarketState
from app.trading.engine.state import Batch


def events_of(state: MarketState, batch: Batch, now: datetime) -> list[tuple[str, int | None, str]]:
    """The batch's outbox events: book levels, trades, ticker, fills, order states."""
    assert state.book is not None
    spec = state.spec
    symbol = spec.symbol
    events: list[tuple[str, int | None, str]] = []
    if batch.levels:
        bids, asks = [], []
        for side, price in sorted(batch.levels, key=lambda x: (x[0].value, x[1])):
            lots, count = state.book.level(side, price)
            (bids if side is Side.BUY else asks).append(
                [str(spec.price(price)), str(spec.quantity(lots)), count]
            )
        events.append(
            (
                f"book:{symbol}",
                None,
                json.dumps(
                    {
                        "symbol": symbol,
                        "sequence": state.applied,
                        "previousSequence": state.book_seq,
                        "bids": bids,
                        "asks": asks,
                    }
                ),
            )
        )
    at = now.isoformat()
    for trade in batch.trades:
        events.append((f"trades:{symbol}", None, json.dumps({"symbol": symbol, "at": at, **trade})))
    if batch.trades:
        best_bid, best_ask = state.book.best_bid, state.book.best_ask
        events.append(
            (
                f"ticker:{symbol}",
                None,
                json.dumps(
                    {
                        "symbol": symbol,
                        "last": str(spec.price(state.last_price)) if state.last_price else None,
                        "bestBid": None if best_bid is None else str(spec.price(best_bid)),
                        "bestAsk": None if best_ask is None else str(spec.price(best_ask)),
                        "sequence": state.applied,
                        "at": at,
                    }
                ),
            )
        )
    for fill in batch.fills:
        trade_id, seq, order_id, user_id, side, liquidity, price, qty, value, fee, _ = fill
        events.append(
            (
                "fills",
                user_id,
                json.dumps(
                    {
                        "tradeId": trade_id,
                        "orderId": order_id,
                        "symbol": symbol,
                        "side": side,
                        "liquidity": liquidity,
                        "price": str(price),
                        "quantity": str(qty),
                        "quoteAmount": str(value),
                        "fee": str(fee),
                        "feeCurrency": spec.quote,
                        "sequence": seq,
                        "at": at,
                    }
                ),
            )
        )
    for order in batch.orders.values():
        # A refusal on arrival is the placing caller's error, not an event; a
        # conditional order refused once it fired has no caller waiting: announce it.
        refused_on_arrival = order.status is OrderStatus.REJECTED and order.trigger is None
        if order.changed and not refused_on_arrival:
            events.append(
                (
                    "orders",
                    order.user_id,
                    json.dumps(
                        {
                            "orderId": order.id,
                            "symbol": symbol,
                            "side": order.side.value,
                            "status": order.status.value,
                            "filledQuantity": str(spec.quantity(order.filled)),
                            "quantity": str(spec.quantity(order.quantity)),
                            "reason": order.reason,
                            "sequence": state.applied,
                            "at": at,
                        }
                    ),
                )
            )
        order.changed = False
    return events
