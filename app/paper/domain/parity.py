"""A recorded paper session through the backtester: its ticks as candles, its commands
as a strategy that gives them back at the tick they followed (``LogReplay``). With
``PAPER_SETTINGS`` the backtest's fills are the session's (the parity test)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal

from app.backtesting.domain.runner import RunResult, run_backtest
from app.backtesting.domain.strategies import (
    CancelList,
    CancelOrder,
    Intent,
    Submit,
    SubmitList,
    Tick,
)
from app.core.errors import InvariantViolation
from app.paper.domain.session import (
    CANCEL,
    CANCEL_LIST,
    PAPER_SETTINGS,
    SUBMIT,
    SUBMIT_LIST,
    TICK,
    LogEntry,
    list_from_json,
    request_from_json,
    tick_candle,
)
from app.trading.domain.orders import MarketSpec
from app.venues.domain.paths import Candle


class LogReplay:
    """The commands of a paper log, each at the close of the tick before it."""

    name = "paper-log-replay"

    def __init__(self, after_tick: Sequence[Sequence[Intent]]) -> None:
        self._after_tick = after_tick

    def decide(self, tick: Tick) -> list[Intent]:
        return list(self._after_tick[tick.index])


def split_log(entries: Sequence[LogEntry]) -> tuple[list[Candle], LogReplay]:
    """The ticks as candles and the commands as a ``LogReplay`` (the log must start
    with a tick: a paper command always follows the market's latest trade)."""
    candles: list[Candle] = []
    after: list[list[Intent]] = []
    now: datetime | None = None
    for entry in entries:
        p = entry.payload
        if entry.kind == TICK:
            at = datetime.fromisoformat(p["at"])
            at = at if now is None else max(at, now)
            candles.append(
                tick_candle(price=Decimal(p["price"]), quantity=Decimal(p["quantity"]), at=at)
            )
            now = at
            after.append([])
        elif not after:
            raise InvariantViolation("a paper log that starts with a command")
        elif entry.kind == SUBMIT:
            request = request_from_json(p["request"])
            after[-1].append(Submit(p["clientOrderId"], request, "paper"))
        elif entry.kind == CANCEL:
            after[-1].append(CancelOrder(p["clientOrderId"], "paper"))
        elif entry.kind == SUBMIT_LIST:
            oco, bracket = list_from_json(p)
            after[-1].append(SubmitList(p["clientListId"], "paper", oco=oco, bracket=bracket))
        elif entry.kind == CANCEL_LIST:
            after[-1].append(CancelList(p["clientListId"], "paper"))
    return candles, LogReplay(after)


def backtest_log(
    market: MarketSpec, balances: Mapping[str, Decimal], entries: Sequence[LogEntry]
) -> RunResult:
    candles, strategy = split_log(entries)
    return run_backtest(
        strategy, candles, market=market, balances=balances, settings=PAPER_SETTINGS
    )
