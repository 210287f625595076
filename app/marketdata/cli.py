"""``python -m app data import FILE --symbol BTC/USDT --interval 1m --source NAME``:
import an OHLCV file; ``python -m app data import-trades FILE --symbol BTC/USDT --source
NAME``: a trade file. Both show progress (a bar on a terminal, a line every few seconds
otherwise), then a summary. Exit status: 0 imported, 1 imported but some rows were
rejected, 2 nothing imported (the file or an argument was refused)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TextIO

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.errors import UserError
from app.marketdata.domain.candles import INTERVALS
from app.marketdata.importer import ImportSummary, import_file
from app.marketdata.trade_importer import TradeImportSummary, import_trades
from db.session import create_engine, create_sessionmaker


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    data = commands.add_parser("data", help="market data: import OHLCV and trade files")
    actions = data.add_subparsers(dest="action", required=True)
    load = actions.add_parser(
        "import",
        help="import an OHLCV file (CSV or JSON) into the market data store",
        description="Formats: CSV with a header, headerless CSV in ccxt order"
        " (ts, open, high, low, close, volume), JSON arrays of [ts, o, h, l, c, v]"
        " (ccxt fetch_ohlcv), JSON objects, JSON Lines. Timestamps: epoch s, ms, µs or"
        " ns, or ISO 8601. Importing the same file again changes nothing.",
    )
    _file_arguments(load)
    load.add_argument("--interval", required=True, choices=list(INTERVALS))
    load.add_argument(
        "--time-label",
        choices=("open", "end"),
        default="open",
        help="what each row's time is: the candle's open (default), or its end: a date on"
        " its last day (2012-01-31 for January's 1M candle) or an inclusive close time",
    )

    trades = actions.add_parser(
        "import-trades",
        help="import a trade file (CSV or JSON) into the market data store",
        description="Formats: ccxt fetch_trades JSON (objects with timestamp, id, side, price,"
        " amount), Binance trades and aggTrades CSV (headerless), CSV with a header or JSON"
        " objects in common names (time, price, amount/qty/size, side, id). Importing the"
        " same file again changes nothing.",
    )
    _file_arguments(trades)


def _file_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path)
    parser.add_argument("--symbol", required=True, help="BASE/QUOTE, e.g. BTC/USDT")
    parser.add_argument(
        "--source", required=True, help="file:<name> or exchange:<name>; a bare name is file:"
    )
    parser.add_argument("--format", choices=("auto", "csv", "json"), default="auto")


Sessions = async_sessionmaker[AsyncSession]


def run_command(database_url: str, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run ``data import`` or ``data import-trades``; the exit status."""
    path: Path = args.file
    if not path.is_file():
        print(f"No such file: {path}", file=sys.stderr)
        return 2
    show = progress_display(path.stat().st_size, sys.stderr)

    def job(sessions: Sessions) -> Awaitable[ImportSummary | TradeImportSummary]:
        common = {"path": path, "source": args.source, "symbol": args.symbol}
        if args.action == "import-trades":
            return import_trades(sessions, **common, format=args.format, progress=show)
        return import_file(
            sessions,
            **common,
            interval=args.interval,
            format=args.format,
            time_label=args.time_label,
            progress=show,
        )

    async def run() -> ImportSummary | TradeImportSummary:
        engine = create_engine(database_url, pool_size=1, max_overflow=0)
        try:
            return await job(create_sessionmaker(engine))
        finally:
            await engine.dispose()

    try:
        summary = asyncio.run(run())
    except UserError as error:
        show(None)
        where = f"{error.field}: " if error.field else ""
        print(f"Nothing imported: {where}{error.message}", file=sys.stderr)
        return 2
    show(None)
    print(report(path, summary), file=out)
    return 1 if summary.rejected else 0


def progress_display(total: int, stream: TextIO) -> Callable[[int | None], None]:
    """A callback taking bytes read (None: done): a bar redrawn on a terminal, else a line
    every 5 seconds."""
    terminal = stream.isatty()
    shown = {"at": time.monotonic(), "drawn": False}

    def show(done: int | None) -> None:
        now = time.monotonic()
        if done is None:
            if shown["drawn"] and terminal:
                stream.write("\n")
            return
        if now - shown["at"] < (0.1 if terminal else 5.0):
            return
        shown["at"], shown["drawn"] = now, True
        share = done / total if total else 1.0
        if terminal:
            bar = "#" * int(share * 30)
            stream.write(f"\r[{bar:<30}] {share:6.1%}  {done:,} of {total:,} bytes")
        else:
            stream.write(f"importing: {share:.1%} ({done:,} of {total:,} bytes)\n")
        stream.flush()

    return show


def _at(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def report(path: Path, s: ImportSummary | TradeImportSummary) -> str:
    what = s.interval if isinstance(s, ImportSummary) else "trades"
    lines = [
        f"Imported {path} as {s.source} {s.symbol} {what}",
        f"  rows read   {s.rows}",
        f"  inserted    {s.inserted}",
        f"  updated     {s.updated}",
        f"  unchanged   {s.unchanged}",
        f"  rejected    {s.rejected}",
    ]
    lines += [f"    line {r.line}: {r.reason}" for r in s.rejections]
    if s.rejected > len(s.rejections):
        lines.append(f"    ... and {s.rejected - len(s.rejections)} more")
    if s.duplicates:
        lines.append(f"  duplicates  {s.duplicates} (a later row with the same key wins)")
    lines.append(f"  range       {_at(s.first)} .. {_at(s.last)}")
    if isinstance(s, ImportSummary):
        lines += _gap_lines(s)
    return "\n".join(lines)


def _gap_lines(s: ImportSummary) -> list[str]:
    lines = [f"  gaps        {s.gap_count} ({s.missing} candles missing)"]
    lines += [f"    {_at(g.start)} up to {_at(g.end)}: {g.missing} missing" for g in s.gaps]
    if s.gap_count > len(s.gaps):
        lines.append(f"    ... and {s.gap_count - len(s.gaps)} more")
    return lines
