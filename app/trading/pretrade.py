"""What every trading request checks before it reaches the engine: the trader (signed in,
kill switch), the idempotency key and the request's digest, pre-trade risk, the funds it
holds, and the order row it stores."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import InsufficientFunds, NotAuthenticated, ValidationFailed
from app.ledger import holds
from app.risk.sql import share_scopes
from app.runtime import Runtime
from app.trading.domain import orders as rules
from app.trading.domain.errors import (
    InvalidOrder,
    OrderTooLarge,
    TooManyOpenOrders,
    TradingDisabled,
)
from app.trading.domain.orders import OrderRequest, OrderStatus, ValidOrder
from app.trading.markets import MarketRow
from app.trading.sql import LIVE_STATUS_VALUES
from db.models import Order
from db.raw import driver

MAX_CLIENT_ID = 64


def check_client_id(value: str | None, field: str = "clientOrderId") -> str:
    if value is None:
        return uuid.uuid4().hex
    value = value.strip()
    if not value or len(value) > MAX_CLIENT_ID or not value.isprintable():
        raise ValidationFailed(f"At most {MAX_CLIENT_ID} printable characters", field=field)
    return value


def _plain(value: Any) -> Any:
    """``value`` as JSON, equal values alike (0.10 == 0.1), nested ones too (a bracket's
    entry)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return str(value.normalize())
    return str(value) if value is not None and not isinstance(value, bool | int) else value


def request_digest(*parts: Any) -> str:
    body = json.dumps(
        [_plain(asdict(p) if hasattr(p, "__dataclass_fields__") else p) for p in parts],
        sort_keys=True,
    )
    return hashlib.sha256(body.encode()).hexdigest()


# a trader's row and, for a bot's sub-account, its owner's: in id order, as TRADERS_SQL,
# after the risk scopes (shared, where $4) of the platform and the markets of the symbols
# $2 or of the order $3, as TRADERS_SQL
_SCOPES = share_scopes(
    "$4::boolean", "symbol = ANY($2::text[]) OR id = (SELECT market_id FROM orders WHERE id = $3)"
)
_LOCK_TRADER_SQL = f"""
    WITH {_SCOPES}
    SELECT id, trading_enabled FROM users
    WHERE (SELECT n FROM scopes) >= 0
      AND (id = $1 OR id = (SELECT owner_id FROM users WHERE id = $1))
    ORDER BY id
    FOR NO KEY UPDATE
"""  # noqa: S608 (no input in the text)


async def lock_trader(
    rt: Runtime,
    session: AsyncSession,
    user_id: int | None,
    *,
    symbols: Sequence[str] = (),
    order_id: int | None = None,
) -> int:
    """Lock the trader (with its owner, for a bot's sub-account: their limits and state
    bind it) as a placement does, after the risk scope locks (shared) of the platform and
    of the markets of ``symbols`` or of the order ``order_id``; ``TradingDisabled`` if
    either's kill switch is on."""
    if user_id is None:
        raise NotAuthenticated()
    rows = await (await driver(session)).fetch(
        _LOCK_TRADER_SQL, user_id, sorted(set(symbols)), order_id, rt.risk_checks
    )
    if not any(row["id"] == user_id for row in rows):
        raise NotAuthenticated()
    if not all(row["trading_enabled"] for row in rows):
        raise TradingDisabled()
    return user_id


def check_risk(
    rt: Runtime,
    market: MarketRow,
    orders: Sequence[ValidOrder],
    *,
    usd_rate: Decimal,
    open_orders: int,
) -> None:
    """Maximum order value (USD, at the order's price) and maximum open orders
    (``open_orders``: the user's live orders before these)."""
    limit = rt.settings.trading_max_order_notional_usd
    for order in orders:
        units = market.spec.notional_units(order.price, order.quantity)
        if market.spec.quote_amount(units) * usd_rate > limit:
            raise OrderTooLarge(
                f"An order is worth at most {limit.normalize():f} USD", field="quantity"
            )
    if open_orders + len(orders) > rt.settings.trading_max_open_orders:
        raise TooManyOpenOrders(
            f"At most {rt.settings.trading_max_open_orders} open orders", field="quantity"
        )


async def count_open_orders(session: AsyncSession, user_id: int) -> int:
    connection = await driver(session)
    return await connection.fetchval(
        "SELECT count(*) FROM orders WHERE user_id = $1 AND status = ANY($2::text[])",
        user_id,
        LIVE_STATUS_VALUES,
    )


def hold_amount(market: MarketRow, orders: Sequence[ValidOrder]) -> tuple[str, Decimal]:
    """One hold for orders that share it (an OCO's legs): the largest of their needs."""
    needs = [rules.hold_for(market.spec, order) for order in orders]
    currencies = {currency for currency, _ in needs}
    if len(currencies) != 1:
        raise InvalidOrder("The orders of a list must hold the same currency", field="side")
    return needs[0][0], max(amount for _, amount in needs)


def order_row(
    *,
    user_id: int,
    market: MarketRow,
    request: OrderRequest,
    valid: ValidOrder,
    client_order_id: str,
    digest: str,
    status: OrderStatus,
    list_id: int | None = None,
    list_role: str | None = None,
) -> Order:
    spec = market.spec
    now_status = status.value
    return Order(
        user_id=user_id,
        market_id=market.id,
        client_order_id=client_order_id,
        request_hash=digest,
        list_id=list_id,
        list_role=list_role,
        side=valid.side.value,
        type=valid.type.value,
        time_in_force=valid.time_in_force.value,
        post_only=valid.post_only,
        status=now_status,
        quantity=spec.quantity(valid.quantity),
        price=request.price,
        book_price=spec.price(valid.price),
        stop_price=None if valid.stop_price is None else spec.price(valid.stop_price),
        trailing_offset=request.trailing_offset if valid.trailing else None,
        trailing_offset_type=valid.trailing.offset_type.value if valid.trailing else None,
        activation_price=(
            spec.price(valid.trailing.activation)
            if valid.trailing and valid.trailing.activation is not None
            else None
        ),
        trailing_active=bool(valid.trailing and valid.trailing.activation is None),
        expires_at=valid.expires_at,
    )


async def hold_funds(
    session: AsyncSession, user_id: int, currency: str, amount: Decimal, reference: str
) -> int:
    try:
        hold = await holds.place_hold(
            session, user_id=user_id, currency=currency, amount=amount, reference=reference
        )
    except InsufficientFunds as error:
        raise insufficient(currency, amount) from error
    return hold.id


def insufficient(currency: str, amount: Decimal) -> InsufficientFunds:
    return InsufficientFunds(
        f"Insufficient {currency} balance: the order needs {amount.normalize():f}",
        field="quantity",
    )
