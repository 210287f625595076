"""Parameter sweeps (pure): ranges into variants, one variant's run into its metrics, the
best variant by Sharpe ratio and its deflated Sharpe ratio.

``run_variant(inputs, parameters)`` is a plain top-level function of picklable values,
so any ``concurrent.futures.Executor`` can run the variants: a ``ProcessPoolExecutor``
(what the command line uses), a thread pool, or a cluster's executor (Ray's and Dask's
``Executor`` adapters) plugged in without changing this module.

The best variant is the one with the highest annualised Sharpe ratio; a variant whose
Sharpe is undefined ranks below every defined one; on a tie the first in variant order
wins, so the choice does not depend on which worker finished first.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from app.backtesting.domain.evaluation import evaluate
from app.backtesting.domain.metrics import BacktestMetrics, deflated_sharpe_ratio
from app.backtesting.domain.specs import RunInputs, StrategyParameters, run
from app.core.errors import ValidationFailed

MAX_VARIANTS = 10_000


def parse_range(text: str, field: str) -> list[Decimal]:
    """``"10"`` (one value) or ``"start:stop:step"`` (stop included): ``"5:20:5"`` is
    5, 10, 15, 20."""
    try:
        parts = [Decimal(p) for p in text.split(":")]
    except ArithmeticError:
        raise ValidationFailed(f"{field} is a number or start:stop:step", field=field) from None
    if len(parts) == 1 and parts[0].is_finite():
        return parts
    if len(parts) != 3 or not all(p.is_finite() for p in parts):
        raise ValidationFailed(f"{field} is a number or start:stop:step", field=field)
    start, stop, step = parts
    if step <= 0 or stop < start or (stop - start) / step >= MAX_VARIANTS:
        raise ValidationFailed(
            f"{field}: a positive step, stop >= start, fewer than {MAX_VARIANTS} values",
            field=field,
        )
    values, value = [], start
    while value <= stop:
        values.append(value)
        value += step
    return values


def grid(ranges: Mapping[str, Sequence[object]]) -> list[dict[str, object]]:
    """Every combination of the ranges' values, in order (the last name varies fastest)."""
    names = list(ranges)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*ranges.values())]


@dataclass(frozen=True, slots=True)
class VariantOutcome:
    parameters: StrategyParameters
    metrics: BacktestMetrics


def run_variant(inputs: RunInputs, parameters: StrategyParameters) -> VariantOutcome:
    """One variant: the inputs with these strategy parameters, run and evaluated."""
    result = evaluate(run(replace(inputs, strategy=parameters)))
    return VariantOutcome(parameters, result.metrics)


def run_variants(inputs: RunInputs, variants: Sequence[StrategyParameters]) -> list[VariantOutcome]:
    """Several variants on the same inputs, in order: one task of a sweep, so a worker
    receives the candles once for all of them."""
    return [run_variant(inputs, parameters) for parameters in variants]


@dataclass(frozen=True, slots=True)
class SweepOutcome:
    variants: tuple[VariantOutcome, ...]  # in variant order
    best: VariantOutcome
    sharpe_variance: float  # of the variants' per-bar Sharpe ratios (sample; 0 with < 2)
    deflated_sharpe: float | None


def best_variant(outcomes: Sequence[VariantOutcome]) -> VariantOutcome:
    def rank(indexed: tuple[int, VariantOutcome]) -> tuple[bool, Decimal, int]:
        index, outcome = indexed
        sharpe = outcome.metrics.sharpe
        return (sharpe is not None, sharpe if sharpe is not None else Decimal(0), -index)

    return max(enumerate(outcomes), key=rank)[1]


def summarise(outcomes: Iterable[VariantOutcome]) -> SweepOutcome:
    """The best variant and its deflated Sharpe ratio: per-bar Sharpe, corrected for the
    number of variants tried and the spread of their per-bar Sharpe ratios."""
    variants = tuple(outcomes)
    if not variants:
        raise ValidationFailed("no variant to run", field="parameters")
    best = best_variant(variants)
    sharpes = [float(s) for v in variants if (s := v.metrics.returns.sharpe) is not None]
    variance = statistics.variance(sharpes) if len(sharpes) > 1 else 0.0
    returns = best.metrics.returns
    deflated = None
    if returns.sharpe is not None and returns.skewness is not None:
        assert returns.kurtosis is not None
        deflated = deflated_sharpe_ratio(
            sharpe=float(returns.sharpe),
            sharpe_variance=variance,
            trials=len(variants),
            observations=returns.observations,
            skewness=float(returns.skewness),
            kurtosis=float(returns.kurtosis),
        )
    return SweepOutcome(variants, best, variance, deflated)


def outcome_json(outcome: SweepOutcome) -> dict[str, object]:
    """The outcome as JSON values (numbers as strings, so nothing is rounded): how many
    variants were tried, the best one's parameters, annualised Sharpe ratio and deflated
    Sharpe ratio, and every variant's parameters and Sharpe ratio in variant order."""

    def text(value: object) -> str | None:
        return None if value is None else str(value)

    return {
        "variantsTried": len(outcome.variants),
        "best": {
            "parameters": outcome.best.parameters.as_json(),
            "sharpe": text(outcome.best.metrics.sharpe),
            "deflatedSharpe": text(outcome.deflated_sharpe),
        },
        "sharpeVariance": str(outcome.sharpe_variance),
        "variants": [
            {"parameters": v.parameters.as_json(), "sharpe": text(v.metrics.sharpe)}
            for v in outcome.variants
        ],
    }
