"""The one SQL shape of candles built from finer rows, shared by the venue's candles (from
its fills, app/trading/reads.py), candles merged from a finer stored interval and
candles built from a source's trades (app/marketdata/reads.py): per bucket, the first
row's open, the highest high, the lowest low, the last row's close, and the volumes."""

from __future__ import annotations

from collections.abc import Sequence


def ohlcv_select(
    *,
    bucket: str,
    rows: str,
    order: Sequence[str],
    volume: str,
    quote_volume: str,
    trades: str,
    open: str = "price",
    high: str = "price",
    low: str = "price",
    close: str = "price",
) -> str:
    """``SELECT t, open, high, low, close, volume, quote_volume, trades FROM rows``, a row
    per ``bucket`` (an SQL expression: the candle's open time), ordered by it. ``order``:
    the columns that order the rows within a bucket (first and last); ``open`` ...
    ``close``: what each takes from its rows (a trade's price, a candle's own);
    ``volume``, ``quote_volume``, ``trades``: aggregate expressions."""
    ascending = ", ".join(order)
    descending = ", ".join(f"{column} DESC" for column in order)
    return f"""
    SELECT {bucket} AS t,
           (array_agg({open} ORDER BY {ascending}))[1] AS open, max({high}) AS high,
           min({low}) AS low, (array_agg({close} ORDER BY {descending}))[1] AS close,
           {volume} AS volume, {quote_volume} AS quote_volume, {trades} AS trades
    FROM {rows}
    GROUP BY t ORDER BY t
    """  # noqa: S608 (no input in the text: the callers' column and table names)
