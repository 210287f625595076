"""Markets: their rules as ``MarketSpec`` and their live figures (last price, sequences)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.trading.domain.errors import UnknownMarket
from app.trading.domain.orders import MarketSpec, MarketStatus
from db.models import Currency, Market
from db.raw import bind_select, driver

_MARKET_COLUMNS = bind_select(
    "app.trading.markets._MARKET_COLUMNS",
    """
    m.id, m.symbol, m.base, m.quote, b.scale AS base_scale, q.scale AS quote_scale,
    m.tick_size, m.lot_size, m.min_notional, m.maker_fee, m.taker_fee, m.status,
    m.reference_price, m.last_price, m.applied_seq, m.book_seq, m.last_trade_id
""",
    {"m": Market, "b": Currency, "q": Currency},
)
_MARKET_FROM = """
    FROM markets m
    JOIN currencies b ON b.code = m.base
    JOIN currencies q ON q.code = m.quote
"""
_MARKET_SQL = " ".join(("SELECT", _MARKET_COLUMNS, _MARKET_FROM))


def _with_rates_sql(extra: str = "") -> str:
    """The markets of $1 (symbols) with their quote's USD rate; ``extra``: one more
    select-list item (``AS extra``), its parameters after $1."""
    return " ".join(
        (
            "SELECT",
            _MARKET_COLUMNS,
            ", coalesce(r.usd_price, 0) AS quote_usd",
            f", {extra} AS extra" if extra else "",
            _MARKET_FROM,
            "LEFT JOIN reference_prices r ON r.currency = m.quote",
            "WHERE m.symbol = ANY($1::text[])",
        )
    )


_MARKETS_WITH_RATES_SQL = _with_rates_sql()


@dataclass(frozen=True, slots=True)
class MarketRow:
    id: int
    spec: MarketSpec
    reference_price: Decimal
    last_price: Decimal | None
    applied_seq: int
    book_seq: int
    last_trade_id: int

    @property
    def symbol(self) -> str:
        return self.spec.symbol


def _row(r) -> MarketRow:  # type: ignore[no-untyped-def]
    spec = MarketSpec(
        symbol=r["symbol"],
        base=r["base"],
        quote=r["quote"],
        base_scale=r["base_scale"],
        quote_scale=r["quote_scale"],
        tick_size=r["tick_size"].normalize(),
        lot_size=r["lot_size"].normalize(),
        min_notional=r["min_notional"].normalize(),
        maker_fee=r["maker_fee"].normalize(),
        taker_fee=r["taker_fee"].normalize(),
        status=MarketStatus(r["status"]),
    )
    return MarketRow(
        id=r["id"],
        spec=spec,
        reference_price=r["reference_price"],
        last_price=r["last_price"],
        applied_seq=r["applied_seq"],
        book_seq=r["book_seq"],
        last_trade_id=r["last_trade_id"],
    )


async def list_markets(session: AsyncSession) -> list[MarketRow]:
    connection = await driver(session)
    return [_row(r) for r in await connection.fetch(_MARKET_SQL + " ORDER BY m.id")]


async def markets_by_ids(session: AsyncSession, ids: list[int]) -> dict[int, MarketRow]:
    connection = await driver(session)
    rows = await connection.fetch(_MARKET_SQL + " WHERE m.id = ANY($1::bigint[])", ids)
    return {r["id"]: _row(r) for r in rows}


async def markets_with_quote_rates(
    session: AsyncSession, symbols: list[str]
) -> dict[str, tuple[MarketRow, Decimal]]:
    """The markets of ``symbols`` (upper case) that exist, by symbol, each with the USD
    price of its quote currency (0 when it has none): one query."""
    connection = await driver(session)
    rows = await connection.fetch(_MARKETS_WITH_RATES_SQL, symbols)
    return {r["symbol"]: (_row(r), r["quote_usd"]) for r in rows}


async def markets_with_quote_rates_and(
    session: AsyncSession, symbols: list[str], extra: str, *parameters: Any
) -> tuple[dict[str, tuple[MarketRow, Decimal]], Any]:
    """``markets_with_quote_rates`` with one more select-list item in the same statement
    (the risk engine's batch context): the markets, and that item's value (None when no
    market matched)."""
    connection = await driver(session)
    rows = await connection.fetch(_extra_sql(extra), symbols, *parameters)
    found = {r["symbol"]: (_row(r), r["quote_usd"]) for r in rows}
    return found, rows[0]["extra"] if rows else None


@functools.lru_cache(maxsize=8)
def _extra_sql(extra: str) -> str:
    return _with_rates_sql(extra)


async def market_with_quote_rate(session: AsyncSession, symbol: str) -> tuple[MarketRow, Decimal]:
    """``markets_with_quote_rates`` of one market, or ``UnknownMarket``."""
    found = await markets_with_quote_rates(session, [symbol.upper()])
    if symbol.upper() not in found:
        raise unknown_market(symbol)
    return found[symbol.upper()]


def unknown_market(symbol: str) -> UnknownMarket:
    return UnknownMarket(f"There is no market {symbol}", field="symbol")


async def market_by_symbol(session: AsyncSession, symbol: str) -> MarketRow:
    connection = await driver(session)
    row = await connection.fetchrow(_MARKET_SQL + " WHERE m.symbol = $1", symbol.upper())
    if row is None:
        raise unknown_market(symbol)
    return _row(row)


async def market_by_id(session: AsyncSession, market_id: int) -> MarketRow:
    connection = await driver(session)
    row = await connection.fetchrow(_MARKET_SQL + " WHERE m.id = $1", market_id)
    if row is None:
        raise UnknownMarket()
    return _row(row)


async def set_market_status(session: AsyncSession, symbol: str, status: MarketStatus) -> MarketRow:
    connection = await driver(session)
    await connection.execute(
        "UPDATE markets SET status = $2 WHERE symbol = $1", symbol.upper(), status.value
    )
    return await market_by_symbol(session, symbol)
