"""Writing candles and trades a program fetched (an exchange's, through
app/exchanges/market_data.py) into the store, idempotently: a candle is keyed by (source,
symbol, interval, open time), a trade by (source, symbol, trade id); one already held
with the same values is left alone, one held with others takes the new ones (the last
candle of a series is still open when first fetched). The file importers
(``importer``, ``trade_importer``) write through the same upsert for candles."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.marketdata.domain.candles import Candle, interval_named, parse_source, parse_symbol
from app.marketdata.domain.trades import Trade, made_id
from db.models.marketdata import MarketCandle, MarketTrade
from db.raw import bind, columns, driver, unnest_parameters

CANDLE_VALUES = ("open", "high", "low", "close", "volume", "quote_volume", "trades")
_CANDLE_TYPES = (
    "timestamptz", "numeric", "numeric", "numeric", "numeric", "numeric", "numeric", "int8",
)  # fmt: skip
CANDLE_COLUMNS = bind("app.marketdata.store.CANDLE_COLUMNS", MarketCandle,
                      ("open_time", *CANDLE_VALUES))  # fmt: skip
_CANDLES = MarketCandle.__tablename__
UPSERT_CANDLES = f"""
    INSERT INTO {_CANDLES} (source, symbol, interval, {", ".join(CANDLE_COLUMNS)})
    SELECT $1, $2, $3, * FROM unnest({unnest_parameters(4, _CANDLE_TYPES)})
    ON CONFLICT (source, symbol, interval, open_time) DO UPDATE
    SET {", ".join(f"{c} = EXCLUDED.{c}" for c in CANDLE_VALUES)}
    WHERE ({", ".join(f"{_CANDLES}.{c}" for c in CANDLE_VALUES)})
          IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in CANDLE_VALUES)})
    RETURNING xmax = 0 AS inserted
"""  # noqa: S608 (no input in the text: the table and column names)
assert set(CANDLE_COLUMNS) | {"source", "symbol", "interval"} == set(
    MarketCandle.__table__.c.keys()
)

_TRADE_VALUES = bind("app.marketdata.store._TRADE_VALUES", MarketTrade,
                     ("trade_id", "time", "price", "amount", "side"))  # fmt: skip
_TRADES = MarketTrade.__tablename__
_CHANGEABLE = _TRADE_VALUES[1:]
UPSERT_TRADES = f"""
    INSERT INTO {_TRADES} (source, symbol, {", ".join(_TRADE_VALUES)})
    SELECT $1, $2, * FROM unnest($3::text[], $4::timestamptz[], $5::numeric[],
                                 $6::numeric[], $7::text[])
    ON CONFLICT (source, symbol, trade_id) DO UPDATE
    SET {", ".join(f"{c} = EXCLUDED.{c}" for c in _CHANGEABLE)}
    WHERE ({", ".join(f"{_TRADES}.{c}" for c in _CHANGEABLE)})
          IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in _CHANGEABLE)})
    RETURNING xmax = 0 AS inserted
"""  # noqa: S608 (no input in the text: the table and column names)


@dataclass(frozen=True, slots=True)
class Written:
    inserted: int
    updated: int
    unchanged: int


async def write_candles(connection: Any, source: str, symbol: str, interval: str,
                        candles: Sequence[Candle]) -> Written:  # fmt: skip
    """Upsert ``candles`` (distinct open times, in order: one lock order for all) with an
    asyncpg connection inside a transaction."""
    rows = [(c.open_time, *(getattr(c, v) for v in CANDLE_VALUES)) for c in candles]
    written = await connection.fetch(
        UPSERT_CANDLES, source, symbol, interval, *columns(rows, width=len(CANDLE_COLUMNS))
    )
    return _tally(written, len(candles))


async def store_candles(
    session: AsyncSession, *, source: str, symbol: str, interval: str, candles: Sequence[Candle]
) -> Written:
    """``candles`` of ``symbol`` at ``interval`` from ``source`` (not ``VENUE``), in the
    session's transaction; the later of two with the same open time wins."""
    interval_named(interval)
    latest = {c.open_time: c for c in candles}
    ordered = [latest[t] for t in sorted(latest)]
    connection = await driver(session)
    return await write_candles(connection, _stored(source), parse_symbol(symbol), interval,
                               ordered)  # fmt: skip


async def store_trades(
    session: AsyncSession, *, source: str, symbol: str, trades: Sequence[Trade]
) -> Written:
    """``trades`` of ``symbol`` from ``source``, in the session's transaction. A trade
    without an id gets ``made_id`` numbered among identical ones of ``trades``."""
    latest: dict[str, Trade] = {}
    seen: dict[str, int] = {}
    for trade in sorted(trades, key=lambda t: t.time):
        trade_id = trade.trade_id
        if trade_id is None:
            made = made_id(trade)
            seen[made] = seen.get(made, 0) + 1
            trade_id = f"{made}:{seen[made]}"
        latest[trade_id] = trade
    rows = [(i, t.time, t.price, t.amount, t.side) for i, t in latest.items()]
    connection = await driver(session)
    written = await connection.fetch(
        UPSERT_TRADES, _stored(source), parse_symbol(symbol), *columns(rows, width=5)
    )
    return _tally(written, len(rows))


def _stored(source: str) -> str:
    parsed = parse_source(source)
    assert parsed.startswith(("file:", "exchange:")), "the venue's data is never stored"
    return parsed


def _tally(written: list[Any], rows: int) -> Written:
    inserted = sum(1 for r in written if r["inserted"])
    return Written(inserted, len(written) - inserted, rows - len(written))
