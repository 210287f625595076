"""The matching engine without a database: examples for every order type, time in force,
post-only, self-trade prevention, amend and cancel; then properties over random command
streams (hypothesis): never crossed, price-time priority, both sides of a fill agree,
FOK all or nothing, quantities and assets conserved, exact fees, valid status
transitions, deterministic replay and restore."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.errors import InvariantViolation
from app.trading.domain import orders
from app.trading.domain.matching import (
    Accepted,
    Amend,
    Amended,
    AmendRejected,
    BookSnapshot,
    Cancel,
    CancelAll,
    CancelRejected,
    Command,
    DoneReason,
    Event,
    ExpireDue,
    Fill,
    Level,
    OrderBook,
    OrderDone,
    Place,
    Rejected,
    RejectReason,
    RestingOrder,
    order_events,
    place_command,
    rejection_error,
    replay,
)
from app.trading.domain.orders import (
    MarketSpec,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
GTC, IOC, FOK, GTD = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.GTD
CANCELED, EXPIRED = OrderStatus.CANCELED, OrderStatus.EXPIRED

# 0.01 USDT x 0.001 BTC = 10 units of 0.000001 USDT; fees 1/1000 and 1/400 (den 2000)
SPEC = MarketSpec(
    symbol="BTC/USDT",
    base="BTC",
    quote="USDT",
    base_scale=8,
    quote_scale=6,
    tick_size=Decimal("0.01"),
    lot_size=Decimal("0.001"),
    min_notional=Decimal(0),
    maker_fee=Decimal("0.001"),
    taker_fee=Decimal("0.0025"),
)
G = SPEC.units_per_tick_lot
PROPERTIES = settings(max_examples=120, derandomize=True, deadline=None)


def fee(before: int, after: int) -> int:
    """What the engine charges when an order's fee numerator grows from before to after."""
    den = SPEC.fee_denominator
    return -(-after // den) - -(-before // den)


class Desk:
    """A book and a seq counter: each call is one command; order ids are 1, 2, 3 ..."""

    def __init__(self, spec: MarketSpec = SPEC) -> None:
        self.book = OrderBook(spec)
        self.seq = 0
        self.order_id = 0

    def run(self, command: Command) -> list[Event]:
        return self.book.handle(command)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def place(
        self,
        side: Side,
        price: int,
        quantity: int,
        *,
        user: int = 1,
        type: OrderType = LIMIT,
        tif: TimeInForce | None = None,
        post_only: bool = False,
        expires_at: int | None = None,
    ) -> list[Event]:
        self.order_id += 1
        tif = tif or (IOC if type is MARKET else GTC)
        return self.run(
            Place(
                self.next_seq(),
                self.order_id,
                user,
                side,
                type,
                price,
                quantity,
                tif,
                post_only,
                expires_at,
            )
        )

    def cancel(self, order_id: int) -> list[Event]:
        return self.run(Cancel(self.next_seq(), order_id))

    def amend(self, order_id: int, price: int, quantity: int) -> list[Event]:
        return self.run(Amend(self.next_seq(), order_id, price, quantity))

    def queue(self, side: Side) -> list[tuple[int, int, int]]:
        """(order id, price, remaining) in priority order."""
        snapshot = self.book.snapshot()
        resting = snapshot.bids if side is BUY else snapshot.asks
        return [(o.order_id, o.price, o.remaining) for o in resting]


def fills(events: list[Event]) -> list[Fill]:
    return [e for e in events if isinstance(e, Fill)]


def trades(events: list[Event]) -> list[tuple[int, int, int]]:
    """(maker order id, price, quantity) per fill."""
    return [(f.maker_order_id, f.price, f.quantity) for f in fills(events)]


# --- limit orders and priority ------------------------------------------------------------


def test_a_limit_order_that_does_not_cross_rests():
    desk = Desk()
    assert desk.place(BUY, 100, 5) == [Accepted(1, 1)]
    assert desk.place(SELL, 101, 3, user=2) == [Accepted(2, 2)]
    assert (desk.book.best_bid, desk.book.best_ask) == (100, 101)
    assert desk.book.depth(5).bids == (Level(100, 5, 1),)
    assert desk.book.resting(1) == RestingOrder(1, 1, BUY, 100, 5, 5, 0, 1)


def test_a_crossing_order_takes_the_best_price_first_then_the_oldest_order():
    desk = Desk()
    desk.place(SELL, 102, 5, user=1)
    desk.place(SELL, 101, 5, user=2)  # better price, later
    desk.place(SELL, 101, 5, user=3)  # same price, later still
    events = desk.place(BUY, 102, 12, user=4)
    assert trades(events) == [(2, 101, 5), (3, 101, 5), (1, 102, 2)]
    assert desk.queue(SELL) == [(1, 102, 3)]
    assert desk.queue(BUY) == []  # filled completely: nothing rests


def test_a_fill_carries_both_sides_value_fees_and_what_is_left():
    desk = Desk()
    desk.place(SELL, 6_000_000, 7, user=1)
    [_, fill] = desk.place(BUY, 6_000_100, 3, user=2)
    notional = 6_000_000 * 3 * G  # 180 USDT in units of 0.000001
    assert fill == Fill(
        seq=2,
        trade_id=1,
        maker_order_id=1,
        taker_order_id=2,
        maker_user_id=1,
        taker_user_id=2,
        taker_side=BUY,
        price=6_000_000,  # the maker's price, not the taker's limit
        quantity=3,
        notional=notional,
        maker_fee=notional // 1000,  # 0.18 USDT
        taker_fee=notional // 400,  # 0.45 USDT
        maker_remaining=4,
        taker_remaining=0,
    )
    assert SPEC.quote_amount(fill.notional) == Decimal("180")


def test_fees_are_rounded_up_per_order_not_per_fill():
    desk = Desk()
    desk.place(SELL, 1, 10, user=1)  # each 1-lot fill is worth 10 units
    charged = [f.maker_fee for _ in range(10) for f in fills(desk.place(BUY, 1, 1, user=2))]
    # 10 units x 1/1000 per fill: 0.01 unit each; rounded up once, not ten times
    assert charged == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert sum(charged) == 1  # ceil(100 units x 1/1000)


def test_a_partly_filled_gtc_order_rests_with_its_fees_so_far():
    desk = Desk()
    desk.place(SELL, 100, 2, user=1)
    events = desk.place(BUY, 100, 5, user=2)
    assert [type(e) for e in events] == [Accepted, Fill]
    resting = desk.book.resting(2)
    assert resting is not None
    assert (resting.remaining, resting.quantity, resting.fee_numerator) == (3, 5, 100 * 2 * G * 5)


# --- time in force, post-only, market -----------------------------------------------------


def test_ioc_expires_what_does_not_fill():
    desk = Desk()
    desk.place(SELL, 100, 2, user=1)
    desk.place(SELL, 105, 2, user=1)
    events = desk.place(BUY, 101, 5, user=2, tif=IOC)
    assert trades(events) == [(1, 100, 2)]
    assert events[-1] == OrderDone(3, 3, EXPIRED, DoneReason.PRICE_LIMIT, 3)
    events = desk.place(BUY, 200, 5, user=2, tif=IOC)
    assert events[-1] == OrderDone(4, 4, EXPIRED, DoneReason.NO_LIQUIDITY, 3)
    assert desk.queue(BUY) == []


def test_fok_fills_completely_or_not_at_all():
    desk = Desk()
    desk.place(SELL, 100, 2, user=1)
    desk.place(SELL, 101, 2, user=1)
    assert desk.place(BUY, 101, 5, user=2, tif=FOK) == [
        Rejected(3, 3, RejectReason.FOK_NOT_FILLABLE)
    ]
    assert desk.queue(SELL) == [(1, 100, 2), (2, 101, 2)]  # untouched
    assert desk.place(BUY, 100, 3, user=2, tif=FOK) == [
        Rejected(4, 4, RejectReason.FOK_NOT_FILLABLE)  # enough only beyond the limit
    ]
    events = desk.place(BUY, 101, 4, user=2, tif=FOK)
    assert trades(events) == [(1, 100, 2), (2, 101, 2)]
    assert desk.place(SELL, 1, 1, user=2, tif=FOK) == [  # an empty side
        Rejected(6, 6, RejectReason.FOK_NOT_FILLABLE)
    ]


def test_a_fok_that_would_reach_its_own_order_is_rejected():
    desk = Desk()
    desk.place(SELL, 100, 2, user=1)
    desk.place(SELL, 100, 5, user=2)
    assert desk.place(BUY, 100, 3, user=2, tif=FOK) == [
        Rejected(3, 3, RejectReason.FOK_NOT_FILLABLE)
    ]
    assert trades(desk.place(BUY, 100, 2, user=2, tif=FOK)) == [(1, 100, 2)]


def test_post_only_rests_or_is_rejected_but_never_takes():
    desk = Desk()
    desk.place(SELL, 101, 2, user=1)
    assert desk.place(BUY, 100, 1, user=2, post_only=True) == [Accepted(2, 2)]
    assert desk.place(BUY, 101, 1, user=2, post_only=True) == [
        Rejected(3, 3, RejectReason.POST_ONLY_WOULD_TAKE)
    ]
    assert desk.queue(BUY) == [(2, 100, 1)]
    assert rejection_error(RejectReason.POST_ONLY_WOULD_TAKE).code == "POST_ONLY_WOULD_TAKE"


def test_a_market_order_stops_at_its_worst_price():
    desk = Desk()
    for price in (100, 101, 110):
        desk.place(SELL, price, 2, user=1)
    events = desk.place(BUY, 105, 10, user=2, type=MARKET)  # worst acceptable: 105
    assert trades(events) == [(1, 100, 2), (2, 101, 2)]
    assert events[-1] == OrderDone(4, 4, EXPIRED, DoneReason.PRICE_LIMIT, 6)
    assert desk.queue(SELL) == [(3, 110, 2)]
    assert desk.queue(BUY) == []  # a market order never rests


def test_a_market_order_on_an_empty_book_expires():
    desk = Desk()
    assert desk.place(SELL, 1, 3, type=MARKET) == [
        Accepted(1, 1),
        OrderDone(1, 1, EXPIRED, DoneReason.NO_LIQUIDITY, 3),
    ]


def test_a_fok_market_order():
    desk = Desk()
    desk.place(BUY, 100, 2, user=1)
    assert desk.place(SELL, 90, 3, user=2, type=MARKET, tif=FOK) == [
        Rejected(2, 2, RejectReason.FOK_NOT_FILLABLE)
    ]
    assert trades(desk.place(SELL, 90, 2, user=2, type=MARKET, tif=FOK)) == [(1, 100, 2)]


@pytest.mark.parametrize(
    "command",
    [
        Place(1, 1, 1, BUY, MARKET, 100, 1, GTC),  # a market order is IOC or FOK
        Place(1, 1, 1, BUY, MARKET, 100, 1, IOC, True),  # ... and never post-only
        Place(1, 1, 1, BUY, LIMIT, 100, 1, IOC, True),  # post-only is GTC / GTD
        Place(1, 1, 1, BUY, LIMIT, 100, 1, GTD),  # GTD needs expires_at
        Place(1, 1, 1, BUY, LIMIT, 100, 1, GTC, False, 5),  # ... and only GTD has one
        Place(1, 1, 1, BUY, LIMIT, 0, 1),
        Place(1, 1, 1, BUY, LIMIT, 100, 0),
        Place(1, 1, 1, BUY, OrderType.STOP_LIMIT, 100, 1),  # the trigger engine's job
        Place(1, 1, 1, "SIDEWAYS", LIMIT, 100, 1),  # type: ignore[arg-type]
    ],
)
def test_the_engine_refuses_malformed_orders(command):
    book = OrderBook(SPEC)
    assert book.handle(command) == [Rejected(1, 1, RejectReason.INVALID_ORDER)]
    assert len(book) == 0


def test_plain_strings_from_storage_are_taken_as_their_enum_values():
    book = OrderBook(SPEC)
    book.handle(Place(1, 1, 1, "SELL", "LIMIT", 100, 2, "GTC"))  # type: ignore[arg-type]
    events = book.handle(Place(2, 2, 2, "BUY", "LIMIT", 100, 5, "IOC"))  # type: ignore[arg-type]
    assert fills(events)[0].taker_side is BUY
    assert events[-1] == OrderDone(2, 2, EXPIRED, DoneReason.NO_LIQUIDITY, 3)


def test_a_duplicate_order_id_is_refused():
    desk = Desk()
    desk.place(BUY, 100, 1)
    assert desk.run(Place(9, 1, 1, BUY, LIMIT, 99, 1)) == [
        Rejected(9, 1, RejectReason.DUPLICATE_ORDER_ID)
    ]
    assert isinstance(rejection_error(RejectReason.DUPLICATE_ORDER_ID), InvariantViolation)


# --- self-trade prevention ----------------------------------------------------------------


def test_self_trade_prevention_expires_the_taker_and_keeps_the_resting_order():
    desk = Desk()
    desk.place(SELL, 100, 2, user=1)
    desk.place(SELL, 100, 3, user=2)  # user 2's own order, behind user 1's
    desk.place(SELL, 100, 4, user=1)
    events = desk.place(BUY, 101, 10, user=2)
    assert trades(events) == [(1, 100, 2)]  # the fill before its own order stands
    assert events[-1] == OrderDone(4, 4, CANCELED, DoneReason.SELF_TRADE_PREVENTED, 8)
    assert desk.queue(SELL) == [(2, 100, 3), (3, 100, 4)]
    assert desk.queue(BUY) == []  # the taker's remainder does not rest


# --- cancel, amend, expire ----------------------------------------------------------------


def test_cancel():
    desk = Desk()
    desk.place(BUY, 100, 5)
    desk.place(BUY, 100, 6)
    assert desk.cancel(1) == [OrderDone(3, 1, CANCELED, DoneReason.CANCELED, 5)]
    assert desk.queue(BUY) == [(2, 100, 6)]
    assert desk.cancel(1) == [CancelRejected(4, 1, RejectReason.ORDER_NOT_CANCELLABLE)]
    assert desk.cancel(77) == [CancelRejected(5, 77, RejectReason.ORDER_NOT_CANCELLABLE)]
    desk.cancel(2)
    assert desk.book.snapshot().bids == () and desk.book.depth(10).bids == ()


def test_cancel_all_of_a_user():
    desk = Desk()
    desk.place(BUY, 100, 1, user=1)
    desk.place(SELL, 110, 1, user=2)
    desk.place(SELL, 111, 1, user=1)
    events = desk.run(CancelAll(9, 1))
    assert [(e.order_id, e.status) for e in events if isinstance(e, OrderDone)] == [
        (1, CANCELED),
        (3, CANCELED),
    ]
    assert len(desk.book) == 1 and 2 in desk.book


def test_reducing_quantity_keeps_priority():
    desk = Desk()
    desk.place(BUY, 100, 5, user=1)
    desk.place(BUY, 100, 5, user=2)
    assert desk.amend(1, 100, 3) == [Amended(3, 1, 100, 3, 3, True)]
    assert desk.queue(BUY) == [(1, 100, 3), (2, 100, 5)]


def test_raising_quantity_or_moving_the_price_loses_priority():
    desk = Desk()
    desk.place(BUY, 100, 5, user=1)
    desk.place(BUY, 100, 5, user=2)
    assert desk.amend(1, 100, 6) == [Amended(3, 1, 100, 6, 6, False)]
    assert desk.queue(BUY) == [(2, 100, 5), (1, 100, 6)]
    assert desk.amend(2, 99, 5) == [Amended(4, 2, 99, 5, 5, False)]
    assert desk.queue(BUY) == [(1, 100, 6), (2, 99, 5)]
    assert desk.book.resting(2).priority == 4  # type: ignore[union-attr]


def test_the_amended_quantity_is_the_new_total_including_what_filled():
    desk = Desk()
    desk.place(BUY, 100, 10, user=1)
    desk.place(SELL, 100, 4, user=2)  # 4 filled, 6 left
    assert desk.amend(1, 100, 5) == [Amended(3, 1, 100, 5, 1, True)]
    assert desk.amend(1, 100, 4) == [AmendRejected(4, 1, RejectReason.INVALID_AMEND)]
    assert desk.amend(1, 0, 5) == [AmendRejected(5, 1, RejectReason.INVALID_AMEND)]
    assert desk.amend(99, 100, 5) == [AmendRejected(6, 99, RejectReason.ORDER_NOT_AMENDABLE)]


def test_an_amended_price_that_crosses_trades_as_a_taker():
    desk = Desk()
    desk.place(SELL, 105, 3, user=1)
    desk.place(BUY, 100, 5, user=2)
    events = desk.amend(2, 105, 5)
    assert events[0] == Amended(3, 2, 105, 5, 5, False)
    [fill] = fills(events)
    assert (fill.taker_order_id, fill.taker_fee) == (2, fee(0, 105 * 3 * G * 5))
    assert desk.queue(BUY) == [(2, 105, 2)]
    assert desk.queue(SELL) == []


def test_an_amend_that_crosses_into_its_own_order_is_canceled():
    desk = Desk()
    desk.place(SELL, 105, 3, user=2)
    desk.place(BUY, 100, 5, user=2)
    events = desk.amend(2, 105, 5)
    assert events[-1] == OrderDone(3, 2, CANCELED, DoneReason.SELF_TRADE_PREVENTED, 5)
    assert 2 not in desk.book and desk.queue(SELL) == [(1, 105, 3)]


def test_a_post_only_order_cannot_be_amended_across_the_book():
    desk = Desk()
    desk.place(SELL, 105, 3, user=1)
    desk.place(BUY, 100, 5, user=2, post_only=True)
    assert desk.amend(2, 105, 5) == [AmendRejected(3, 2, RejectReason.POST_ONLY_WOULD_TAKE)]
    assert desk.queue(BUY) == [(2, 100, 5)]


def test_gtd_orders_expire_when_the_clock_command_passes_their_time():
    desk = Desk()
    desk.place(BUY, 100, 1, tif=GTD, expires_at=1_000)
    desk.place(BUY, 99, 1, tif=GTD, expires_at=2_000)
    desk.place(BUY, 98, 1)
    assert desk.run(ExpireDue(10, 999)) == []
    assert desk.run(ExpireDue(11, 1_000)) == [OrderDone(11, 1, EXPIRED, DoneReason.GTD_EXPIRED, 1)]
    desk.seq = 11
    desk.cancel(2)
    assert desk.run(ExpireDue(20, 5_000)) == []  # already gone
    assert desk.queue(BUY) == [(3, 98, 1)]


def test_a_command_not_above_the_last_seq_was_applied_already():
    desk = Desk()
    desk.place(BUY, 100, 1)
    assert desk.run(Place(1, 7, 1, BUY, LIMIT, 100, 1)) == []
    assert desk.run(Cancel(1, 1)) == []
    assert desk.book.last_seq == 1 and len(desk.book) == 1


def test_place_command_from_a_validated_order():
    from datetime import UTC, datetime

    spec = SPEC
    valid = orders.validate_order(
        orders.OrderRequest(
            side=SELL,
            type=OrderType.STOP_MARKET,
            quantity=Decimal("0.005"),
            stop_price=Decimal("59000"),
        ),
        spec,
        now=datetime(2026, 1, 1, tzinfo=UTC),
        reference_price=Decimal("60000"),
    )
    command = place_command(valid, seq=3, order_id=8, user_id=4)
    assert command == Place(3, 8, 4, SELL, MARKET, 5_605_000, 5, IOC, False, None)


def test_snapshot_and_restore():
    desk = Desk()
    desk.place(BUY, 100, 5, user=1, tif=GTD, expires_at=50)
    desk.place(BUY, 100, 5, user=2)
    desk.place(SELL, 103, 5, user=3)
    desk.place(SELL, 100, 2, user=4)  # fills 2 of order 1
    desk.place(BUY, 90, 1, user=3)
    snapshot = desk.book.snapshot()
    restored = OrderBook.restore(SPEC, snapshot)
    assert restored.snapshot() == snapshot
    later: list[Command] = [
        Place(10, 10, 5, SELL, LIMIT, 99, 6),
        ExpireDue(11, 60),
        CancelAll(12, 3),
    ]
    assert [restored.handle(c) for c in later] == [desk.run(c) for c in later]
    assert restored.snapshot() == desk.book.snapshot()


def test_restore_refuses_a_book_that_cannot_be():
    crossed = BookSnapshot(
        5,
        0,
        (RestingOrder(1, 1, BUY, 101, 1, 1, 0, 1),),
        (RestingOrder(2, 2, SELL, 100, 1, 1, 0, 2),),
    )
    with pytest.raises(InvariantViolation):
        OrderBook.restore(SPEC, crossed)
    future = BookSnapshot(1, 0, (RestingOrder(1, 1, BUY, 101, 1, 1, 0, 9),), ())
    with pytest.raises(InvariantViolation):
        OrderBook.restore(SPEC, future)


def test_rejections_map_to_the_trading_errors():
    for reason in RejectReason:
        error = rejection_error(reason)
        if reason is not RejectReason.DUPLICATE_ORDER_ID:
            assert error.code == reason.value


def test_order_events_drive_the_status_machine():
    desk = Desk()
    desk.place(SELL, 100, 5, user=1)
    events = desk.place(BUY, 100, 5, user=2) + desk.place(BUY, 99, 1, user=3)
    events += desk.cancel(3)
    status: dict[int, OrderStatus] = defaultdict(lambda: OrderStatus.NEW)
    status[1] = OrderStatus.OPEN
    for event in events:
        for order_id, order_event in order_events(event):
            status[order_id] = orders.apply(status[order_id], order_event)
    assert dict(status) == {1: OrderStatus.FILLED, 2: OrderStatus.FILLED, 3: CANCELED}


# --- properties over random command streams -----------------------------------------------

PRICES = st.integers(95, 105)
QUANTITIES = st.integers(1, 12)
USERS = st.integers(1, 3)  # few users: self-trades happen
KINDS = ["limit"] * 6 + ["market"] * 2 + ["cancel"] * 2 + ["amend", "cancel_all", "expire"]


@st.composite
def streams(draw: Any, max_size: int = 60, tifs: tuple[TimeInForce, ...] | None = None) -> list:
    commands: list[Command] = []
    seq = 0
    order_ids: list[int] = []
    placed: dict[int, tuple[int, int]] = {}  # order id -> (price, quantity)
    for _ in range(draw(st.integers(1, max_size))):
        seq += draw(st.sampled_from([1, 1, 1, 3]))  # gaps in the sequence are allowed
        kind = draw(st.sampled_from(KINDS))
        if kind in ("cancel", "amend"):
            # mostly a recent order (likely still resting), sometimes any or an unknown one
            back = draw(st.integers(1, len(order_ids) + 1))
            target = order_ids[-min(back, 3)] if order_ids and back <= len(order_ids) else 999
            if kind == "cancel":
                commands.append(Cancel(seq, target))
                continue
            price, quantity = placed.get(target, (100, 5))
            new_price = draw(st.sampled_from([price, price, draw(PRICES)]))
            new_quantity = draw(st.sampled_from([quantity - 1, quantity + 2, 1, draw(QUANTITIES)]))
            commands.append(Amend(seq, target, new_price, max(new_quantity, 0)))
        elif kind == "cancel_all":
            commands.append(CancelAll(seq, draw(USERS)))
        elif kind == "expire":
            commands.append(ExpireDue(seq, draw(st.integers(0, 30))))
        else:
            order_id = len(order_ids) + 1
            order_ids.append(order_id)
            side = draw(st.sampled_from([BUY, SELL]))
            price, quantity = draw(PRICES), draw(QUANTITIES)
            placed[order_id] = (price, quantity)
            if kind == "market":
                tif = draw(st.sampled_from(tifs or (IOC, IOC, FOK)))
                tif = tif if tif in (IOC, FOK) else IOC
                commands.append(
                    Place(
                        seq,
                        order_id,
                        draw(USERS),
                        side,
                        MARKET,
                        price,
                        quantity,
                        tif,
                    )
                )
                continue
            tif = draw(st.sampled_from(tifs or (GTC, GTC, GTC, IOC, FOK, GTD)))
            post_only = tif in (GTC, GTD) and draw(st.integers(0, 4)) == 0
            expires_at = draw(st.integers(1, 30)) if tif is GTD else None
            commands.append(
                Place(
                    seq,
                    order_id,
                    draw(USERS),
                    side,
                    LIMIT,
                    price,
                    quantity,
                    tif,
                    post_only,
                    expires_at,
                )
            )
    return commands


@dataclass
class Step:
    command: Command
    before: BookSnapshot
    events: list[Event]
    after: BookSnapshot


def run(commands: list[Command]) -> list[Step]:
    book = OrderBook(SPEC)
    steps = []
    for command in commands:
        before = book.snapshot()
        events = book.handle(command)
        steps.append(Step(command, before, events, book.snapshot()))
    return steps


def taker_info(step: Step) -> tuple[int, Side, int] | None:
    """(user, side, limit price) of the order that trades in this step, if any."""
    c = step.command
    if isinstance(c, Place):
        return c.user_id, c.side, c.price
    if isinstance(c, Amend):
        mine = [o for o in step.before.bids + step.before.asks if o.order_id == c.order_id]
        return (mine[0].user_id, mine[0].side, c.price) if mine else None
    return None


@PROPERTIES
@given(streams())
def test_the_book_is_never_crossed(commands):
    for step in run(commands):
        bids, asks = step.after.bids, step.after.asks
        if bids and asks:
            assert bids[0].price < asks[0].price
        assert [o.price for o in bids] == sorted((o.price for o in bids), reverse=True)
        assert [o.price for o in asks] == sorted(o.price for o in asks)


@PROPERTIES
@given(streams())
def test_price_time_priority(commands):
    for step in run(commands):
        for side in (step.after.bids, step.after.asks):  # queue order within each level
            for a, b in pairwise(side):
                assert a.price != b.price or a.priority < b.priority
                assert b.priority <= step.after.last_seq
        for amended in (e for e in step.events if isinstance(e, Amended)):
            [old] = [
                o for o in step.before.bids + step.before.asks if o.order_id == amended.order_id
            ]
            keeps = amended.price == old.price and amended.quantity <= old.quantity
            assert amended.kept_priority is keeps
        taker_fills = fills(step.events)
        if not taker_fills:
            continue
        buying = taker_fills[0].taker_side is BUY
        # The fills consume the other side exactly in the order the book held it.
        queue = [
            [o.order_id, o.price, o.remaining, o.user_id]
            for o in (step.before.asks if buying else step.before.bids)
        ]
        for fill in taker_fills:
            head = queue[0]
            assert (fill.maker_order_id, fill.price) == (head[0], head[1])
            assert fill.quantity <= head[2]
            head[2] -= fill.quantity
            assert fill.maker_remaining == head[2]
            if head[2] == 0:
                queue.pop(0)
        done = [e for e in step.events if isinstance(e, OrderDone)]
        info = taker_info(step)
        assert info is not None
        user, _, limit = info
        for event in done:
            if event.reason is DoneReason.SELF_TRADE_PREVENTED:
                assert queue[0][3] == user  # stopped at its own order, not before
            elif event.reason is DoneReason.PRICE_LIMIT:
                assert queue and (queue[0][1] > limit if buying else queue[0][1] < limit)
            elif event.reason is DoneReason.NO_LIQUIDITY:
                assert not queue


@PROPERTIES
@given(streams())
def test_both_sides_of_every_fill_agree(commands):
    for step in run(commands):
        info = taker_info(step)
        resting = {o.order_id: o for o in step.before.bids + step.before.asks}
        for fill in fills(step.events):
            assert info is not None
            user, side, limit = info
            maker = resting[fill.maker_order_id]
            assert (fill.taker_user_id, fill.taker_side) == (user, side)
            assert (fill.maker_user_id, fill.price) == (maker.user_id, maker.price)
            assert maker.side is not side and maker.user_id != user
            assert fill.price <= limit if side is BUY else fill.price >= limit
            assert fill.notional == fill.price * fill.quantity * G
            assert fill.seq == step.command.seq
        trade_ids = [f.trade_id for f in fills(step.events)]
        assert trade_ids == sorted(set(trade_ids))
        assert all(e.seq == step.command.seq for e in step.events)


@PROPERTIES
@given(streams(tifs=(FOK, GTC)))
def test_fok_is_all_or_nothing(commands):
    for step in run(commands):
        c = step.command
        if not (isinstance(c, Place) and c.time_in_force is FOK):
            continue
        if isinstance(step.events[0], Rejected):
            assert len(step.events) == 1 and step.after == step.before._replace(last_seq=c.seq)
        else:
            assert sum(f.quantity for f in fills(step.events)) == c.quantity
            assert not any(isinstance(e, OrderDone) for e in step.events)
            assert fills(step.events)[-1].taker_remaining == 0


@PROPERTIES
@given(streams())
def test_quantity_is_conserved(commands):
    """Every order: filled + remaining = its quantity; every filled lot came off a
    resting order; what rests is exactly what is left of orders not done."""
    quantity: dict[int, int] = {}
    filled: dict[int, int] = defaultdict(int)
    finished: dict[int, int] = {}  # order id -> remaining when it left
    for step in run(commands):
        for event in step.events:
            if isinstance(event, Accepted):
                assert isinstance(step.command, Place)
                quantity[event.order_id] = step.command.quantity
            elif isinstance(event, Amended):
                quantity[event.order_id] = event.quantity
                assert event.remaining == event.quantity - filled[event.order_id]
            elif isinstance(event, Fill):
                for order_id, left in (
                    (event.maker_order_id, event.maker_remaining),
                    (event.taker_order_id, event.taker_remaining),
                ):
                    filled[order_id] += event.quantity
                    assert left == quantity[order_id] - filled[order_id] >= 0
                    if left == 0:
                        finished[order_id] = 0
            elif isinstance(event, OrderDone):
                assert event.remaining == quantity[event.order_id] - filled[event.order_id] > 0
                finished[event.order_id] = event.remaining
        resting = {o.order_id: o for o in step.after.bids + step.after.asks}
        assert set(resting) == set(quantity) - set(finished)
        for order_id, o in resting.items():
            assert (o.quantity, o.remaining) == (
                quantity[order_id],
                quantity[order_id] - filled[order_id],
            )


@PROPERTIES
@given(streams())
def test_every_asset_is_conserved_and_fees_are_exact(commands):
    """Balances from fills: buyer +base -(value + fee), seller -base +(value - fee),
    the fee account + both fees. Each asset sums to zero over users plus the fee
    account; each order's fees are ceil(sum of value x rate) in total; a BUY never
    spends more than its hold; a seller never nets a negative amount."""
    balance: dict[tuple[object, str], int] = defaultdict(int)
    fee_numerator: dict[int, int] = defaultdict(int)
    fees_paid: dict[int, int] = defaultdict(int)
    spent: dict[int, int] = defaultdict(int)
    amended: set[int] = set()
    limits: dict[int, tuple[int, int]] = {}
    maker_num, taker_num = SPEC.maker_fee_numerator, SPEC.taker_fee_numerator
    for step in run(commands):
        c = step.command
        if isinstance(c, Place):
            limits[c.order_id] = (c.price, c.quantity)
        elif isinstance(c, Amend):
            amended.add(c.order_id)
        for f in fills(step.events):
            buy_is_taker = f.taker_side is BUY
            buyer, seller = (
                (f.taker_user_id, f.maker_user_id)
                if buy_is_taker
                else (f.maker_user_id, f.taker_user_id)
            )
            buyer_fee, seller_fee = (
                (f.taker_fee, f.maker_fee) if buy_is_taker else (f.maker_fee, f.taker_fee)
            )
            balance[(buyer, "BTC")] += f.quantity
            balance[(seller, "BTC")] -= f.quantity
            balance[(buyer, "USDT")] -= f.notional + buyer_fee
            balance[(seller, "USDT")] += f.notional - seller_fee
            balance[("FEES", "USDT")] += f.maker_fee + f.taker_fee
            assert f.notional - seller_fee >= 0 and f.maker_fee >= 0 and f.taker_fee >= 0
            for order_id, paid, num in (
                (f.maker_order_id, f.maker_fee, maker_num),
                (f.taker_order_id, f.taker_fee, taker_num),
            ):
                fee_numerator[order_id] += f.notional * num
                fees_paid[order_id] += paid
                assert fees_paid[order_id] == -(-fee_numerator[order_id] // SPEC.fee_denominator)
            buy_order = f.taker_order_id if buy_is_taker else f.maker_order_id
            spent[buy_order] += f.notional + buyer_fee
            if buy_order not in amended:
                price, quantity = limits[buy_order]
                assert spent[buy_order] <= orders.hold_units(SPEC, BUY, price, quantity)
        for asset in ("BTC", "USDT"):
            assert sum(v for (_, a), v in balance.items() if a == asset) == 0


@PROPERTIES
@given(streams())
def test_every_event_is_a_valid_status_transition(commands):
    status: dict[int, OrderStatus] = {}
    for step in run(commands):
        for event in step.events:
            for order_id, order_event in order_events(event):
                current = status.get(order_id, OrderStatus.NEW)
                status[order_id] = orders.apply(current, order_event)  # raises if invalid
        resting = {o.order_id for o in step.after.bids + step.after.asks}
        live = {i for i, s in status.items() if s not in orders.FINAL_STATUSES}
        assert live == resting
        assert all(status[i] in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED) for i in live)


@PROPERTIES
@given(streams(), st.data())
def test_replay_rebuilds_the_same_book_and_the_same_fills(commands, data):
    book, events = replay(SPEC, commands)
    again, events_again = replay(SPEC, commands)
    assert events_again == events
    assert again.snapshot() == book.snapshot()
    assert again.depth(100) == book.depth(100)
    # restart from a snapshot taken anywhere in the stream: the same from there on
    cut = data.draw(st.integers(0, len(commands)))
    head, _ = replay(SPEC, commands[:cut])
    restored = OrderBook.restore(SPEC, head.snapshot())
    tail_events = [e for c in commands[cut:] for e in restored.handle(c)]
    _, all_events = replay(SPEC, commands)
    assert tail_events == all_events[len(all_events) - len(tail_events) :]
    assert restored.snapshot() == book.snapshot()
    # redelivering every command twice changes nothing
    twice = OrderBook(SPEC)
    doubled = [e for c in commands for e in twice.handle(c) + twice.handle(c)]
    assert doubled == events and twice.snapshot() == book.snapshot()


@PROPERTIES
@given(streams())
def test_depth_aggregates_the_snapshot(commands):
    book, _ = replay(SPEC, commands)
    snapshot, depth = book.snapshot(), book.depth(3)
    for orders_, levels in ((snapshot.bids, depth.bids), (snapshot.asks, depth.asks)):
        totals: dict[int, list[int]] = {}
        for o in orders_:
            totals.setdefault(o.price, [0, 0])
            totals[o.price][0] += o.remaining
            totals[o.price][1] += 1
        assert list(levels) == [Level(p, q, n) for p, (q, n) in list(totals.items())[:3]]


def test_a_long_stream_keeps_the_invariants():
    """The benchmark's stream (10,000 commands, deep book) through the same checks."""
    from bench.matching import MARKET as BENCH_MARKET
    from bench.matching import build_stream, cross_check

    commands = build_stream(count=10_000, users=50, seed=7)
    assert cross_check(commands) == []  # the sortedcontainers reference agrees
    book, events = replay(BENCH_MARKET, commands)
    status: dict[int, OrderStatus] = {}
    for event in events:
        for order_id, order_event in order_events(event):
            status[order_id] = orders.apply(status.get(order_id, OrderStatus.NEW), order_event)
    snapshot = book.snapshot()
    assert snapshot.bids[0].price < snapshot.asks[0].price
    live = {i for i, s in status.items() if s not in orders.FINAL_STATUSES}
    assert live == {o.order_id for o in snapshot.bids + snapshot.asks}
