"""Importing a trade file into the store: ``import_trades``.

One transaction per import. The file is streamed: its valid trades are copied in batches
into a temporary table, then written in one statement, which keeps the last row of each
trade id (counted as duplicates), numbers the ids it makes for rows without one
(``trades.made_id``: identical trades of the file are 1, 2 ...; so do overlapping files
without ids), and upserts by (source, symbol, trade id): a trade already held with the
same values is left alone (importing the same file again changes nothing), one held with
others takes the file's. Rows that are no trade are left out and reported with their line
and reason; a file in no known layout imports nothing. Python keeps nothing per row."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.errors import ValidationFailed
from app.marketdata.domain import layouts
from app.marketdata.domain import trades as rules
from app.marketdata.domain.candles import VENUE, parse_source, parse_symbol
from app.marketdata.files import Progress, Row, detect_format, rows
from app.marketdata.reading import Layout, Tally, values
from db.models.marketdata import MarketTrade
from db.raw import bind, driver
from db.session import in_transaction

BATCH = 5000
_STAGED = "imported_trades"  # a temporary table, dropped at the end of the transaction
_STAGE = f"""
    CREATE TEMPORARY TABLE {_STAGED} (
        line bigint, trade_id text, made boolean, time timestamptz, price numeric,
        amount numeric, side text
    ) ON COMMIT DROP
"""
_STAGED_FIELDS = ("line", "trade_id", "made", "time", "price", "amount", "side")
_VALUES = bind(
    "app.marketdata.trade_importer._VALUES", MarketTrade, ("time", "price", "amount", "side")
)
_TABLE = MarketTrade.__tablename__
_WRITE = f"""
    WITH numbered AS (
        SELECT line, time, price, amount, side,
               CASE WHEN made THEN trade_id || ':' || row_number()
                                      OVER (PARTITION BY made, trade_id ORDER BY line)
                    ELSE trade_id END AS trade_id
        FROM {_STAGED}
    ),
    latest AS (
        SELECT DISTINCT ON (trade_id) * FROM numbered ORDER BY trade_id, line DESC
    ),
    written AS (
        INSERT INTO {_TABLE} (source, symbol, trade_id, time, price, amount, side)
        SELECT $1, $2, trade_id, time, price, amount, side FROM latest ORDER BY time, line
        ON CONFLICT (source, symbol, trade_id) DO UPDATE
        SET {", ".join(f"{c} = EXCLUDED.{c}" for c in _VALUES)}
        WHERE ({", ".join(f"{_TABLE}.{c}" for c in _VALUES)})
              IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in _VALUES)})
        RETURNING xmax = 0 AS inserted
    )
    SELECT (SELECT count(*) FROM latest) AS trades,
           count(*) FILTER (WHERE inserted) AS inserted,
           count(*) FILTER (WHERE NOT inserted) AS updated
    FROM written
"""  # noqa: S608 (no input in the text: the table and column names)


@dataclass
class TradeImportSummary(Tally):
    source: str
    symbol: str


async def import_trades(
    sessions: async_sessionmaker[AsyncSession],
    *,
    path: Path,
    source: str,
    symbol: str,
    format: Literal["auto", "csv", "json"] = "auto",
    progress: Progress | None = None,
    batch_size: int = BATCH,
) -> TradeImportSummary:
    """Import ``path`` as ``symbol``'s trades from ``source``."""
    source = parse_source(source)
    if source == VENUE:
        raise ValidationFailed(
            "VENUE trades are the platform's fills; import under a file source", field="source"
        )
    job = _Import(
        TradeImportSummary(source=source, symbol=parse_symbol(symbol)),
        path,
        format,
        progress or (lambda _: None),
        batch_size,
    )
    return await in_transaction(sessions, job.run)


@dataclass
class _Import:
    summary: TradeImportSummary
    path: Path
    format: Literal["auto", "csv", "json"]
    progress: Progress
    batch_size: int

    async def run(self, session: AsyncSession) -> TradeImportSummary:
        """One attempt (a retried transaction starts again from a fresh summary)."""
        s = self.summary
        summary = self.summary = TradeImportSummary(source=s.source, symbol=s.symbol)
        connection = await driver(session)
        await connection.execute(_STAGE)
        batch: list[tuple[Any, ...]] = []
        with self.path.open("rb") as stream:
            kind = detect_format(stream) if self.format == "auto" else self.format
            try:
                for line, trade in self._trades(rows(stream, kind, self.progress)):
                    self._extend_range(trade)
                    batch.append(_staged(line, trade))
                    if len(batch) >= self.batch_size:
                        await self._stage(connection, batch)
            except layouts.UnknownLayout as error:
                raise ValidationFailed(str(error), field="file") from None
        await self._stage(connection, batch)
        written = await connection.fetchrow(_WRITE, summary.source, summary.symbol)
        accepted = summary.rows - summary.rejected
        summary.duplicates = accepted - written["trades"]
        summary.inserted, summary.updated = written["inserted"], written["updated"]
        summary.unchanged = written["trades"] - summary.inserted - summary.updated
        return summary

    def _trades(self, found: Iterator[Row]) -> Iterator[tuple[int, rules.Trade]]:
        """(line, trade) of the file's trades; other rows are counted with their reasons."""
        symbol = self.summary.symbol
        layout = Layout(
            header=rules.from_header,
            headerless=rules.positional,
            keys=rules.from_object_keys,
            value=lambda fields, columns: rules.trade(fields, columns, symbol),
        )
        return values(found, layout, self.summary)

    def _extend_range(self, trade: rules.Trade) -> None:
        s = self.summary
        if s.first is None or trade.time < s.first:
            s.first = trade.time
        if s.last is None or trade.time > s.last:
            s.last = trade.time

    async def _stage(self, connection: Any, batch: list[tuple[Any, ...]]) -> None:
        if batch:
            await connection.copy_records_to_table(_STAGED, records=batch, columns=_STAGED_FIELDS)
            batch.clear()


def _staged(line: int, trade: rules.Trade) -> tuple[Any, ...]:
    made = trade.trade_id is None
    trade_id = rules.made_id(trade) if made else trade.trade_id
    return (line, trade_id, made, trade.time, trade.price, trade.amount, trade.side)
