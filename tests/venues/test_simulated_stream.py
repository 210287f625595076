"""The simulated venue under a long seeded stream of every kind of order (market, limit,
post-only, IOC, FOK, GTD, stop and take-profit, trailing, OCO, bracket; cancels, list
cancels and amendments) over generated candles, pinned by the digest of everything it
reports (events, acknowledgements, open orders, balances). These digests were taken
before the venue was made faster: a changed one is a changed simulation."""

from __future__ import annotations

import hashlib
import random
from datetime import timedelta
from decimal import Decimal as D

import pytest

from app.trading.domain.lists import Bracket
from app.trading.domain.orders import (
    OrderRequest,
    OrderType,
    Side,
    TimeInForce,
    TrailingOffsetType,
)
from app.venues.domain.paths import Candle, PathMode
from app.venues.domain.simulated import SimulatedVenue, SimulationSettings
from tests.support.simulation import SPEC, SYMBOL, generated_candles

CANDLES = generated_candles(1500, seed=5, interval=timedelta(minutes=15))


def request(rng: random.Random, close: D, at: Candle) -> OrderRequest:
    """A random order around ``close``."""
    side = rng.choice((Side.BUY, Side.SELL))
    quantity = SPEC.quantity(rng.randint(1, 400))
    away = close * D(rng.randint(1, 300)) / 10_000
    below = SPEC.price(SPEC.nearest_ticks(close - away))
    above = SPEC.price(SPEC.nearest_ticks(close + away))
    near, far = (below, above) if side is Side.BUY else (above, below)
    kind = rng.randrange(9)
    if kind == 0:
        return OrderRequest(side, OrderType.MARKET, quantity, max_slippage_bps=rng.randint(0, 80))
    if kind == 1:
        return OrderRequest(side, OrderType.LIMIT, quantity, price=near)
    if kind == 2:
        return OrderRequest(side, OrderType.LIMIT, quantity, price=near, post_only=True)
    if kind == 3:
        tif = rng.choice((TimeInForce.IOC, TimeInForce.FOK))
        return OrderRequest(side, OrderType.LIMIT, quantity, price=far, time_in_force=tif)
    if kind == 4:
        expires = at.open_time + rng.randint(1, 20) * at.interval
        return OrderRequest(
            side, OrderType.LIMIT, quantity, price=near, time_in_force=TimeInForce.GTD,
            expires_at=expires,
        )  # fmt: skip
    if kind == 5:  # a stop beyond the price
        return OrderRequest(side, OrderType.STOP_MARKET, quantity, stop_price=far)
    if kind == 6:
        return OrderRequest(side, OrderType.STOP_LIMIT, quantity, stop_price=far, price=far)
    if kind == 7:
        return OrderRequest(side, OrderType.TAKE_PROFIT_MARKET, quantity, stop_price=near)
    return OrderRequest(
        side, OrderType.TRAILING_STOP, quantity,
        trailing_offset=D(rng.randint(10, 200)) / 100,
        trailing_offset_type=TrailingOffsetType.PERCENT,
    )  # fmt: skip


def play(settings: SimulationSettings, seed: int) -> str:
    rng = random.Random(seed)
    v = SimulatedVenue(
        SPEC, balances={"USDT": D(5_000_000), "BTC": D(40)}, settings=settings,
        start=CANDLES[0].open_time,
    )  # fmt: skip
    said: list[object] = []
    ids: list[str] = []
    lists: list[str] = []
    shown = (v.changes, dict(v.balances()))
    for i, candle in enumerate(CANDLES):
        count, changes = v.event_count, v.changes
        if not v.advance(candle):  # nothing happened: no event, the same balances
            assert (v.event_count, v.changes) == (count, changes)
        # what a caller read stays true while ``changes`` stays the same
        if v.changes == shown[0]:
            assert dict(v.balances()) == shown[1]
        shown = (v.changes, dict(v.balances()))
        close = candle.close
        for _ in range(rng.choice((0, 0, 0, 1, 1, 2))):
            roll = rng.random()
            if roll < 0.6:
                ids.append(f"o{i}:{len(ids)}")
                said.append(
                    v.submit(
                        symbol=SYMBOL, client_order_id=ids[-1], request=request(rng, close, candle)
                    )
                )
            elif roll < 0.72 and ids:
                said.append(v.cancel(client_order_id=rng.choice(ids)))
            elif roll < 0.8 and ids:
                price = SPEC.price(SPEC.nearest_ticks(close * D(rng.randint(970, 1030)) / 1000))
                said.append(
                    v.amend(
                        client_order_id=rng.choice(ids), price=price,
                        quantity=SPEC.quantity(rng.randint(1, 400)),
                    )
                )  # fmt: skip
            elif roll < 0.88:
                lists.append(f"L{i}")
                lots = SPEC.quantity(rng.randint(1, 300))
                up = SPEC.price(SPEC.nearest_ticks(close * D("1.01")))
                down = SPEC.price(SPEC.nearest_ticks(close * D("0.99")))
                said.append(
                    v.submit_list(
                        symbol=SYMBOL, client_list_id=lists[-1],
                        oco=(
                            OrderRequest(Side.SELL, OrderType.LIMIT, lots, price=up),
                            OrderRequest(Side.SELL, OrderType.STOP_MARKET, lots, stop_price=down),
                        ),
                    )
                )  # fmt: skip
            elif roll < 0.96:
                lists.append(f"B{i}")
                entry_price = SPEC.price(SPEC.nearest_ticks(close * D("0.998")))
                entry = OrderRequest(
                    Side.BUY, OrderType.LIMIT, SPEC.quantity(rng.randint(1, 300)), price=entry_price
                )
                bracket = Bracket(
                    entry,
                    take_profit_price=SPEC.price(SPEC.nearest_ticks(close * D("1.015"))),
                    stop_loss_price=SPEC.price(SPEC.nearest_ticks(close * D("0.98"))),
                )
                said.append(v.submit_list(symbol=SYMBOL, client_list_id=lists[-1], bracket=bracket))
            elif lists:
                said.append(v.cancel_list(client_list_id=rng.choice(lists)))
    assert v.event_count == len(v.events())
    record = repr((said, v.events(), v.open_orders(), dict(v.balances()), v.last_price, v.now))
    return hashlib.sha256(record.encode()).hexdigest()


CASES = {
    "default": (
        SimulationSettings(),
        1,
        "cb3f08243672abcdc2551baed12dd9a7401c65c1977086098220970b64b72158",
    ),
    "no-cap-ohlc": (
        SimulationSettings(PathMode.OHLC, None),
        2,
        "c32652797471da76ecbc103a63785499bf79db096abf6c6267daed137bae7cc0",
    ),
    "now-olhc-slipping": (
        SimulationSettings(PathMode.OLHC, D("0.3"), 0, 25, 9),
        3,
        "f147f05d40ce2623bbe67cf65822eeecacdaddc88afbb1f134c87084868b684c",
    ),
    "late-thin": (
        SimulationSettings(volume_share=D("0.02"), latency=3),
        4,
        "47e7cd42f40a24f133524111184f3595a15383e071f428649684194e6428bd56",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_long_stream_of_every_kind_of_order_gives_the_pinned_digest(name):
    settings, seed, digest = CASES[name]
    assert play(settings, seed) == digest
