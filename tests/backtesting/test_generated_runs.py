"""Backtests over a generated series (``tests.support.simulation.generated_candles``),
pinned by the digest of ``result_json``: the strategies in each fill model (volume cap
and partial fills, no cap, latency 0 and 2, slippage, each path mode) give the same bytes
as when these digests were taken, before the runner, the venue and the strategies were
made faster; and so are their metrics (``evaluate``: the figures, the curve and the round
trips). A changed digest is a changed result: find out why before pinning another."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal as D

import pytest

from app.backtesting.domain.evaluation import evaluate, metrics_json
from app.backtesting.domain.runner import result_json, run_backtest
from app.backtesting.domain.strategies import (
    DollarCostAveraging,
    MovingAverageCrossover,
    Strategy,
)
from app.venues.domain.paths import PathMode
from app.venues.domain.simulated import SimulationSettings
from tests.support.simulation import SPEC, generated_candles

CANDLES = generated_candles(3000, seed=11)  # hourly, about four months


def ma_fraction() -> Strategy:
    return MovingAverageCrossover(SPEC, fast=5, slow=20, fraction=D("0.5"))


def ma_quantity() -> Strategy:
    return MovingAverageCrossover(SPEC, fast=3, slow=12, quantity=D("0.25"))


def dca_take_profit() -> Strategy:
    return DollarCostAveraging(SPEC, quote_amount=D(500), every=12, take_profit=D("0.01"))


def dca() -> Strategy:
    return DollarCostAveraging(SPEC, quote_amount=D(250), every=7)


CASES = {
    "ma-fraction-default": (
        ma_fraction,
        SimulationSettings(),
        "bdf62bed2afc78eb2db034a237e27498dc792018e6a91177b3bcb14e9fe07514",
    ),
    "ma-fraction-thin": (
        ma_fraction,
        SimulationSettings(volume_share=D("0.01")),
        "67639ddf71158c390e740c3adb73465b9edf0dd0f9ac54cebdc8759751adce82",
    ),
    "ma-quantity-no-cap": (
        ma_quantity,
        SimulationSettings(volume_share=None),
        "8aae1ef1fa16a74d1f85ec7deb41cefe30f2f5890cd69d87763585eda2a5fdbe",
    ),
    "ma-quantity-ohlc-now-slipping": (
        ma_quantity,
        SimulationSettings(PathMode.OHLC, None, latency=0, slippage_bps=40, seed=7),
        "d21a053185ced1c7fc8c47a727a9a3b03e4f45fc9af263a5b164e28a491aa715",
    ),
    "dca-tp-default": (
        dca_take_profit,
        SimulationSettings(),
        "7c9d4a2f2d31212c5744ef57194a762ac3bf43dfd5b73cd7174ffbbb1959b331",
    ),
    "dca-tp-no-cap": (
        dca_take_profit,
        SimulationSettings(volume_share=None),
        "f391338ae2dbf7d5d93ca738424078bde64b7645f3734e4874a25ae156fea46d",
    ),
    "dca-tp-olhc-late-slipping": (
        dca_take_profit,
        SimulationSettings(PathMode.OLHC, D("0.05"), latency=2, slippage_bps=15, seed=3),
        "d4cf99c1163cd8b3f3179e039807aca709af894f5656e930cdd867b30976379c",
    ),
    "dca-now": (
        dca,
        SimulationSettings(volume_share=D("0.2"), latency=0),
        "48b2d3cd8ccd950d61b2658c0b93654e279aa2057e3e8ac4e7b8d32772a67aff",
    ),
    "dca-runs-out": (
        dca,
        SimulationSettings(),
        "af0e57a02dc9f76f45809ac8b2395b9c1a9b0b4912669b23f72a4774f12020e1",
    ),  # refused: INSUFFICIENT_FUNDS
}
CASH = {"USDT": D(100_000)}
SHORT_OF_CASH = {"dca-runs-out": {"USDT": D(20_000)}}


@pytest.mark.parametrize("name", list(CASES))
def test_a_generated_run_gives_the_pinned_bytes(name):
    strategy, settings, digest = CASES[name]
    cash = SHORT_OF_CASH.get(name, CASH)
    result = run_backtest(strategy(), CANDLES, market=SPEC, balances=cash, settings=settings)
    assert result.fills  # each case trades
    refused = [d for d in result.decisions if d.outcome != "OK"]
    assert bool(refused) == (name in SHORT_OF_CASH)
    assert hashlib.sha256(result_json(result).encode()).hexdigest() == digest


METRICS = {
    "ma-fraction-default": "762ef9c07065acc15c68e604a8858fc266a6e9d9afabef78c158a82bb6541dd2",
    "ma-fraction-thin": "58a1c262aac2f47e8df7a099cc7a4f915ecc629b9cea1273f7fd24fa307cac91",
    "ma-quantity-no-cap": "282513621d61bfb60d2ad7cdb38349ca98c7be2a98b398a09ea6e94139af96ee",
    "ma-quantity-ohlc-now-slipping": (
        "8d306d3debe8e623d36ac346050e7057199f9d99c827c33ef1f095b121757081"
    ),
    "dca-tp-default": "bc3bad1d6d7c3605cf19749b3c39c439a818a2aebd805addde533b94c847a8f5",
    "dca-tp-no-cap": "bc3bad1d6d7c3605cf19749b3c39c439a818a2aebd805addde533b94c847a8f5",
    "dca-tp-olhc-late-slipping": "05e7ba904dfe23e0e52d8b8473251c356527a2bc56bdb9e869e3809273e36228",
    "dca-now": "acc7d2fa933c09cef21817320b60786eb46927bfc0488646ed8a8f48e6ffdff1",
    "dca-runs-out": "92302d30448ed2c8173b638747652a78c722bcb7f188455e20703b5f66aab080",
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_generated_run_s_metrics_give_the_pinned_bytes(name):
    strategy, settings, _ = CASES[name]
    cash = SHORT_OF_CASH.get(name, CASH)
    result = run_backtest(strategy(), CANDLES, market=SPEC, balances=cash, settings=settings)
    evaluated = evaluate(result)
    text = json.dumps(
        [
            metrics_json(evaluated.metrics),
            [repr(p) for p in evaluated.curve],
            [repr(t) for t in evaluated.trades],
        ],
        sort_keys=True,
    )
    assert hashlib.sha256(text.encode()).hexdigest() == METRICS[name]
