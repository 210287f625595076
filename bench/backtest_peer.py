"""``python -m bench backtest``: our backtester against backtesting.py (the peer, 0.6.x,
AGPL, a dev-only dependency) on the same generated candles, then a parameter sweep on
one and on two worker processes.

1. ``--candles`` (525,600: a year) seeded one-minute candles
   (``app.marketdata.domain.synthetic``: geometric Brownian motion with jumps).
2. Two strategies, through our runner in the peer's mode (latency 1: a market order
   decided at a close fills at the next open; no volume cap; no slippage; one fee, 0.1 %,
   for makers and takers) and through the peer (``FractionalBacktest``): DCA (100 USDT
   every 60 candles, take-profit 2 %) and an MA crossover, half the equity, at 10/30
   (about 10,000 round trips a year: the cost of an order shows) and at 50/200.
   ``bench/backtest_peer_strategies.py`` says how both compute the same thing.
3. Check: both made the same executions (candle, side, price, quantity); the exit status
   is 1 if not, and the first differences are printed.
4. Timing, the process pinned to one CPU, ``--rounds`` times alternating who goes first,
   the best round of each: CPU seconds (what the process ran; the wall clock, which other
   work on the machine inflates, is in the JSON). The engine: our ``run_backtest``
   (fills, equity curve, round trips) against the peer's ``run()`` less its statistics
   (``compute_stats``, timed apart); then with the metrics on both sides: our
   ``evaluate`` (exact Decimal) against its statistics (numpy). Targets, on the engine:
   >= 100,000 candles/s and >= 1x the peer.
5. Sweep: ``--variants`` (200) MA variants (fast 5..24 x slow 30..120) over
   ``--sweep-candles`` (8,760: a year of hours) through ``app.backtesting.cli.sweep``,
   the code ``python -m app backtest sweep`` runs, on a ProcessPoolExecutor of 1 and of
   2 workers: wall time and the ratio. Both outcomes must be equal (else exit status 1).

``--quick`` (5,000 candles, one round, 20 variants over 500 hours): the checks, in
seconds. The table on stdout, the JSON in ``bench/results/backtest-*.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import backtesting.backtesting as peer_engine  # type: ignore[import-untyped]
from backtesting.lib import FractionalBacktest  # type: ignore[import-untyped]

from app.backtesting import cli
from app.backtesting.domain import specs, sweeps
from app.backtesting.domain.evaluation import evaluate, venue_candles
from app.backtesting.domain.runner import RunResult, run_backtest
from app.backtesting.domain.strategies import (
    DollarCostAveraging,
    MovingAverageCrossover,
    Strategy,
)
from app.marketdata.domain.synthetic import Synthetic, generate_candles
from app.venues.domain.paths import Candle
from app.venues.domain.simulated import SimulationSettings
from bench.backtest_peer_strategies import (
    Execution,
    PeerDollarCostAveraging,
    PeerMovingAverageCrossover,
    Units,
    peer_executions,
    peer_frame,
)

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
TARGET_CANDLES_PER_SECOND = 100_000
TARGET_RATIO = 1.0
FEE = Decimal("0.001")
# what the command line derives for a symbol that is no market of ours (tick 0.01: the
# generated prices'; lot 10^-8), with one fee for makers and takers
MARKET = specs.derived_market("BTC/USDT", (), maker_fee=FEE, taker_fee=FEE)
VOLUME_LOT = Decimal("0.0001")  # the generated volumes'
CASH = Decimal(1_000_000)
PEER_MODE = SimulationSettings(volume_share=None, latency=1, slippage_bps=0)
DCA = {"amount": Decimal(100), "every": 60, "take_profit": Decimal("0.02")}
MA = {"fast": 10, "slow": 30, "fraction": Decimal("0.5")}  # about 10,000 round trips a year
SLOW_MA = {"fast": 50, "slow": 200, "fraction": Decimal("0.5")}  # the classic pair
SWEEP_FAST, SWEEP_SLOW = "5:24:1", "30:120:10"  # 20 x 10 = 200 variants


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    ours: Callable[[], Strategy]
    peer: type
    peer_parameters: dict[str, Any]


CASES = (
    Case(
        "DCA",
        lambda: DollarCostAveraging(
            MARKET, quote_amount=DCA["amount"], every=DCA["every"], take_profit=DCA["take_profit"]
        ),
        PeerDollarCostAveraging,
        DCA,
    ),
    *(
        Case(
            f"MA {p['fast']}/{p['slow']}",
            lambda p=p: MovingAverageCrossover(  # type: ignore[misc]
                MARKET, fast=p["fast"], slow=p["slow"], fraction=p["fraction"]
            ),
            PeerMovingAverageCrossover,
            p,
        )
        for p in (MA, SLOW_MA)
    ),
)


def generated(count: int, interval: timedelta, seed: int) -> list[Candle]:
    series = Synthetic(count, interval=interval, seed=seed)
    stored = generate_candles(series, tick_size=MARKET.tick_size, lot_size=VOLUME_LOT)
    return venue_candles(stored, interval)


def run_ours(case: Case, candles: Sequence[Candle]) -> RunResult:
    return run_backtest(
        case.ours(), candles, market=MARKET, balances={"USDT": CASH}, settings=PEER_MODE
    )


def run_peer(case: Case, frame: Any) -> Any:
    """The peer's ``run()``: its statistics, whose ``_strategy`` has its broker."""
    units = Units(MARKET)
    backtest = FractionalBacktest(
        frame, case.peer, cash=float(CASH), commission=units.commission(),
        fractional_unit=units.lot,
    )  # fmt: skip
    with warnings.catch_warnings():
        # "Some trades remain open at the end": ours stay open too; and the peer's use of
        # pandas APIs that pandas has deprecated (not ours to fix)
        warnings.filterwarnings("ignore", message="Some trades remain open")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return backtest.run(units=units, **case.peer_parameters)


def our_executions(result: RunResult, candles: Sequence[Candle]) -> list[Execution]:
    """Our fills per candle, side and price (a candle's fills of one order add up)."""
    index = {c.open_time: i for i, c in enumerate(candles)}
    found: dict[tuple[int, str, int], int] = {}
    for fill in result.fills:
        key = (index[fill.at], fill.side.value, MARKET.to_ticks(fill.price))
        found[key] = found.get(key, 0) + MARKET.to_lots(fill.quantity)
    return sorted((*key, lots) for key, lots in found.items())


def differences(ours: list[Execution], peer: list[Execution], limit: int = 5) -> list[str]:
    """The first executions that differ (empty: the same; none at all is a difference)."""
    if not ours:
        return ["no execution at all"]
    if ours == peer:
        return []
    found = [f"{len(ours)} executions ours, {len(peer)} the peer's"]
    for i, (a, b) in enumerate(zip(ours, peer, strict=False)):
        if a != b:
            found.append(f"#{i}: ours {a}, the peer's {b}")
            if len(found) > limit:
                break
    return found


def identical_trades(candles: Sequence[Candle]) -> dict[str, list[str]]:
    """Each strategy through both: the differences in what they traded, per strategy."""
    frame = peer_frame(candles)
    return {
        case.name: differences(
            our_executions(run_ours(case, candles), candles),
            peer_executions(run_peer(case, frame), Units(MARKET)),
        )
        for case in CASES
    }


# --- timing -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Round:
    engine: float  # CPU seconds: our run_backtest, or the peer's run() less its statistics
    metrics: float  # CPU seconds: our evaluate, or the peer's compute_stats
    wall: float  # the whole, on the wall clock


def cpu_seconds(run: Callable[[], Any]) -> tuple[Any, float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    out = run()
    return out, time.process_time() - cpu, time.perf_counter() - wall


@contextlib.contextmanager
def peer_statistics_timed() -> Iterator[list[float]]:
    """The CPU seconds the peer spends in ``compute_stats`` (what its ``run()`` calls)."""
    spent: list[float] = []
    original = peer_engine.compute_stats

    def timed_stats(*args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            spent.append(time.process_time() - started)

    peer_engine.compute_stats = timed_stats
    try:
        yield spent
    finally:
        peer_engine.compute_stats = original


@contextlib.contextmanager
def one_core() -> Iterator[int]:
    """The process on one CPU (the last it may use), then back on all of them."""
    allowed = os.sched_getaffinity(0)
    cpu = max(allowed)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, allowed)


def ours_once(case: Case, candles: Sequence[Candle]) -> tuple[list[Execution], Round]:
    result, engine, wall = cpu_seconds(lambda: run_ours(case, candles))
    _, metrics, metrics_wall = cpu_seconds(lambda: evaluate(result))
    return our_executions(result, candles), Round(engine, metrics, wall + metrics_wall)


def peer_once(case: Case, frame: Any) -> tuple[list[Execution], Round]:
    with peer_statistics_timed() as spent:
        stats, total, wall = cpu_seconds(lambda: run_peer(case, frame))
    return peer_executions(stats, Units(MARKET)), Round(total - sum(spent), sum(spent), wall)


@dataclass(frozen=True, slots=True)
class Compared:
    name: str
    executions: int
    ours: Round  # the best round of each figure
    peer: Round
    problems: list[str]


def best(rounds: list[Round]) -> Round:
    return Round(
        min(r.engine for r in rounds), min(r.metrics for r in rounds), min(r.wall for r in rounds)
    )


def compare(candles: Sequence[Candle], frame: Any, rounds: int) -> list[Compared]:
    found = []
    for case in CASES:
        ours_rounds: list[Round] = []
        peer_rounds: list[Round] = []
        problems: list[str] = []
        for r in range(rounds):
            order = ("ours", "peer") if r % 2 == 0 else ("peer", "ours")
            for side in order:
                if side == "ours":
                    ours, timing = ours_once(case, candles)
                    ours_rounds.append(timing)
                else:
                    peer, timing = peer_once(case, frame)
                    peer_rounds.append(timing)
            problems = problems or differences(ours, peer)
        print(
            f"  {case.name}: engine ours {best(ours_rounds).engine:.2f} s, the peer's "
            f"{best(peer_rounds).engine:.2f} s (CPU, best of {rounds}); "
            f"{'same executions' if not problems else 'DIFFERENT executions'}",
            file=sys.stderr,
        )
        found.append(Compared(case.name, len(ours), best(ours_rounds), best(peer_rounds), problems))
    return found


# --- the sweep ----------------------------------------------------------------------------


def sweep_variants(count: int) -> list[specs.StrategyParameters]:
    ranges = {
        "fast": sweeps.parse_range(SWEEP_FAST, "fast"),
        "slow": sweeps.parse_range(SWEEP_SLOW, "slow"),
    }
    found: list[specs.StrategyParameters] = [
        specs.MovingAverageParameters(int(v["fast"]), int(v["slow"]), MA["fraction"])  # type: ignore[call-overload]
        for v in sweeps.grid(ranges)
    ]
    return found[:count]


def sweep_inputs(hours: int, seed: int) -> specs.RunInputs:
    return specs.RunInputs(
        sweep_variants(1)[0],
        tuple(generated(hours, timedelta(hours=1), seed)),
        MARKET,
        {"USDT": CASH},
        SimulationSettings(),  # the command line's defaults
    )


@dataclass(frozen=True, slots=True)
class Swept:
    variants: int
    candles: int
    seconds: dict[int, float]  # wall seconds by number of workers
    identical: bool  # the same outcome on each


def run_sweeps(args: argparse.Namespace, workers: Sequence[int] = (1, 2)) -> Swept:
    inputs = sweep_inputs(args.sweep_candles, args.seed)
    variants = sweep_variants(args.variants)
    seconds: dict[int, float] = {}
    outcomes = []
    for n in workers:
        with ProcessPoolExecutor(max_workers=n) as pool:
            list(pool.map(abs, range(n)))  # the workers are up (not timed)
            started = time.perf_counter()
            outcomes.append(sweeps.outcome_json(cli.sweep(inputs, variants, executor=pool)))
            seconds[n] = time.perf_counter() - started
        print(f"  sweep on {n} worker(s): {seconds[n]:.1f} s", file=sys.stderr)
    same = all(o == outcomes[0] for o in outcomes)
    return Swept(len(variants), len(inputs.candles), seconds, same)


# --- the report ---------------------------------------------------------------------------


def rate(candles: int, seconds: float) -> float:
    return candles / seconds if seconds > 0 else float("inf")


def targets(candles: int, compared: list[Compared]) -> list[dict[str, Any]]:
    found = []
    for c in compared:
        ours, ratio = rate(candles, c.ours.engine), c.peer.engine / c.ours.engine
        found += [
            {
                "goal": f"{c.name}: >= {TARGET_CANDLES_PER_SECOND:,} candles/s on one core",
                "measured": f"{ours:,.0f}",
                "met": ours >= TARGET_CANDLES_PER_SECOND,
            },
            {
                "goal": f"{c.name}: >= {TARGET_RATIO:g}x the peer",
                "measured": f"{ratio:.2f}x",
                "met": ratio >= TARGET_RATIO,
            },
        ]
    return found


def report(
    args: argparse.Namespace, compared: list[Compared], swept: Swept | None
) -> list[dict[str, Any]]:
    n = args.candles
    print(
        f"\nbacktests on one core: {n:,} one-minute candles (seed {args.seed}), the peer's"
        f" mode; candles per CPU second, best of {args.rounds}"
    )
    print(f"{'':<26}| {'engine':<31}| with the metrics")
    head = f"{'strategy':<14}{'executions':>11} |{'ours':>11}{'peer':>11}{'ratio':>8} |"
    print(head + f"{'ours':>11}{'peer':>11}{'ratio':>8}")
    print("-" * (len(head) + 30))
    for c in compared:
        ours, peer = c.ours, c.peer
        print(
            f"{c.name:<14}{c.executions:>11,} |{rate(n, ours.engine):>11,.0f}"
            f"{rate(n, peer.engine):>11,.0f}{peer.engine / ours.engine:>7.2f}x |"
            f"{rate(n, ours.engine + ours.metrics):>11,.0f}"
            f"{rate(n, peer.engine + peer.metrics):>11,.0f}"
            f"{(peer.engine + peer.metrics) / (ours.engine + ours.metrics):>7.2f}x"
        )
    print(
        "engine: our run_backtest / the peer's run() less compute_stats; metrics: our"
        " evaluate (Decimal) / its compute_stats (numpy)"
    )
    if swept is not None:
        print(
            f"\nsweep: {swept.variants} MA variants over {swept.candles:,} hourly candles"
            " (app.backtesting.cli.sweep on a ProcessPoolExecutor), wall time"
        )
        for workers, s in swept.seconds.items():
            print(f"  {workers} worker{'s' if workers > 1 else ''}: {s:>7.1f} s")
        if len(swept.seconds) > 1:
            one, *_, last = swept.seconds
            print(f"  {last} workers / 1: {swept.seconds[one] / swept.seconds[last]:.2f}x faster")
        print(f"  outcomes {'identical' if swept.identical else 'DIFFERENT'}")
    found = targets(n, compared)
    print("\nTargets (reported, not asserted):")
    for t in found:
        print(f"  {'met    ' if t['met'] else 'NOT MET'}  {t['goal']:<48} measured {t['measured']}")
    for c in compared:
        verdict = "; ".join(c.problems) or "same executions (candle, side, price, quantity)"
        print(f"cross-check {c.name}: {verdict}")
    return found


def write_json(
    args: argparse.Namespace,
    compared: list[Compared],
    swept: Swept | None,
    found: list[dict[str, Any]],
    cpu: int,
) -> str:
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, f"backtest-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json")
    document = {
        "options": vars(args),
        "market": specs.market_json(MARKET),
        "settings": specs.settings_json(PEER_MODE),
        "strategies": {
            "DCA": {k: str(v) for k, v in DCA.items()},
            "MA": {k: str(v) for k, v in MA.items()},
            "slow MA": {k: str(v) for k, v in SLOW_MA.items()},
        },
        "compared": [
            {
                **asdict(c),
                "engine_candles_per_second": {
                    "ours": rate(args.candles, c.ours.engine),
                    "peer": rate(args.candles, c.peer.engine),
                },
                "engine_ratio": c.peer.engine / c.ours.engine,
            }
            for c in compared
        ],
        "sweep": None if swept is None else asdict(swept),
        "targets": found,
        "pinned_cpu": cpu,
        "python": sys.version,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    with open(path, "w") as out:
        out.write(json.dumps(document, indent=2) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench backtest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--candles", type=int, default=525_600, help="one-minute candles")
    parser.add_argument("--rounds", type=int, default=2, help="timed runs of each side")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--variants", type=int, default=200, help="sweep variants (<= 200)")
    parser.add_argument("--sweep-candles", type=int, default=8_760, help="hourly candles")
    parser.add_argument("--no-sweep", action="store_true", help="skip the sweep")
    parser.add_argument(
        "--quick", action="store_true", help="5,000 candles, one round, 20 variants, 500 hours"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.candles, args.rounds, args.variants, args.sweep_candles = 5_000, 1, 20, 500

    candles = generated(args.candles, timedelta(minutes=1), args.seed)
    frame = peer_frame(candles)
    print(f"{args.candles:,} candles generated; both run pinned to one CPU", file=sys.stderr)
    with one_core() as cpu:
        compared = compare(candles, frame, max(1, args.rounds))
    swept = None if args.no_sweep else run_sweeps(args)
    found = report(args, compared, swept)
    path = write_json(args, compared, swept, found, cpu)
    print(f"JSON: {os.path.relpath(path)}")
    failed = any(c.problems for c in compared) or (swept is not None and not swept.identical)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
