"""A sweep sends its variants in chunks (the candles travel once per chunk): the outcome is
the variants' in variant order, whatever the chunk size, the number of workers or the
order the chunks finish in."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from app.backtesting.cli import sweep
from app.backtesting.domain import specs, sweeps
from app.venues.domain.simulated import SimulationSettings
from tests.support.simulation import SPEC, generated_candles


def test_the_outcome_is_the_same_for_any_chunk_size_and_in_variant_order():
    candles = tuple(generated_candles(400, seed=7, price=Decimal(100)))
    variants = [
        specs.MovingAverageParameters(fast, slow, Decimal("0.5"))
        for fast in (2, 3, 5)
        for slow in (8, 13, 21)
    ]
    inputs = specs.RunInputs(
        variants[0], candles, SPEC, {"USDT": Decimal(10_000)}, SimulationSettings()
    )
    one_by_one = [sweeps.run_variant(inputs, v) for v in variants]
    for chunk in (1, 2, 4, 100):
        with ThreadPoolExecutor(3) as pool:
            outcome = sweep(inputs, variants, executor=pool, chunk=chunk)
        assert [o.parameters for o in outcome.variants] == variants
        assert list(outcome.variants) == one_by_one, chunk
        assert outcome == sweeps.summarise(one_by_one)
