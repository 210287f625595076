"""The rows an engine batch writes (``sql.WRITE_SQL``), one NamedTuple each, built by name:
their fields are the ``unnest`` arrays' names and order (``db.raw.Arrays``), and the
columns they write (tests/platform/test_sql_columns.py binds them to the tables)."""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

from db.models import Fill, Hold, Order, OrderCommand, Position
from db.raw import Arrays


class FillRow(NamedTuple):
    """One side of a trade (the market, fee currency and time are the batch's)."""

    trade_id: int
    seq: int
    order_id: int
    user_id: int
    side: str
    liquidity: str
    price: Decimal
    quantity: Decimal
    quote_amount: Decimal
    fee: Decimal
    entry: int  # its number in the batch's journal, until the write gives its id


class OrderChange(NamedTuple):
    id: int
    status: str
    quantity: Decimal
    filled_quantity: Decimal
    executed_value: Decimal
    fees: Decimal
    fee_numerator: Decimal
    book_price: Decimal
    priority: int | None
    reason: str | None
    hold_id: int | None
    trailing_active: bool
    trailing_extreme: Decimal | None


class HoldChange(NamedTuple):
    id: int
    amount: Decimal
    remaining: Decimal
    status: str


class PositionChange(NamedTuple):
    user_id: int
    currency: str
    quantity: Decimal
    cost_usd: Decimal
    realized_pnl_usd: Decimal


class Outcome(NamedTuple):
    seq: int
    outcome: str


FILLS = Arrays("app.trading.engine.rows.FILLS", FillRow, Fill, extra={"entry": "bigint"})
ORDERS = Arrays("app.trading.engine.rows.ORDERS", OrderChange, Order)
HOLDS = Arrays("app.trading.engine.rows.HOLDS", HoldChange, Hold)
POSITIONS = Arrays("app.trading.engine.rows.POSITIONS", PositionChange, Position)
OUTCOMES = Arrays("app.trading.engine.rows.OUTCOMES", Outcome, OrderCommand)
