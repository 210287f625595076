"""``python -m app backtest [sweep] ...``: a backtest (or a parameter sweep) over stored
candles, from the command line: a progress bar on stderr, the metrics table on stdout,
the HTML report written.

    python -m app backtest --strategy ma --fast 10 --slow 30 --fraction 0.5 \\
        --symbol BTC/USDT --source file:binance --interval 1h \\
        --from 2024-01-01 --to 2024-06-01 --report out.html
    python -m app backtest sweep --strategy ma --fast 5:20:5 --slow 20:60:10 \\
        --fraction 0.5 ... --workers 4 --report sweep.html
    python -m app backtest sweep ... --cluster tcp://10.0.0.5:8786 --report sweep.html
    python -m app backtest --strategy copy --leader 42 --allocation 1000 \\
        --sizing-mode FIXED_RATIO --ratio 0.5 --symbol BTC/USDT --source VENUE --interval 1m \\
        --from 2024-01-01 --to 2024-01-02 --latency 0 --volume-share none --report copy.html

``copy`` is the copy-trading what-if: the leader's fills on the platform's own venue
copied with the settings of a follow (those of followLeader); from the command line only a
PUBLIC leader can be replayed. It has no sweep.

A sweep's parameters take ``start:stop:step`` ranges (stop included); every combination
that is valid (fast < slow) is a variant. The variants run in a
``concurrent.futures.ProcessPoolExecutor`` on all cores (``--workers``), or, with
``--cluster ADDRESS``, on a Dask cluster through its ``concurrent.futures`` adapter
(``distributed.Client(ADDRESS).get_executor()``; the optional extra ``cluster``,
imported only then): ``sweep`` takes any ``Executor``, so nothing else changes and the
outcome is the same. The best variant by Sharpe ratio is run again for the report, whose
sweep section gives the number of variants tried and its deflated Sharpe ratio; the
sweep's summary (ranges, variants tried and skipped, the best one's parameters, Sharpe and
deflated Sharpe, every variant's Sharpe) is written as JSON beside the report
(``--summary``, default the report's path with ``.json``; sorted keys, numbers as strings).

Exit status: 0 done, 2 refused (an argument, or no candles).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TextIO

from app.backtesting.backtests import BacktestRequest, check_request, load_inputs
from app.backtesting.domain import specs, sweeps
from app.backtesting.domain.evaluation import evaluate
from app.backtesting.domain.metrics import BacktestMetrics
from app.backtesting.domain.protections import REFUSED, WARNED, RiskEvent
from app.backtesting.report import SweepSummary, write_report
from app.core.errors import UserError, ValidationFailed
from app.core.progress import Progress
from app.marketdata.domain.candles import INTERVALS
from app.risk.domain.limits import Action, LimitKind
from app.risk.domain.states import Scope
from app.social.domain.social import DEFAULT_SLIPPAGE, FollowMode, FollowParameters
from app.venues.domain.paths import PathMode
from db.session import create_engine, create_sessionmaker

PATHS = {"adverse-first": PathMode.ADVERSE_FIRST, "ohlc": PathMode.OHLC, "olhc": PathMode.OLHC}
MA_PARAMETERS = ("fast", "slow", "fraction", "quantity")
DCA_PARAMETERS = ("amount", "every", "take_profit")
COPY_MODES = [m.value for m in FollowMode]


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "backtest",
        help="backtest a strategy over stored candles (or sweep its parameters)",
        description="Runs a strategy on the simulated venue over stored candles; prints the"
        " metrics and writes an HTML report. 'sweep' takes start:stop:step ranges.",
    )
    parser.add_argument("mode", nargs="?", choices=("run", "sweep"), default="run")
    parser.add_argument("--strategy", required=True, choices=("ma", "dca", "copy"))
    for name in ("fast", "slow", "fraction", "quantity", "amount", "every"):
        parser.add_argument(f"--{name}")
    parser.add_argument("--take-profit", dest="take_profit")
    copy = parser.add_argument_group("copy", "the follow settings (amounts in USDT)")
    copy.add_argument("--leader", type=int, help="the leader's user id")
    copy.add_argument("--allocation")
    copy.add_argument("--sizing-mode", dest="sizing_mode", choices=COPY_MODES)
    for name in ("fixed-amount", "ratio", "max-order-notional", "max-position-per-asset"):
        copy.add_argument(f"--{name}", dest=name.replace("-", "_"))
    copy.add_argument("--allowed-symbols", help="comma-separated; default: every market")
    copy.add_argument("--slippage-tolerance", default=str(DEFAULT_SLIPPAGE))
    copy.add_argument("--stop-loss-percent")
    copy.add_argument("--close-on-stop-loss", action="store_true")
    parser.add_argument("--symbol", required=True, help="BASE/QUOTE, e.g. BTC/USDT")
    parser.add_argument("--source", required=True, help="file:<name>, exchange:<name>, VENUE")
    parser.add_argument("--interval", required=True, choices=list(INTERVALS))
    parser.add_argument("--from", dest="start", required=True, type=_time)
    parser.add_argument("--to", dest="end", required=True, type=_time)
    parser.add_argument("--path", choices=list(PATHS), default="adverse-first")
    parser.add_argument("--volume-share", default="0.1", help="of each candle; 'none': no cap")
    parser.add_argument("--latency", type=int, default=1, help="candles")
    parser.add_argument("--slippage-bps", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--balance", default="10000", help="of the quote currency")
    parser.add_argument("--maker-fee")
    parser.add_argument("--taker-fee")
    parser.add_argument(
        "--risk-limit",
        dest="risk_limits",
        action="append",
        default=[],
        metavar="KIND:THRESHOLD[:ACTION[:COOLDOWN_SECONDS]]",
        help="a USER risk limit the account trades under (repeatable), e.g."
        " CONSECUTIVE_LOSSES:3 or DAILY_LOSS:100:COOL_DOWN:3600",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="sweep")
    parser.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="sweep: run the variants on the Dask cluster whose scheduler is at ADDRESS"
        " (e.g. tcp://10.0.0.5:8786) instead of local processes; start one with"
        " 'dask scheduler' and, on each machine, 'dask worker tcp://SCHEDULER:8786'"
        " (where this project is installed). Needs: pip install '.[cluster]'",
    )
    parser.add_argument("--report", type=Path, required=True, help="the HTML file to write")
    parser.add_argument(
        "--summary", type=Path, help="sweep: the JSON summary to write (default: <report>.json)"
    )


def _time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def variants(args: argparse.Namespace) -> tuple[list[specs.StrategyParameters], int]:
    """The valid strategy parameters of every combination of the ranges given, and how
    many combinations were invalid (fast >= slow, ...)."""
    if args.strategy == "copy":
        if args.mode == "sweep":
            raise ValidationFailed("a copy what-if has no sweep", field="strategy")
        return [copy_parameters(args)], 0
    names = MA_PARAMETERS if args.strategy == "ma" else DCA_PARAMETERS
    ranges: dict[str, Sequence[object]] = {}
    for name in names:
        text = getattr(args, name)
        ranges[name] = [None] if text is None else sweeps.parse_range(text, name)
    found: list[specs.StrategyParameters] = []
    invalid = 0
    for combo in sweeps.grid(ranges):
        try:
            found.append(_parameters(args.strategy, combo))
        except ValidationFailed:
            invalid += 1
    return found, invalid


def copy_parameters(args: argparse.Namespace) -> specs.CopyLeaderParameters:
    if args.leader is None or args.allocation is None or args.sizing_mode is None:
        raise ValidationFailed(
            "--leader, --allocation and --sizing-mode are required", field="leader"
        )

    def decimal(text: str | None) -> Decimal | None:
        return None if text is None else Decimal(text)

    symbols = args.allowed_symbols
    follow = FollowParameters(
        allocation=Decimal(args.allocation),
        mode=FollowMode(args.sizing_mode),
        fixed_amount=decimal(args.fixed_amount),
        ratio=decimal(args.ratio),
        max_order_notional=decimal(args.max_order_notional),
        max_position_per_asset=decimal(args.max_position_per_asset),
        allowed_symbols=None if symbols is None else tuple(symbols.split(",")),
        slippage_tolerance=Decimal(args.slippage_tolerance),
        stop_loss_percent=decimal(args.stop_loss_percent),
        close_positions_on_stop_loss=args.close_on_stop_loss,
    )
    return specs.CopyLeaderParameters(args.leader, follow)


def _parameters(kind: str, values: dict[str, object]) -> specs.StrategyParameters:
    def whole(name: str) -> int:
        value = values[name]
        if not isinstance(value, Decimal) or value != value.to_integral_value():
            raise ValidationFailed(f"{name} is a whole number", field=name)
        return int(value)

    def decimal(name: str) -> Decimal | None:
        return values[name]  # type: ignore[return-value]

    if kind == "ma":
        return specs.MovingAverageParameters(
            whole("fast"), whole("slow"), decimal("fraction"), decimal("quantity")
        )
    amount = decimal("amount")
    if amount is None:
        raise ValidationFailed("--amount is required", field="amount")
    return specs.DollarCostParameters(amount, whole("every"), decimal("take_profit"))


def request_of(args: argparse.Namespace, strategy: specs.StrategyParameters) -> BacktestRequest:
    share = None if args.volume_share.lower() == "none" else Decimal(args.volume_share)
    return BacktestRequest(
        strategy=strategy,
        symbol=args.symbol,
        source=args.source,
        interval=args.interval,
        start=args.start,
        end=args.end,
        settings=specs.simulation_settings(
            path=PATHS[args.path],
            volume_share=share,
            latency=args.latency,
            slippage_bps=args.slippage_bps,
            seed=args.seed,
        ),
        balance=Decimal(args.balance),
        maker_fee=None if args.maker_fee is None else Decimal(args.maker_fee),
        taker_fee=None if args.taker_fee is None else Decimal(args.taker_fee),
        limits=specs.backtest_limits(_risk_limit(text) for text in args.risk_limits),
    )


def _risk_limit(text: str) -> specs.LimitSpec:
    """``KIND:THRESHOLD[:ACTION[:COOLDOWN_SECONDS]]``, at the USER scope."""
    parts = text.upper().split(":")
    if not 2 <= len(parts) <= 4 or parts[0] not in LimitKind.__members__:
        raise ValidationFailed(
            f"--risk-limit {text}: KIND:THRESHOLD[:ACTION[:COOLDOWN_SECONDS]]", field="riskLimits"
        )
    action = parts[2] if len(parts) > 2 else Action.BLOCK_ENTRIES.value
    if action not in Action.__members__:
        raise ValidationFailed(f"--risk-limit {text}: no action {action}", field="riskLimits")
    return specs.LimitSpec(
        Scope.USER,
        LimitKind(parts[0]),
        Decimal(parts[1]),
        Action(action),
        cooldown_seconds=int(parts[3]) if len(parts) > 3 else None,
    )


async def _inputs(database_url: str, request: BacktestRequest) -> specs.RunInputs:
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        async with create_sessionmaker(engine)() as session:
            return await load_inputs(session, await check_request(session, request))
    finally:
        await engine.dispose()


def run_command(database_url: str, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    with ExitStack() as stack:
        try:
            found, invalid = variants(args)
            if not found:
                raise ValidationFailed("no valid parameters", field="parameters")
            if args.mode == "run" and len(found) > 1:
                raise ValidationFailed(
                    "one value per parameter (ranges: 'sweep')", field="parameters"
                )
            if args.mode == "run" and args.cluster is not None:
                raise ValidationFailed("--cluster is for a sweep", field="cluster")
            executor = stack.enter_context(_executor(args)) if args.mode == "sweep" else None
            inputs = asyncio.run(_inputs(database_url, request_of(args, found[0])))
        except (UserError, ArithmeticError, ValueError) as error:
            message = error.message if isinstance(error, UserError) else str(error)
            print(f"Refused: {message}", file=sys.stderr)
            return 2
        if executor is None:
            summary = None
        else:
            outcome = sweep(inputs, found, executor=executor)
            stack.close()  # the pool's processes, or the cluster's client
            tried = f"{len(found)} ({invalid} invalid combinations skipped)"
            print(f"variants tried  {tried}", file=out)
            best = outcome.best.parameters
            print(f"best by Sharpe  {best.as_json()}", file=out)
            print(f"deflated Sharpe {_figure(outcome.deflated_sharpe)}", file=out)
            summary = SweepSummary(len(found), outcome.best.metrics.sharpe, outcome.deflated_sharpe)
            summary_path = args.summary or _beside(args.report)
            summary_path.write_text(
                json.dumps(sweep_json(args, inputs, outcome, invalid), indent=2, sort_keys=True)
                + "\n",
                encoding="utf-8",
            )
            print(f"summary         {summary_path}", file=out)
            inputs = replace(inputs, strategy=best)
    with Progress(total=len(inputs.candles), label="backtest") as progress:
        run = specs.run(inputs, lambda done: progress.advance(done - progress.done))
    result = evaluate(run)
    print(metrics_table(result.metrics, inputs.market.quote), file=out)
    if inputs.limits:
        print(risk_lines(run.risk_events), file=out)
    write_report(
        args.report,
        result,
        title=f"{inputs.strategy.kind.value} {inputs.market.symbol} {args.interval}",
        currency=inputs.market.quote,
        parameters={**inputs.strategy.as_json(), **specs.settings_json(inputs.settings)},
        sweep=summary,
        risk_events=run.risk_events if inputs.limits else None,
    )
    print(f"report          {args.report}", file=out)
    return 0


@contextmanager
def _executor(args: argparse.Namespace) -> Iterator[Executor]:
    """The sweep's executor: local processes, or a Dask cluster's with ``--cluster``."""
    if args.cluster is None:
        with ProcessPoolExecutor(max_workers=max(1, args.workers)) as pool:
            yield pool
        return
    try:
        from distributed import Client  # the optional extra, imported only here
    except ImportError:
        raise ValidationFailed(
            "--cluster needs Dask: pip install '.[cluster]'", field="cluster"
        ) from None
    try:
        client = Client(args.cluster, timeout="10s")
    except (OSError, TimeoutError, ValueError) as error:
        raise ValidationFailed(
            f"no Dask scheduler reached at {args.cluster}: {error}", field="cluster"
        ) from None
    try:
        with client.get_executor() as executor:
            yield executor
    finally:
        client.close()


def _beside(report: Path) -> Path:
    path = report.with_suffix(".json")
    return path if path != report else report.with_name(report.name + ".json")


def sweep_json(
    args: argparse.Namespace,
    inputs: specs.RunInputs,
    outcome: sweeps.SweepOutcome,
    invalid: int,
) -> dict[str, object]:
    """What the sweep's summary file holds: the ranges given (as typed), the market and
    settings, the invalid combinations skipped and the outcome (``sweeps.outcome_json``)."""
    names = MA_PARAMETERS if args.strategy == "ma" else DCA_PARAMETERS
    return {
        "strategy": args.strategy,
        "ranges": {name: getattr(args, name) for name in names},
        "symbol": inputs.market.symbol,
        "source": args.source,
        "interval": args.interval,
        "from": args.start.isoformat(),
        "to": args.end.isoformat(),
        "balance": args.balance,
        "settings": specs.settings_json(inputs.settings),
        "invalidSkipped": invalid,
        **sweeps.outcome_json(outcome),
    }


SWEEP_CHUNK = 8  # variants per task: the candles travel once per task, not per variant


def sweep(
    inputs: specs.RunInputs,
    variants: Sequence[specs.StrategyParameters],
    *,
    executor: Executor,
    chunk: int = SWEEP_CHUNK,
) -> sweeps.SweepOutcome:
    """Each variant on ``inputs`` in ``executor``, ``chunk`` variants per task (pickling
    the candles for each variant cost more than a second worker gained), summarised in
    variant order (so the outcome does not depend on the number of workers or their
    timing)."""
    chunks = [variants[i : i + chunk] for i in range(0, len(variants), chunk)]
    futures = {executor.submit(sweeps.run_variants, inputs, c): len(c) for c in chunks}
    with Progress(total=len(variants), label="sweep") as shown:
        for done in as_completed(futures):
            shown.advance(futures[done])
    return sweeps.summarise(outcome for f in futures for outcome in f.result())


def risk_lines(events: Sequence[RiskEvent]) -> str:
    """The risk limits' refusals and warnings (counted) and transitions (each, with its
    reason)."""
    refused = sum(1 for e in events if e.action == REFUSED)
    warned = sum(1 for e in events if e.action == WARNED)
    lines = [f"risk refusals   {refused}", f"risk warnings   {warned}"]
    lines += [
        f"risk {e.action:<10} {e.at.isoformat()} candle {e.candle}: {e.reason}"
        for e in events
        if e.action not in (REFUSED, WARNED)
    ]
    return "\n".join(lines)


def metrics_table(m: BacktestMetrics, currency: str) -> str:
    rows = [
        ("period", f"{m.start:%Y-%m-%d %H:%M} .. {m.end:%Y-%m-%d %H:%M} ({m.bars} bars)"),
        ("starting equity", f"{m.starting_equity} {currency}"),
        ("final equity", f"{m.final_equity} {currency}"),
        ("total return", _percent(m.total_return)),
        ("buy and hold", _percent(m.buy_and_hold_return)),
        ("CAGR", _percent(m.cagr)),
        ("volatility", _percent(m.volatility)),
        ("Sharpe", _figure(m.sharpe)),
        ("Sortino", _figure(m.sortino)),
        ("Calmar", _figure(m.calmar)),
        ("max drawdown", _percent(m.max_drawdown.depth)),
        ("trades", str(m.trades)),
        ("win rate", _percent(m.win_rate)),
        ("profit factor", _figure(m.profit_factor)),
        ("expectancy", "-" if m.expectancy is None else f"{_round(m.expectancy)} {currency}"),
        ("exposure", _percent(m.exposure)),
        ("fees paid", f"{m.fees_paid} {currency}"),
    ]
    return "\n".join(f"{name:<16}{value}" for name, value in rows)


def _round(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.0001"))


def _percent(value: Decimal | None) -> str:
    return "-" if value is None else f"{_round(value * 100)} %"


def _figure(value: Decimal | float | None) -> str:
    if value is None:
        return "-"
    return str(_round(Decimal(str(value)) if isinstance(value, float) else value))
