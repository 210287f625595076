"""The leaderboard: a periodic job computes every leader's statistics per period into
``leader_stats``; the ``leaderboard`` read pages through them, cached in Redis.

The job (``recompute_leaderboard``, every LEADERBOARD_INTERVAL_SECONDS) reads every
leader's inputs in four set-based statements (leaders with their live follows, daily
closes, external flows, fills), computes in Python (``app.social.domain.leaderboard``) and
writes all rows with one upsert, in one transaction under an advisory lock (a second
process running it at the same time skips). Statistics are computed for every leader;
``ranked`` is true when the leader made at least LEADERBOARD_MIN_TRADES trades (fills)
in the period.

External flows are the leader's ledger postings in entries that are neither trades nor
staking rewards (deposits, refunds, withdrawals with their fee, transfers, profit
share, corrections...; holds and staking moves stay inside the user and sum to zero),
valued in USD at the reference prices of the run (stablecoins and USD at 1; the
platform keeps no price history). Followers are the follows ACTIVE or PAUSED, assets
under copy the sum of their allocations (quote currency, as on ``Leader``).

The read shows ranked rows of ACTIVE, PUBLIC leaders: a STOPPED leader takes no new
followers and an INVITE_ONLY one is not open to the public, so neither is advertised.
It sorts descending, except MAX_DRAWDOWN (smallest first); nulls last; ties by leader
id. Rank is the position in that order. Pages are cached under (generation, period,
sort, first, after) for LEADERBOARD_CACHE_TTL_SECONDS (0: no cache); the job increments
the generation after committing, so the next read misses and sees the new figures. A
cached page is the JSON of the uncached one, and both are built from that JSON, so they
are equal. Without Redis, reads are answered uncached.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import and_, or_, select, tuple_

from app.core.errors import ValidationFailed
from app.runtime import Runtime
from app.social.domain.leaderboard import (
    Close,
    Flow,
    Period,
    PeriodStats,
    TradeFill,
    all_periods,
)
from db.models import Leader, LeaderStat
from db.queries import Page, check_page_size
from db.raw import driver

log = logging.getLogger(__name__)

_SCALE = Decimal("1e-18")
_LIMIT = Decimal("1e20")  # NUMERIC(38, 18) holds less than this
_LOCK = 0x1EADB0A2D  # pg advisory lock of the job
# Entry kinds that are not money entering or leaving the user: trading (gains and fees
# are performance), staking rewards (income). Holds and stake moves sum to zero per user.
INTERNAL_ENTRY_KINDS = ["TRADE", "STAKING_REWARD", "HOLD", "HOLD_VOID", "STAKE", "UNSTAKE"]


class SortBy(StrEnum):
    ROI = "ROI"
    PNL = "PNL"
    WIN_RATE = "WIN_RATE"
    SHARPE = "SHARPE"
    SORTINO = "SORTINO"
    MAX_DRAWDOWN = "MAX_DRAWDOWN"
    FOLLOWERS = "FOLLOWERS"
    AUM = "AUM"


# the column each sort orders by; MAX_DRAWDOWN ascending (smallest first), others descending
_COLUMN = {
    SortBy.ROI: LeaderStat.roi,
    SortBy.PNL: LeaderStat.pnl,
    SortBy.WIN_RATE: LeaderStat.win_rate,
    SortBy.SHARPE: LeaderStat.sharpe,
    SortBy.SORTINO: LeaderStat.sortino,
    SortBy.MAX_DRAWDOWN: LeaderStat.max_drawdown,
    SortBy.FOLLOWERS: LeaderStat.followers,
    SortBy.AUM: LeaderStat.aum,
}
_ASCENDING = frozenset({SortBy.MAX_DRAWDOWN})


@dataclass(frozen=True, slots=True)
class LeaderStats:
    """One ``leader_stats`` row."""

    leader_id: int
    period: Period
    roi: Decimal | None
    pnl: Decimal
    win_rate: Decimal | None
    max_drawdown: Decimal | None
    sharpe: Decimal | None
    sortino: Decimal | None
    followers: int
    aum: Decimal
    trades: int
    ranked: bool


@dataclass(frozen=True, slots=True)
class LeaderboardEntry:
    rank: int
    stats: LeaderStats


# --- the job ----------------------------------------------------------------------------

_LEADERS_SQL = """
    SELECT l.user_id, count(f.id) AS followers, coalesce(sum(f.allocation), 0) AS aum
    FROM leaders l
    LEFT JOIN follows f ON f.leader_id = l.user_id AND f.status IN ('ACTIVE', 'PAUSED')
    GROUP BY l.user_id
"""
_CLOSES_SQL = """
    SELECT DISTINCT ON (s.user_id, (s.taken_at AT TIME ZONE 'UTC')::date)
           s.user_id, s.taken_at, s.equity_usd
    FROM equity_snapshots s JOIN leaders l ON l.user_id = s.user_id
    WHERE s.taken_at <= $1
    ORDER BY s.user_id, (s.taken_at AT TIME ZONE 'UTC')::date, s.taken_at DESC
"""
_FLOWS_SQL = """
    SELECT a.user_id, p.created_at, sum(p.amount * coalesce(r.usd_price, 0)) AS amount
    FROM leaders l
    JOIN ledger_accounts a ON a.user_id = l.user_id
    JOIN postings p ON p.account_id = a.id
    JOIN journal_entries e ON e.id = p.entry_id
    LEFT JOIN reference_prices r ON r.currency = p.currency
    WHERE e.kind <> ALL($2::text[]) AND p.created_at <= $1
    GROUP BY a.user_id, p.entry_id, p.created_at
    HAVING sum(p.amount * coalesce(r.usd_price, 0)) <> 0
"""
_FILLS_SQL = """
    SELECT f.user_id, f.created_at, f.market_id, f.side, f.quantity, f.quote_amount, f.fee
    FROM fills f JOIN leaders l ON l.user_id = f.user_id
    WHERE f.created_at <= $1
    ORDER BY f.user_id, f.id
"""
_UPSERT_SQL = """
    INSERT INTO leader_stats (leader_id, period, roi, pnl, win_rate, max_drawdown, sharpe,
                              sortino, followers, aum, trades, ranked, computed_at)
    SELECT *, $13::timestamptz FROM unnest($1::bigint[], $2::text[], $3::numeric[],
        $4::numeric[], $5::numeric[], $6::numeric[], $7::numeric[], $8::numeric[],
        $9::bigint[], $10::numeric[], $11::bigint[], $12::boolean[])
    ON CONFLICT (leader_id, period) DO UPDATE SET
        roi = excluded.roi, pnl = excluded.pnl, win_rate = excluded.win_rate,
        max_drawdown = excluded.max_drawdown, sharpe = excluded.sharpe,
        sortino = excluded.sortino, followers = excluded.followers, aum = excluded.aum,
        trades = excluded.trades, ranked = excluded.ranked, computed_at = excluded.computed_at
"""


async def recompute_leaderboard(rt: Runtime) -> int:
    """Every leader's statistics for every period, written in one transaction; then the
    cached pages are invalidated. Returns the rows written (0 when another process is
    running it)."""
    now = rt.now()
    async with rt.sessions() as session, session.begin():
        connection = await driver(session)
        if not await connection.fetchval("SELECT pg_try_advisory_xact_lock($1)", _LOCK):
            return 0
        leaders = await connection.fetch(_LEADERS_SQL)
        closes = _grouped(await connection.fetch(_CLOSES_SQL, now), _close)
        flows = _grouped(await connection.fetch(_FLOWS_SQL, now, INTERNAL_ENTRY_KINDS), _flow)
        fills = _grouped(await connection.fetch(_FILLS_SQL, now), _fill)
        # CPU-bound (milliseconds per leader): in a thread, so the server keeps answering
        rows = await asyncio.to_thread(
            _compute, now, leaders, closes, flows, fills, rt.settings.leaderboard_min_trades
        )
        await connection.execute(_UPSERT_SQL, *_columns(rows), now)
    await _bump_generation(rt)
    return len(rows)


def _compute(
    now: datetime,
    leaders: Sequence[Any],
    closes: dict[int, list[Close]],
    flows: dict[int, list[Flow]],
    fills: dict[int, list[TradeFill]],
    min_trades: int,
) -> list[LeaderStats]:
    return [
        _row(leader, stats, min_trades=min_trades)
        for leader in leaders
        for stats in all_periods(
            now=now,
            closes=closes.get(leader["user_id"], []),
            flows=flows.get(leader["user_id"], []),
            fills=fills.get(leader["user_id"], []),
        )
    ]


def _grouped(records: Iterable[Any], make: Any) -> dict[int, list[Any]]:
    grouped: dict[int, list[Any]] = defaultdict(list)
    for record in records:
        grouped[record["user_id"]].append(make(record))
    return grouped


def _close(r: Any) -> Close:
    return Close(r["taken_at"], r["equity_usd"])


def _flow(r: Any) -> Flow:
    return Flow(r["created_at"], r["amount"])


def _fill(r: Any) -> TradeFill:
    return TradeFill(
        r["created_at"], r["market_id"], r["side"], r["quantity"], r["quote_amount"], r["fee"]
    )


def _stored(value: Decimal | None) -> Decimal | None:
    """Rounded to the column's 18 places; None when it does not fit (a ratio over a
    near-zero deviation)."""
    if value is None or abs(value) >= _LIMIT:
        return None
    return value.quantize(_SCALE)


def _row(leader: Any, stats: PeriodStats, *, min_trades: int) -> LeaderStats:
    return LeaderStats(
        leader_id=leader["user_id"],
        period=stats.period,
        roi=_stored(stats.roi),
        pnl=_stored(stats.pnl) or Decimal(0),
        win_rate=_stored(stats.win_rate),
        max_drawdown=_stored(stats.max_drawdown),
        sharpe=_stored(stats.sharpe),
        sortino=_stored(stats.sortino),
        followers=leader["followers"],
        aum=leader["aum"],
        trades=stats.trades,
        ranked=stats.trades >= min_trades,
    )


def _columns(rows: Sequence[LeaderStats]) -> list[list[Any]]:
    return [
        [r.leader_id for r in rows],
        [r.period.value for r in rows],
        [r.roi for r in rows],
        [r.pnl for r in rows],
        [r.win_rate for r in rows],
        [r.max_drawdown for r in rows],
        [r.sharpe for r in rows],
        [r.sortino for r in rows],
        [r.followers for r in rows],
        [r.aum for r in rows],
        [r.trades for r in rows],
        [r.ranked for r in rows],
    ]


# --- the cache --------------------------------------------------------------------------


def _generation_key(rt: Runtime) -> str:
    return rt.redis_key("leaderboard", "generation")


async def _bump_generation(rt: Runtime) -> None:
    try:
        await rt.redis.incr(_generation_key(rt))
    except RedisError:  # pages cached before expire with their TTL
        log.warning("leaderboard cache not invalidated: Redis unavailable", exc_info=True)


async def _cached(rt: Runtime, parts: Sequence[str]) -> tuple[str | None, bytes | None]:
    """(the page's cache key, its cached JSON); (None, None) when Redis is down."""
    try:
        generation = await rt.redis.get(_generation_key(rt))
        key = rt.redis_key("leaderboard", (generation or b"0").decode(), *parts)
        return key, await rt.redis.get(key)
    except RedisError:
        log.warning("leaderboard cache unavailable", exc_info=True)
        return None, None


async def _store(rt: Runtime, key: str, payload: bytes) -> None:
    try:
        await rt.redis.set(key, payload, ex=rt.settings.leaderboard_cache_ttl_seconds)
    except RedisError:
        log.warning("leaderboard page not cached: Redis unavailable", exc_info=True)


# --- the read ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Cursor:
    rank: int
    value: Decimal | None
    leader_id: int


def _encode_cursor(period: Period, sort_by: SortBy, cursor: _Cursor) -> str:
    value = None if cursor.value is None else str(cursor.value)
    text = json.dumps([period.value, sort_by.value, cursor.rank, value, cursor.leader_id])
    return base64.urlsafe_b64encode(text.encode()).decode()


def _decode_cursor(period: Period, sort_by: SortBy, after: str) -> _Cursor:
    """A cursor of this period and sort, or ValidationFailed."""
    try:
        p, s, rank, value, leader_id = json.loads(base64.urlsafe_b64decode(after.encode()))
        if (p, s) != (period.value, sort_by.value):
            raise ValueError("cursor of another leaderboard")
        if not isinstance(rank, int) or not isinstance(leader_id, int):
            raise ValueError("bad cursor fields")
        number = None if value is None else Decimal(str(value))
        if number is not None and not number.is_finite():
            raise ValueError("not a number")
        return _Cursor(rank, number, leader_id)
    except (ValueError, TypeError, ArithmeticError, binascii.Error, UnicodeDecodeError) as e:
        raise ValidationFailed("Invalid cursor", field="after") from e


def _page_statement(period: Period, sort_by: SortBy, first: int, cursor: _Cursor | None) -> Any:
    column: Any = _COLUMN[sort_by]
    ascending = sort_by in _ASCENDING
    statement = (
        select(LeaderStat)
        .join(Leader, Leader.user_id == LeaderStat.leader_id)
        .where(
            LeaderStat.period == period.value,
            LeaderStat.ranked,
            Leader.status == "ACTIVE",
            Leader.visibility == "PUBLIC",
        )
        .order_by((column.asc() if ascending else column.desc()).nulls_last(), LeaderStat.leader_id)
        .limit(first + 1)
    )
    if cursor is None:
        return statement
    later_id = LeaderStat.leader_id > cursor.leader_id
    if cursor.value is None:
        return statement.where(column.is_(None), later_id)
    beyond = column > cursor.value if ascending else column < cursor.value
    return statement.where(or_(beyond, and_(column == cursor.value, later_id), column.is_(None)))


def _sort_value(sort_by: SortBy, stats: LeaderStats) -> Decimal | None:
    value = getattr(stats, _COLUMN[sort_by].key)
    return None if value is None else Decimal(value)


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _undec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _stats_json(s: LeaderStats) -> list[Any]:
    return [
        s.leader_id,
        s.period.value,
        _dec(s.roi),
        str(s.pnl),
        _dec(s.win_rate),
        _dec(s.max_drawdown),
        _dec(s.sharpe),
        _dec(s.sortino),
        s.followers,
        str(s.aum),
        s.trades,
        s.ranked,
    ]


def _stats_from_json(v: list[Any]) -> LeaderStats:
    return LeaderStats(
        leader_id=v[0],
        period=Period(v[1]),
        roi=_undec(v[2]),
        pnl=Decimal(v[3]),
        win_rate=_undec(v[4]),
        max_drawdown=_undec(v[5]),
        sharpe=_undec(v[6]),
        sortino=_undec(v[7]),
        followers=v[8],
        aum=Decimal(v[9]),
        trades=v[10],
        ranked=v[11],
    )


def _stats_from_row(row: LeaderStat) -> LeaderStats:
    """The dataclass's fields are the table's columns."""
    values = {name: getattr(row, name) for name in LeaderStats.__slots__}
    return LeaderStats(**values | {"period": Period(row.period)})


async def _query_page(
    rt: Runtime, *, period: Period, sort_by: SortBy, first: int, cursor: _Cursor | None
) -> bytes:
    """The page as JSON: {"entries": [[cursor, rank, stats...]], "next": bool}."""
    async with rt.sessions() as session:
        rows = (await session.scalars(_page_statement(period, sort_by, first, cursor))).all()
    records = [_stats_from_row(row) for row in rows]
    start = cursor.rank if cursor is not None else 0
    entries = []
    for i, stats in enumerate(records[:first]):
        rank = start + i + 1
        position = _Cursor(rank, _sort_value(sort_by, stats), stats.leader_id)
        entries.append([_encode_cursor(period, sort_by, position), rank, _stats_json(stats)])
    return json.dumps({"entries": entries, "next": len(records) > first}).encode()


def _page_from_json(payload: bytes, *, has_previous: bool) -> Page[LeaderboardEntry]:
    data = json.loads(payload)
    return Page(
        items=[
            (cursor, LeaderboardEntry(rank, _stats_from_json(stats)))
            for cursor, rank, stats in data["entries"]
        ],
        has_next_page=data["next"],
        has_previous_page=has_previous,
    )


async def leaderboard_page(
    rt: Runtime, *, period: Period, sort_by: SortBy, first: int, after: str | None
) -> Page[LeaderboardEntry]:
    """One page of the ranked, public, active leaders (cached; see the module doc)."""
    check_page_size(first)
    cursor = _decode_cursor(period, sort_by, after) if after is not None else None
    key, payload = None, None
    if rt.settings.leaderboard_cache_ttl_seconds > 0:
        key, payload = await _cached(rt, [period.value, sort_by.value, str(first), after or ""])
    if payload is None:
        payload = await _query_page(rt, period=period, sort_by=sort_by, first=first, cursor=cursor)
        if key is not None:
            await _store(rt, key, payload)
    return _page_from_json(payload, has_previous=after is not None)


async def stats_by_keys(
    rt: Runtime, keys: Sequence[tuple[int, Period]]
) -> list[LeaderStats | None]:
    """``leader_stats`` rows for (leader id, period) keys, in their order: one query."""
    if not keys:
        return []
    wanted = [(leader_id, period.value) for leader_id, period in keys]
    async with rt.sessions() as session:
        rows = await session.scalars(
            select(LeaderStat).where(tuple_(LeaderStat.leader_id, LeaderStat.period).in_(wanted))
        )
        found = {(r.leader_id, Period(r.period)): _stats_from_row(r) for r in rows}
    return [found.get(k) for k in keys]
