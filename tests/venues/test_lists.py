"""Order lists on the simulated venue (OCO and bracket), hand-computed over small candle
sequences: the first leg of an OCO to fill or trigger cancels the other (reason OCO, as
the live engine reports it), a bracket's exits go live once its entry is final, sized to
what it filled; refusals change nothing; cash, holds and positions account at every
step; the same inputs give the same events."""

from __future__ import annotations

from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from app.trading.domain.lists import Bracket
from app.trading.domain.orders import OrderRequest, OrderStatus, OrderType, Side
from app.venues.domain.lists import ListAck
from app.venues.domain.paths import PathMode
from app.venues.domain.simulated import SimulatedVenue
from app.venues.domain.venue import (
    Liquidity,
    OrderAccepted,
    OrderEnded,
    OrderFilled,
    OrderTriggered,
    VenueEvent,
)
from tests.support.simulation import SPEC, SYMBOL, random_candle
from tests.venues.test_simulated import balances, candle, venue

BUY, SELL = Side.BUY, Side.SELL


def oco_sell(v: SimulatedVenue, lid: str = "L", qty: str = "1") -> ListAck:
    """Take profit at 110, stop (market) at 90."""
    return v.submit_list(
        symbol=SYMBOL,
        client_list_id=lid,
        oco=(
            OrderRequest(SELL, OrderType.LIMIT, D(qty), price=D(110)),
            OrderRequest(SELL, OrderType.STOP_MARKET, D(qty), stop_price=D(90)),
        ),
    )


def bracket_buy(v: SimulatedVenue, entry: OrderRequest, lid: str = "B") -> ListAck:
    """Take profit at 110, stop loss (market) at 95."""
    return v.submit_list(
        symbol=SYMBOL,
        client_list_id=lid,
        bracket=Bracket(entry, take_profit_price=D(110), stop_loss_price=D(95)),
    )


def story(v: SimulatedVenue, after: int = 0) -> list[tuple]:
    """The events after ``after``, short."""
    out: list[tuple] = []
    for e in v.events(after=after):
        if isinstance(e, OrderAccepted):
            out.append(("accepted", e.client_order_id, e.status))
        elif isinstance(e, OrderTriggered):
            out.append(("triggered", e.client_order_id, e.price))
        elif isinstance(e, OrderFilled):
            out.append(("filled", e.client_order_id, e.price, e.quantity, e.fee, e.liquidity))
        elif isinstance(e, OrderEnded):
            out.append(("ended", e.client_order_id, e.status, e.reason))
    return out


def accounts(v: SimulatedVenue, usdt: str, btc: str) -> None:
    """Available + held of each currency is the start plus what the fills moved."""
    cash, coins = D(usdt), D(btc)
    for e in v.events():
        if isinstance(e, OrderFilled):
            sign = 1 if e.side is BUY else -1
            coins += sign * e.quantity
            cash -= sign * e.value + e.fee
    b = v.balances()
    assert b["USDT"].total == cash and b["BTC"].total == coins


def test_oco_take_profit_fills_and_cancels_the_stop():
    v = venue(btc="1")
    ack = oco_sell(v)
    assert ack.ok and [(a.client_order_id, a.status) for a in ack.orders] == [
        ("L:0", OrderStatus.NEW),
        ("L:1", OrderStatus.NEW),
    ]
    # one hold for both legs: 1 BTC
    assert balances(v)["BTC"] == (D("0E-8"), D("1.00000000"))
    accounts(v, "1000", "1")
    v.advance(candle(1, "100", "105", "99", "104"))
    assert story(v) == [
        ("accepted", "L:0", OrderStatus.OPEN),
        ("accepted", "L:1", OrderStatus.UNTRIGGERED),
    ]
    assert balances(v)["BTC"] == (D("0E-8"), D("1.00000000"))
    n = len(v.events())
    v.advance(candle(2, "104", "111", "103", "105"))
    # maker fee 0.1 % of 110
    assert story(v, n) == [
        ("filled", "L:0", D("110.00"), D("1.000"), D("0.110000"), Liquidity.MAKER),
        ("ended", "L:1", OrderStatus.CANCELED, "OCO"),
    ]
    assert balances(v) == {"USDT": (D("1109.890000"), D("0E-6")), "BTC": (D("0E-8"), D("0E-8"))}
    assert v.open_orders() == ()
    accounts(v, "1000", "1")


def test_oco_stop_triggers_cancels_the_take_profit_then_fills():
    v = venue(btc="1")
    oco_sell(v)
    v.advance(candle(1, "100", "101", "89", "95"))  # holding: open, low, high, close
    # the stop fires at its level on the way down; the limit is canceled before it trades
    assert story(v) == [
        ("accepted", "L:0", OrderStatus.OPEN),
        ("accepted", "L:1", OrderStatus.UNTRIGGERED),
        ("triggered", "L:1", D("90.00")),
        ("ended", "L:0", OrderStatus.CANCELED, "OCO"),
        ("accepted", "L:1", OrderStatus.OPEN),
        ("filled", "L:1", D("90.00"), D("1.000"), D("0.180000"), Liquidity.TAKER),
    ]
    assert balances(v) == {"USDT": (D("1089.820000"), D("0E-6")), "BTC": (D("0E-8"), D("0E-8"))}
    accounts(v, "1000", "1")


def test_canceling_one_leg_cancels_the_oco_and_frees_the_hold():
    v = venue(btc="1")
    oco_sell(v)
    v.advance(candle(1, "100", "101", "99", "100"))
    n = len(v.events())
    assert v.cancel(client_order_id="L:1").ok
    assert story(v, n) == [
        ("ended", "L:1", OrderStatus.CANCELED, "CANCELED"),
        ("ended", "L:0", OrderStatus.CANCELED, "OCO"),
    ]
    assert balances(v)["BTC"] == (D("1.00000000"), D("0E-8"))
    assert v.open_orders() == ()


def test_a_bracket_entry_fill_puts_its_exits_live_and_an_exit_fill_cancels_the_other():
    v = venue()
    ack = bracket_buy(v, OrderRequest(BUY, OrderType.LIMIT, D(1), price=D(99)))
    assert [(a.client_order_id, a.status) for a in ack.orders] == [
        ("B:0", OrderStatus.NEW),
        ("B:1", OrderStatus.PENDING),
        ("B:2", OrderStatus.PENDING),
    ]
    # only the entry holds: 99 + 0.2 %
    assert balances(v)["USDT"] == (D("900.802000"), D("99.198000"))
    v.advance(candle(1, "100", "101", "98", "100"))  # flat: open, high, low, close
    assert story(v) == [
        ("accepted", "B:0", OrderStatus.OPEN),
        ("filled", "B:0", D("99.00"), D("1.000"), D("0.099000"), Liquidity.MAKER),
        ("accepted", "B:1", OrderStatus.OPEN),
        ("accepted", "B:2", OrderStatus.UNTRIGGERED),
    ]
    # the exits hold the bought bitcoin, once
    assert balances(v) == {
        "USDT": (D("900.901000"), D("0E-6")),
        "BTC": (D("0E-8"), D("1.00000000")),
    }
    assert {(o.client_order_id, o.quantity, o.status) for o in v.open_orders()} == {
        ("B:1", D("1.000"), OrderStatus.OPEN),
        ("B:2", D("1.000"), OrderStatus.UNTRIGGERED),
    }
    accounts(v, "1000", "0")
    n = len(v.events())
    v.advance(candle(2, "100", "112", "99", "105"))
    assert story(v, n) == [
        ("filled", "B:1", D("110.00"), D("1.000"), D("0.110000"), Liquidity.MAKER),
        ("ended", "B:2", OrderStatus.CANCELED, "OCO"),
    ]
    assert balances(v) == {"USDT": (D("1010.791000"), D("0E-6")), "BTC": (D("0E-8"), D("0E-8"))}
    accounts(v, "1000", "0")


def test_a_bracket_stop_loss_fires_and_cancels_the_take_profit():
    v = venue()
    bracket_buy(v, OrderRequest(BUY, OrderType.LIMIT, D(1), price=D(99)))
    v.advance(candle(1, "100", "101", "98", "100"))
    n = len(v.events())
    v.advance(candle(2, "100", "100", "94", "96"))  # holding: the low first
    assert story(v, n) == [
        ("triggered", "B:2", D("95.00")),
        ("ended", "B:1", OrderStatus.CANCELED, "OCO"),
        ("accepted", "B:2", OrderStatus.OPEN),
        ("filled", "B:2", D("95.00"), D("1.000"), D("0.190000"), Liquidity.TAKER),
    ]
    assert balances(v) == {"USDT": (D("995.711000"), D("0E-6")), "BTC": (D("0E-8"), D("0E-8"))}
    accounts(v, "1000", "0")


def test_a_partly_filled_entry_sizes_the_exits_to_its_fill():
    v = venue(share="0.01")  # 1 BTC of a 100 BTC candle
    bracket_buy(v, OrderRequest(BUY, OrderType.MARKET, D(2)))
    v.advance(candle(1, "100", "100", "100", "100"))
    assert story(v) == [
        ("accepted", "B:0", OrderStatus.OPEN),
        ("filled", "B:0", D("100.00"), D("1.000"), D("0.200000"), Liquidity.TAKER),
        ("ended", "B:0", OrderStatus.EXPIRED, "NO_LIQUIDITY"),
        ("accepted", "B:1", OrderStatus.OPEN),
        ("accepted", "B:2", OrderStatus.UNTRIGGERED),
    ]
    assert {(o.client_order_id, o.quantity) for o in v.open_orders()} == {
        ("B:1", D("1.000")),
        ("B:2", D("1.000")),
    }
    assert balances(v) == {
        "USDT": (D("899.800000"), D("0E-6")),
        "BTC": (D("0E-8"), D("1.00000000")),
    }
    accounts(v, "1000", "0")


def test_an_entry_canceled_unfilled_ends_its_exits():
    v = venue()
    bracket_buy(v, OrderRequest(BUY, OrderType.LIMIT, D(1), price=D(99)))
    assert v.cancel(client_order_id="B:0").ok
    assert story(v) == [
        ("ended", "B:0", OrderStatus.CANCELED, "CANCELED"),
        ("ended", "B:1", OrderStatus.CANCELED, "ENTRY_NOT_FILLED"),
        ("ended", "B:2", OrderStatus.CANCELED, "ENTRY_NOT_FILLED"),
    ]
    assert balances(v)["USDT"] == (D("1000.000000"), D("0E-6"))


def test_cancel_list_cancels_its_live_legs():
    v = venue(btc="1")
    oco_sell(v)
    v.advance(candle(1, "100", "101", "99", "100"))
    n = len(v.events())
    ack = v.cancel_list(client_list_id="L")
    assert ack.ok and {a.status for a in ack.orders} == {OrderStatus.CANCELED}
    assert story(v, n) == [
        ("ended", "L:1", OrderStatus.CANCELED, "CANCELED"),
        ("ended", "L:0", OrderStatus.CANCELED, "CANCELED"),
    ]
    assert balances(v)["BTC"] == (D("1.00000000"), D("0E-8"))
    assert v.cancel_list(client_list_id="nope").code == "ORDER_NOT_FOUND"


def test_refusals_change_nothing():
    v = venue(btc="0.5")
    before = (balances(v), v.events(), v.open_orders())
    assert oco_sell(v).code == "INSUFFICIENT_FUNDS"
    assert bracket_buy(v, OrderRequest(BUY, OrderType.LIMIT, D(20), price=D(99))).code == (
        "INSUFFICIENT_FUNDS"
    )
    # the take-profit must be beyond the entry
    bad = Bracket(OrderRequest(BUY, OrderType.LIMIT, D(1), price=D(99)), D(98), D(95))
    assert v.submit_list(symbol=SYMBOL, client_list_id="X", bracket=bad).code == "INVALID_ORDER"
    same = (OrderRequest(SELL, OrderType.LIMIT, D("0.1"), price=D(110)),) * 2
    assert v.submit_list(symbol=SYMBOL, client_list_id="Y", oco=same).code == "INVALID_ORDER"
    assert (balances(v), v.events(), v.open_orders()) == before
    # nothing was kept: the same list id, funded, is placed
    assert oco_sell(v, qty="0.5").ok


def test_a_list_is_idempotent_by_its_client_id():
    v = venue(btc="1")
    first = oco_sell(v)
    assert oco_sell(v) == first
    assert len(v.open_orders()) == 2 and balances(v)["BTC"] == (D("0E-8"), D("1.00000000"))
    assert oco_sell(v, qty="0.5").code == "CLIENT_ORDER_ID_REUSED"
    # a leg's id is taken
    assert (
        v.submit(
            symbol=SYMBOL,
            client_order_id="L:0",
            request=OrderRequest(SELL, OrderType.LIMIT, D(1), price=D(111)),
        ).code
        == "CLIENT_ORDER_ID_REUSED"
    )
    # list legs are not amendable, as live
    v.advance(candle(1, "100", "101", "99", "100"))
    assert v.amend(client_order_id="L:0", price=D(111), quantity=D(1)).code == (
        "ORDER_NOT_AMENDABLE"
    )


def run(seed: int) -> tuple[VenueEvent, ...]:
    v = venue(btc="1", seed=seed, slippage_bps=30)
    oco_sell(v)
    bracket_buy(v, OrderRequest(BUY, OrderType.LIMIT, D(1), price=D(99)))
    for i, (o, h, lo, c) in enumerate(
        [("100", "101", "98", "100"), ("100", "105", "96", "97"), ("97", "98", "89", "92")], 1
    ):
        v.advance(candle(i, o, h, lo, c))
    return v.events()


def test_the_same_inputs_give_the_same_events():
    assert run(7) == run(7)
    assert any(isinstance(e, OrderEnded) and e.reason == "OCO" for e in run(7))


# --- a property: random lists, cancels and candles --------------------------------------

list_op = st.tuples(
    st.sampled_from(["oco", "bracket"]),
    st.sampled_from([BUY, SELL]),
    st.integers(1, 1500),  # lots
    st.integers(1, 800),  # ticks to the take-profit
    st.integers(1, 800),  # ticks to the stop
    st.integers(-300, 300),  # a bracket entry's limit from the last close (0: MARKET)
)
cancel_op = st.tuples(st.sampled_from(["cancel", "cancel_list"]), st.integers(0, 30))
candle_op = st.tuples(
    st.just("candle"),
    st.integers(-500, 500),
    st.integers(0, 900),
    st.integers(0, 900),
    st.integers(-500, 500),
    st.integers(0, 20),
)
list_ops = st.lists(
    st.tuples(st.lists(st.one_of(list_op, cancel_op), max_size=3), candle_op).map(
        lambda step: [*step[0], step[1]]
    ),
    max_size=12,
).map(lambda steps: [op for step in steps for op in step])


def _place(v: SimulatedVenue, lid: str, op: tuple, last: int) -> None:
    kind, side, lots, tp, sl, entry = op
    qty, up = SPEC.quantity(lots), 1 if side is BUY else -1
    price = SPEC.price
    if kind == "oco":  # a take-profit limit and a stop beyond the last close
        v.submit_list(
            symbol=SYMBOL,
            client_list_id=lid,
            oco=(
                OrderRequest(side, OrderType.LIMIT, qty, price=price(max(1, last - up * tp))),
                OrderRequest(
                    side,
                    OrderType.STOP_MARKET,
                    qty,
                    stop_price=price(max(1, last + up * sl)),
                    max_slippage_bps=2000,
                ),
            ),
        )
        return
    request = (
        OrderRequest(side, OrderType.MARKET, qty, max_slippage_bps=500)
        if entry == 0
        else OrderRequest(side, OrderType.LIMIT, qty, price=price(max(1, last + entry)))
    )
    v.submit_list(
        symbol=SYMBOL,
        client_list_id=lid,
        bracket=Bracket(
            request, price(max(1, last + up * (tp + 300))), price(max(1, last - up * (sl + 300)))
        ),
    )


@settings(max_examples=60, derandomize=True, deadline=None)
@given(ops=list_ops, path=st.sampled_from(list(PathMode)), latency=st.integers(0, 2))
def test_lists_keep_cash_holds_and_position_accounted(ops, path, latency):
    v = venue(usdt="500", btc="2", path=path, latency=latency, share="0.3")
    lids: list[str] = []
    hour, last = 1, 10000  # ticks
    for op in ops:
        if op[0] in ("oco", "bracket"):
            lids.append(f"L{len(lids)}")
            _place(v, lids[-1], op, last)
        elif op[0] == "cancel" and lids:
            lid = lids[op[1] % len(lids)]
            v.cancel(client_order_id=f"{lid}:{op[1] % 3}")
        elif op[0] == "cancel_list" and lids:
            v.cancel_list(client_list_id=lids[op[1] % len(lids)])
        elif op[0] == "candle":
            _, move, up, down, close_move, volume = op
            o = max(200, last + move)
            c = max(200, o + close_move)
            v.advance(random_candle(hour, o, c, up, down, volume))
            hour, last = hour + 1, c
        accounts(v, "500", "2")
        b = v.balances()
        assert all(x.available >= 0 and x.held >= 0 for x in b.values())
        # what is held: per list (its live legs share one hold), a PENDING exit nothing
        sells: dict[str, D] = {}
        buys = False
        for o in v.open_orders():
            if o.status is OrderStatus.PENDING:
                continue
            if o.side is SELL:
                key = o.client_order_id.split(":")[0]
                sells[key] = max(sells.get(key, D(0)), o.quantity - o.filled)
            else:
                buys = True
        assert b["BTC"].held == sum(sells.values(), D(0))
        if not buys:
            assert b["USDT"].held == 0
