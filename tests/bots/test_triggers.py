"""``PriceTriggers``: the bots a price reaches on one market, against a scan of every
band, over random sequences of sets, removals and queries; and the shape of its answer
for 10,000 bots of which a price move reaches about 1,000."""

from __future__ import annotations

import random
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from app.bots.domain.runtime import PriceBand
from app.bots.domain.triggers import PriceTriggers

PROPERTIES = settings(max_examples=200, derandomize=True, deadline=None)
prices = st.integers(1, 40).map(D)
bounds = st.one_of(st.none(), prices)
bands = st.one_of(
    st.just(PriceBand.NONE),
    st.just(PriceBand.EVERY),
    st.builds(PriceBand, bounds, bounds),  # low >= high among them: every price
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.integers(1, 12), bands),
        st.tuples(st.just("remove"), st.integers(1, 12)),
        st.tuples(st.just("crossed"), prices),
    ),
    max_size=60,
)


@PROPERTIES
@given(operations)
def test_crossed_names_each_bot_whose_band_the_price_reaches_once(ops):
    triggers, held = PriceTriggers(), {}
    for op in ops:
        if op[0] == "set":
            triggers.set(op[1], op[2])
            held[op[1]] = op[2]
        elif op[0] == "remove":
            triggers.remove(op[1])
            held.pop(op[1], None)
        else:
            crossed = triggers.crossed(op[1])
            assert len(crossed) == len(set(crossed))
            assert sorted(crossed) == sorted(b for b, band in held.items() if band.reaches(op[1]))
        assert len(triggers) == sum(1 for band in held.values() if band != PriceBand.NONE)
        for bot_id, band in held.items():  # as set, or as the band it means
            assert triggers.band(bot_id).reaches(D(20)) == band.reaches(D(20))


def test_ten_thousand_bots_a_move_wakes_the_thousand_it_concerns():
    """Every band holds the last price, 100 (each bot has seen it), its bounds up to 10
    away on either side: a move to 101 reaches those whose high is within 1 of it."""
    rng = random.Random(7)
    triggers = PriceTriggers()
    for bot_id in range(10_000):
        below, above = (D(rng.randint(1, 1_000)) / 100 for _ in range(2))
        triggers.set(bot_id, PriceBand.outside(100 - below, 100 + above))
    for bot_id in range(100):  # these need every price
        triggers.set(bot_id, PriceBand.EVERY)
    for bot_id in range(100, 1_100):  # asleep (waiting for an alert, or stopped)
        triggers.set(bot_id, PriceBand.NONE)
    assert len(triggers) == 9_000 and triggers.crossed(D(100)) == list(range(100))
    for price in (D(101), D("99.5"), D(130), D(1)):
        crossed = triggers.crossed(price)
        assert sorted(crossed) == [b for b in range(10_000) if triggers.band(b).reaches(price)]
    assert 800 < len(triggers.crossed(D(101))) < 1_200
