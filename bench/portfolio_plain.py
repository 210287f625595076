"""The portfolio baseline: a hand-written Starlette + asyncpg endpoint answering the same
JSON as ``{ me { portfolio { equity positions { currency quantity averageCost
unrealizedPnl value } } } }`` for the bearer of the token.

The same authentication as the GraphQL path, by calling the same service function
(``authenticate``: JWT decode and verify, Redis EXISTS on the revoked-jti key, the user
row from PostgreSQL, as ``bench/plain.py``'s ``/me``); then one statement on a plain
asyncpg pool (the portfolio query written out here) and the JSON built by hand. So the
ratio measures GraphQL, the app's middleware and the service layer, not the I/O.

Served by ``uvicorn bench.portfolio_plain:create_app --factory`` with the app's environment.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.accounts.sessions import authenticate
from app.core.errors import InvalidToken
from app.core.logs import configure_logging
from app.core.settings import Settings
from app.runtime import build_runtime

PORTFOLIO_SQL = """
    WITH balances AS (
        SELECT currency, sum(balance) AS quantity
        FROM ledger_accounts WHERE user_id = $1 GROUP BY currency
    ), assets AS (
        SELECT currency FROM balances WHERE quantity <> 0
        UNION SELECT currency FROM positions WHERE user_id = $1
    )
    SELECT s.currency, coalesce(b.quantity, 0) AS quantity,
           coalesce(p.quantity, 0) AS tracked, coalesce(p.cost_usd, 0) AS cost,
           coalesce(r.usd_price, 0) AS price, c.scale
    FROM assets s
    JOIN currencies c ON c.code = s.currency
    LEFT JOIN balances b ON b.currency = s.currency
    LEFT JOIN positions p ON p.user_id = $1 AND p.currency = s.currency
    LEFT JOIN reference_prices r ON r.currency = s.currency
    ORDER BY s.currency
"""
CENTS = Decimal("0.01")
COST_STEP = Decimal("1e-8")


def plain(value: Decimal) -> str:
    """The Decimal scalar's text: plain notation, no trailing zeros."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def scaled(value: Decimal, places: int) -> str:
    """An amount at its scale, as the API shows it: trailing zeros to ``places`` decimals,
    more only when the value has them (never rounded)."""
    if not value:
        value = Decimal(0)
    shown = value.quantize(Decimal(1).scaleb(-places))
    return format(shown if shown == value else value, "f")


def position(row: asyncpg.Record) -> tuple[dict[str, Any], Decimal]:
    quantity, tracked, cost, price = row["quantity"], row["tracked"], row["cost"], row["price"]
    value = quantity * price
    average = (cost / tracked).quantize(COST_STEP) if tracked else None
    return {
        "currency": row["currency"],
        "quantity": scaled(quantity, row["scale"]),
        "averageCost": None if average is None else plain(average),
        "unrealizedPnl": scaled((tracked * price - cost).quantize(CENTS), 2),
        "value": scaled(value.quantize(CENTS), 2),
    }, value


async def portfolio(request: Request) -> JSONResponse:
    state = request.app.state
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return JSONResponse({"data": {"me": None}})
    try:
        auth = await authenticate(rt=state.rt, access_token=token)
    except InvalidToken as error:
        return JSONResponse({"errors": [{"message": error.message}]}, status_code=401)
    async with state.pool.acquire() as connection:
        rows = await connection.fetch(PORTFOLIO_SQL, auth.user.id)
    positions, equity = [], Decimal(0)
    for row in rows:
        item, value = position(row)
        positions.append(item)
        equity += value
    body = {"equity": scaled(equity.quantize(CENTS), 2), "positions": positions}
    return JSONResponse({"data": {"me": {"portfolio": body}}})


def create_app() -> Starlette:
    settings = Settings()
    configure_logging(level=settings.log_level, json_output=settings.log_json)
    if not (settings.database_url and settings.redis_url):
        raise RuntimeError("DATABASE_URL and REDIS_URL are required")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        url = settings.database_url or ""
        app.state.rt = build_runtime(settings, database_url=url, redis_url=settings.redis_url or "")
        app.state.pool = await asyncpg.create_pool(
            url.replace("postgresql+asyncpg://", "postgresql://"),
            min_size=1,
            max_size=settings.db_pool_size + settings.db_max_overflow,
        )
        try:
            yield
        finally:
            await app.state.pool.close()
            await app.state.rt.aclose()

    return Starlette(routes=[Route("/portfolio", portfolio, methods=["POST"])], lifespan=lifespan)
