"""Paper trading without a database: the log round-trips every order type exactly, a
replay rebuilds the same venue, a recorded session through the backtester gives the same
fills (parity), the paper book's entries, and the ledger rule that keeps paper and real
money apart."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal as D

import pytest

from app.backtesting.domain.runner import result_json
from app.core.errors import InvariantViolation, ValidationFailed
from app.ledger.rules import AccountKind, AccountRef, check_balanced, move
from app.paper.domain.parity import backtest_log
from app.paper.domain.session import (
    LogEntry,
    apply_entry,
    cancel_entry,
    cancel_list_entry,
    check_starting_balances,
    ledger_legs,
    new_venue,
    replay,
    request_from_json,
    request_json,
    submit_entry,
    submit_list_entry,
    tick_entry,
)
from app.trading.domain.lists import Bracket
from app.trading.domain.orders import (
    OrderRequest,
    OrderType,
    Side,
    TimeInForce,
    TrailingOffsetType,
)
from app.venues.domain.venue import OrderEnded, OrderFilled
from tests.support.simulation import SPEC, T0

BALANCES = {"USDT": D("10000"), "BTC": D("1")}
REQUESTS = [
    OrderRequest(Side.BUY, OrderType.LIMIT, D("0.01"), price=D("99")),
    OrderRequest(Side.BUY, OrderType.MARKET, D("0.01"), max_slippage_bps=100),
    OrderRequest(Side.SELL, OrderType.STOP_MARKET, D("0.02"), stop_price=D("97")),
    OrderRequest(Side.SELL, OrderType.STOP_LIMIT, D("0.01"), price=D("96"), stop_price=D("97")),
    OrderRequest(Side.SELL, OrderType.TAKE_PROFIT_MARKET, D("0.01"), stop_price=D("103")),
    OrderRequest(
        Side.SELL, OrderType.TAKE_PROFIT_LIMIT, D("0.01"), price=D("103"), stop_price=D("103")
    ),
    OrderRequest(
        Side.SELL,
        OrderType.TRAILING_STOP,
        D("0.01"),
        trailing_offset=D("2"),
        trailing_offset_type=TrailingOffsetType.AMOUNT,
    ),
    OrderRequest(Side.SELL, OrderType.LIMIT, D("0.01"), price=D("102"), post_only=True),
    OrderRequest(
        Side.BUY,
        OrderType.LIMIT,
        D("0.01"),
        price=D("98"),
        time_in_force=TimeInForce.GTD,
        expires_at=T0 + timedelta(minutes=3),
    ),
    OrderRequest(
        Side.BUY, OrderType.LIMIT, D("0.01"), price=D("101"), time_in_force=TimeInForce.IOC
    ),
]


def session_log() -> list[LogEntry]:
    """Ticks up and down through every order's price, commands between them."""
    prices = ["100", "100.5", "99", "98.5", "97", "96", "98", "101", "103", "104", "101", "99"]
    entries = [tick_entry(trade_id=1, price=D("100"), quantity=D("0.5"), at=T0)]
    for i, request in enumerate(REQUESTS):
        entries.append(submit_entry(f"o-{i}", request))
    entries.append(cancel_entry("o-0"))
    for n, price in enumerate(prices[1:], start=2):
        at = T0 + timedelta(minutes=n)
        entries.append(tick_entry(trade_id=n, price=D(price), quantity=D("0.3"), at=at))
        if n == 6:
            entries.append(submit_entry("late", REQUESTS[0]))
    return entries


def test_requests_round_trip_through_json():
    for request in REQUESTS:
        assert request_from_json(request_json(request)) == request


def replayed(entries: list[LogEntry]):
    """The venue given ``entries`` one at a time, checked equal to their replay."""
    live = new_venue(SPEC, BALANCES, T0)
    for entry in entries:
        apply_entry(live, entry)
    rebuilt = replay(SPEC, BALANCES, T0, entries)
    assert rebuilt.events() == live.events()
    assert rebuilt.balances() == live.balances()
    assert rebuilt.open_orders() == live.open_orders()
    return live


def test_replay_rebuilds_the_same_venue():
    live = replayed(session_log())
    fills = [e for e in live.events() if isinstance(e, OrderFilled)]
    assert {f.client_order_id for f in fills} >= {"o-1", "o-2", "o-4", "o-6", "late"}


def test_a_recorded_session_through_the_backtester_gives_the_same_fills():
    entries = session_log()
    session = replay(SPEC, BALANCES, T0, entries)
    result = backtest_log(SPEC, BALANCES, entries)
    fills = tuple(e for e in session.events() if isinstance(e, OrderFilled))
    assert fills and result.fills == fills
    assert result_json(result) == result_json(backtest_log(SPEC, BALANCES, entries))


def list_session_log() -> list[LogEntry]:
    """An OCO whose take profit fills, a bracket whose entry fills and whose stop loss
    fires, an OCO canceled as a list, with single orders between them."""
    prices = ["100", "101", "103", "100", "98", "97", "94", "99"]
    oco = (
        OrderRequest(Side.SELL, OrderType.LIMIT, D("0.01"), price=D("103")),
        OrderRequest(Side.SELL, OrderType.STOP_LIMIT, D("0.01"), price=D("96"),
                     stop_price=D("97")),
    )  # fmt: skip
    bracket = Bracket(
        OrderRequest(Side.BUY, OrderType.LIMIT, D("0.02"), price=D("98")),
        take_profit_price=D("104"),
        stop_loss_price=D("95"),
        stop_loss_limit_price=D("94"),
    )
    entries = [tick_entry(trade_id=1, price=D("100"), quantity=D("0.5"), at=T0)]
    entries += [
        submit_list_entry("oco", oco=oco),
        submit_list_entry("br", bracket=bracket),
        submit_list_entry("gone", oco=(replace(oco[0], price=D("110")), oco[1])),
        submit_entry("single", REQUESTS[0]),
        cancel_list_entry("gone"),
    ]
    for n, price in enumerate(prices[1:], start=2):
        at = T0 + timedelta(minutes=n)
        entries.append(tick_entry(trade_id=n, price=D(price), quantity=D("0.3"), at=at))
        if n == 4:
            entries.append(submit_list_entry("late", oco=oco))
    return entries


def test_list_entries_round_trip_and_replay_to_the_same_venue():
    entries = list_session_log()
    assert [LogEntry(e.kind, json.loads(json.dumps(e.payload))) for e in entries] == entries
    live = replayed(entries)
    fills = {e.client_order_id for e in live.events() if isinstance(e, OrderFilled)}
    assert fills == {"oco:0", "single", "br:0", "late:1", "br:2"}
    ended = {e.client_order_id: e.reason for e in live.events() if isinstance(e, OrderEnded)}
    assert ended["oco:1"] == ended["br:1"] == ended["late:0"] == "OCO"
    assert ended["gone:0"] == ended["gone:1"] == "CANCELED"


def test_a_recorded_session_with_lists_through_the_backtester_gives_the_same_fills():
    entries = list_session_log()
    session = replay(SPEC, BALANCES, T0, entries)
    result = backtest_log(SPEC, BALANCES, entries)
    fills = tuple(e for e in session.events() if isinstance(e, OrderFilled))
    assert len(fills) == 5 and result.fills == fills
    assert [d.outcome for d in result.decisions] == ["OK"] * 6


def test_ledger_legs_bring_the_book_to_the_venue():
    venue = replay(SPEC, BALANCES, T0, session_log())
    legs = ledger_legs(7, {}, venue.balances())
    check_balanced(legs)
    per_account = {leg.account: leg.amount for leg in legs}
    for currency, balance in venue.balances().items():
        ref = AccountRef(currency, AccountKind.PAPER_AVAILABLE, paper_account_id=7)
        assert per_account.get(ref, D(0)) == balance.available
    after = {leg.account: leg.amount for leg in legs if leg.account.paper_account_id}
    assert ledger_legs(7, after, venue.balances()) == []


def test_an_entry_mixing_paper_and_real_accounts_is_refused():
    paper = AccountRef("USDT", AccountKind.PAPER_AVAILABLE, paper_account_id=1)
    real = AccountRef("USDT", AccountKind.AVAILABLE, user_id=1)
    for source, destination in ((paper, real), (real, paper)):
        with pytest.raises(InvariantViolation, match="mixes paper and real"):
            check_balanced(move(D(5), source, destination))
    equity = AccountRef("USDT", AccountKind.PAPER_EQUITY)
    check_balanced(move(D(5), equity, paper))  # within the paper book: fine
    with pytest.raises(InvariantViolation):
        AccountRef("USDT", AccountKind.PAPER_AVAILABLE, user_id=1)  # not a user's account
    with pytest.raises(InvariantViolation):
        AccountRef("USDT", AccountKind.AVAILABLE, user_id=1, paper_account_id=1)


@pytest.mark.parametrize(
    "balances",
    [{"ETH": D(1)}, {"USDT": D("10000001")}, {"USDT": D("-1")}, {"USDT": D("0.0000001")}, {}],
)
def test_starting_balances_outside_the_caps_are_refused(balances):
    with pytest.raises(ValidationFailed):
        check_starting_balances(SPEC, balances)
