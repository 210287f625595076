"""``python -m bench.matching``: the matching engine alone against a straightforward
reference book written with sortedcontainers, on the same command stream.

1. One seeded stream of ``--orders`` commands: 65 % GTC limit orders (mostly resting
   near the touch, some crossing), 20 % cancels of a live order, 15 % market orders with
   a worst price 50 ticks off the mid; ``--users`` users, so some self-trades occur.
   The stream is built by running the engine (to know which orders are live), untimed.
2. Both books process the whole stream ``--rounds`` times, alternating, each time from
   empty; commands per second of each (best round and median), the ratio, the targets
   (>= 100,000 orders/s and >= 1x the reference).
3. Cross-check: both produce the same fills (maker, taker, price, quantity, value,
   fees) and the same resting orders at the end. The exit status is 1 if not.

The reference is what one would write first: a SortedDict per side, a deque per level,
orders in a dict, the same rules (price-time priority, self-trade prevention by
expiring the taker, fees rounded up per order).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from sortedcontainers import SortedDict  # type: ignore[import-untyped]

from app.trading.domain.matching import (
    Accepted,
    Cancel,
    Command,
    Fill,
    OrderBook,
    OrderDone,
    Place,
)
from app.trading.domain.orders import MarketSpec, OrderType, Side, TimeInForce

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TARGET_ORDERS_PER_SECOND = 100_000
TARGET_RATIO = 1.0

MARKET = MarketSpec(
    symbol="BTC/USDT",
    base="BTC",
    quote="USDT",
    base_scale=8,
    quote_scale=6,
    tick_size=Decimal("0.01"),
    lot_size=Decimal("0.0001"),
    min_notional=Decimal("5"),
    maker_fee=Decimal("0.001"),
    taker_fee=Decimal("0.002"),
)
MID = 6_000_000  # ticks: 60,000.00 USDT

FillKey = tuple[int, int, int, int, int, int, int]  # maker, taker, price, qty, value, fees
RestingKey = tuple[int, int, int, int]  # order id, side (1 buy), price, remaining


# --- the stream ---------------------------------------------------------------------------


def build_stream(*, count: int, users: int, seed: int) -> list[Command]:
    rng = random.Random(seed)
    book = OrderBook(MARKET)
    live: list[int] = []
    where: dict[int, int] = {}  # order id -> index in live

    def forget(order_id: int) -> None:
        index = where.pop(order_id, None)
        if index is None:
            return
        last = live.pop()
        if last != order_id:
            live[index] = last
            where[last] = index

    commands: list[Command] = []
    mid = MID
    next_id = 1
    for seq in range(1, count + 1):
        if seq % 50 == 0:
            mid += rng.choice((-3, -1, 0, 1, 3))
        roll = rng.random()
        if roll < 0.20 and live:
            command: Command = Cancel(seq, live[rng.randrange(len(live))])
        else:
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            user = rng.randrange(1, users + 1)
            direction = 1 if side is Side.BUY else -1
            if roll < 0.35:  # market: 15 %
                worst = mid + direction * 50
                qty = rng.randint(1, 200)
                command = Place(
                    seq, next_id, user, side, OrderType.MARKET, worst, qty, TimeInForce.IOC
                )
            else:  # limit: 65 %
                if rng.random() < 0.12:
                    price = mid + direction * rng.randint(0, 5)  # crosses
                else:
                    price = mid - direction * (1 + int(rng.expovariate(1 / 15)))
                command = Place(
                    seq, next_id, user, side, OrderType.LIMIT, price, rng.randint(1, 100)
                )
            next_id += 1
        commands.append(command)
        for event in book.handle(command):
            if isinstance(event, Accepted):
                where[event.order_id] = len(live)
                live.append(event.order_id)
            elif isinstance(event, Fill):
                if not event.maker_remaining:
                    forget(event.maker_order_id)
                if not event.taker_remaining:
                    forget(event.taker_order_id)
            elif isinstance(event, OrderDone):
                forget(event.order_id)
    return commands


# --- the reference book -------------------------------------------------------------------


@dataclass(slots=True)
class RefOrder:
    order_id: int
    user_id: int
    side: Side
    price: int
    remaining: int
    fee_acc: int = 0


class ReferenceBook:
    """GTC limit, IOC market with a worst price, cancel; the engine's rules."""

    def __init__(self, market: MarketSpec) -> None:
        self.units = market.units_per_tick_lot
        self.den = market.fee_denominator
        self.maker_num = market.maker_fee_numerator
        self.taker_num = market.taker_fee_numerator
        self.bids: SortedDict = SortedDict()  # price -> deque[RefOrder]
        self.asks: SortedDict = SortedDict()
        self.orders: dict[int, RefOrder] = {}

    def handle(self, command: Command) -> list[FillKey]:
        """The fills the command made (like the engine, a new list per command)."""
        fills: list[FillKey] = []
        if isinstance(command, Cancel):
            self.cancel(command.order_id)
        elif isinstance(command, Place):
            self.place(command, fills)
        return fills

    def place(self, c: Place, fills: list[FillKey]) -> None:
        taker = RefOrder(c.order_id, c.user_id, c.side, c.price, c.quantity)
        opposite = self.asks if c.side is Side.BUY else self.bids
        while taker.remaining and opposite:
            price, level = opposite.peekitem(0 if c.side is Side.BUY else -1)
            if (price > c.price) if c.side is Side.BUY else (price < c.price):
                break
            maker = level[0]
            if maker.user_id == taker.user_id:
                return  # self-trade prevention: the taker's remainder expires
            quantity = min(maker.remaining, taker.remaining)
            value = price * quantity * self.units
            maker_fee = self.charge(maker, value, self.maker_num)
            taker_fee = self.charge(taker, value, self.taker_num)
            maker.remaining -= quantity
            taker.remaining -= quantity
            fills.append(
                (maker.order_id, taker.order_id, price, quantity, value, maker_fee, taker_fee)
            )
            if maker.remaining == 0:
                level.popleft()
                del self.orders[maker.order_id]
                if not level:
                    del opposite[price]
        if taker.remaining and c.type is OrderType.LIMIT:
            own = self.bids if c.side is Side.BUY else self.asks
            own.setdefault(c.price, deque()).append(taker)
            self.orders[c.order_id] = taker

    def charge(self, order: RefOrder, value: int, rate_num: int) -> int:
        before = -(-order.fee_acc // self.den)
        order.fee_acc += value * rate_num
        return -(-order.fee_acc // self.den) - before

    def cancel(self, order_id: int) -> None:
        order = self.orders.pop(order_id, None)
        if order is None:
            return
        side = self.bids if order.side is Side.BUY else self.asks
        level = side[order.price]
        level.remove(order)
        if not level:
            del side[order.price]

    def resting(self) -> list[RestingKey]:
        bids = [(o.order_id, 1, p, o.remaining) for p in reversed(self.bids) for o in self.bids[p]]
        asks = [(o.order_id, 0, p, o.remaining) for p in self.asks for o in self.asks[p]]
        return bids + asks


# --- runs ---------------------------------------------------------------------------------


def timed(handle: Callable[[Command], object], commands: Sequence[Command]) -> float:
    """Seconds to handle every command. Each book returns its output (a list per
    command) and the loop drops it, as a runner that writes each batch out would."""
    gc.collect()
    start = time.perf_counter()
    for command in commands:
        handle(command)
    return time.perf_counter() - start


Outcome = tuple[list[FillKey], list[RestingKey]]


def engine_outcome(commands: Sequence[Command]) -> Outcome:
    book = OrderBook(MARKET)
    fills = [
        (e.maker_order_id, e.taker_order_id, e.price, e.quantity, e.notional, *e[10:12])
        for command in commands
        for e in book.handle(command)
        if isinstance(e, Fill)
    ]
    snapshot = book.snapshot()
    resting = [(o.order_id, 1, o.price, o.remaining) for o in snapshot.bids] + [
        (o.order_id, 0, o.price, o.remaining) for o in snapshot.asks
    ]
    return fills, resting


def reference_outcome(commands: Sequence[Command]) -> Outcome:
    book = ReferenceBook(MARKET)
    fills = [fill for command in commands for fill in book.handle(command)]
    return fills, book.resting()


def cross_check(commands: Sequence[Command]) -> list[str]:
    engine_fills, engine_resting = engine_outcome(commands)
    reference_fills, reference_resting = reference_outcome(commands)
    problems = []
    if engine_fills != reference_fills:
        problems.append(f"the fills differ ({len(engine_fills)} vs {len(reference_fills)})")
    if engine_resting != reference_resting:
        problems.append("the resting orders at the end differ")
    return problems


@dataclass(frozen=True, slots=True)
class Figures:
    seconds: list[float]
    commands: int

    @property
    def best(self) -> float:
        return self.commands / min(self.seconds)

    @property
    def median(self) -> float:
        return self.commands / statistics.median(self.seconds)


def measure(commands: Sequence[Command], rounds: int) -> tuple[Figures, Figures]:
    """Both books from empty, ``rounds`` times, alternating which goes first."""
    engine_s: list[float] = []
    reference_s: list[float] = []
    for round_number in range(rounds):
        runs = [
            (engine_s, OrderBook(MARKET).handle),
            (reference_s, ReferenceBook(MARKET).handle),
        ]
        for seconds, handle in runs if round_number % 2 == 0 else reversed(runs):
            seconds.append(timed(handle, commands))
    return Figures(engine_s, len(commands)), Figures(reference_s, len(commands))


def describe(commands: Sequence[Command]) -> dict[str, int]:
    book = OrderBook(MARKET)
    events = [e for c in commands for e in book.handle(c)]
    places = [c for c in commands if isinstance(c, Place)]
    depth = book.depth(len(book) + 1)
    return {
        "limit": sum(c.type is OrderType.LIMIT for c in places),
        "cancel": len(commands) - len(places),
        "market": sum(c.type is OrderType.MARKET for c in places),
        "fills": sum(isinstance(e, Fill) for e in events),
        "self_trade_prevented": sum(
            isinstance(e, OrderDone) and e.reason == "SELF_TRADE_PREVENTED" for e in events
        ),
        "cancel_rejected": sum(e.kind == "CANCEL_REJECTED" for e in events),
        "resting_at_end": len(book),
        "levels_at_end": len(depth.bids) + len(depth.asks),
    }


def report(
    args: argparse.Namespace,
    mix: dict[str, int],
    engine: Figures,
    reference: Figures,
    problems: list[str],
) -> None:
    ratio = engine.best / reference.best
    print(f"matching engine, one core: {engine.commands:,} commands (seed {args.seed}),")
    print(
        f"  {mix['limit']:,} limit / {mix['cancel']:,} cancel / {mix['market']:,} market;"
        f" {mix['fills']:,} fills; {mix['self_trade_prevented']:,} self-trades prevented;"
        f" {mix['resting_at_end']:,} orders on {mix['levels_at_end']:,} levels at the end"
    )
    print()
    print(f"{'book':<30}{'orders/s best':>16}{'median':>12}   ({args.rounds} rounds)")
    label = "engine (app.trading.domain.matching)"
    print(f"{label:<30}{engine.best:>16,.0f}{engine.median:>12,.0f}")
    print(f"{'reference (sortedcontainers)':<30}{reference.best:>16,.0f}{reference.median:>12,.0f}")
    print(f"{'ratio':<30}{ratio:>15.2f}x{engine.median / reference.median:>11.2f}x")
    print()
    for goal, measured, met in (
        (
            f">= {TARGET_ORDERS_PER_SECOND:,} orders/s",
            f"{engine.best:,.0f}",
            engine.best >= TARGET_ORDERS_PER_SECOND,
        ),
        (f">= {TARGET_RATIO:g}x the reference", f"{ratio:.2f}x", ratio >= TARGET_RATIO),
    ):
        print(f"target {goal:<26}{measured:>12}  {'met' if met else 'MISSED'}")
    verdict = "; ".join(problems) if problems else "same fills, same resting orders at the end"
    print(f"cross-check: {verdict}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.matching",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--orders", type=int, default=200_000, help="commands in the stream")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    commands = build_stream(count=args.orders, users=args.users, seed=args.seed)
    mix = describe(commands)
    problems = cross_check(commands)
    engine, reference = measure(commands, args.rounds)
    report(args, mix, engine, reference, problems)

    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"matching-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    result = {
        "commands": engine.commands,
        "seed": args.seed,
        "mix": mix,
        "engine_seconds": engine.seconds,
        "reference_seconds": reference.seconds,
        "engine_orders_per_second": engine.best,
        "reference_orders_per_second": reference.best,
        "ratio": engine.best / reference.best,
        "cross_check_problems": problems,
        "python": sys.version,
        "machine": platform.machine(),
        "load_average": os.getloadavg(),
    }
    path.write_text(json.dumps(result, indent=2))
    print(f"JSON: {path}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
