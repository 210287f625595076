"""Paper trading on PostgreSQL against the live market (real orders through the platform,
the matching engines running): a paper order fills when the market trades through its
price, the paper book follows the venue in the same transaction, a rebuild from the log
equals the state before and trading resumes, the recorded session through the backtester
gives the same fills (OCO and bracket lists too), refusals write nothing, and paper and
real money never mix."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from app.core.errors import InsufficientFunds, InvariantViolation, NotFound
from app.ledger import journal
from app.ledger.rules import AccountKind, AccountRef, move
from app.paper import accounts, ledger, live, order_lists, orders, state
from app.paper.domain.parity import backtest_log
from app.trading.domain.errors import PostOnlyWouldTake, PriceOffTick
from app.trading.domain.lists import Bracket
from app.trading.domain.orders import OrderRequest, OrderType, Side
from app.trading.markets import market_by_symbol
from app.venues.domain.venue import OrderFilled
from tests.support.money import balances
from tests.support.trading import BTC, funded_user, rows, scalar, trade_at

pytestmark = pytest.mark.usefixtures("engines")


def buy_limit(price: str, quantity: str = "0.0100", **kw) -> OrderRequest:
    return OrderRequest(Side.BUY, OrderType.LIMIT, D(quantity), price=D(price), **kw)


async def live_market(rt):
    maker = await funded_user(rt, "maker", BTC="5")
    taker = await funded_user(rt, "taker", USDT="1000000")
    await trade_at(rt, maker, taker, "90000")
    return maker, taker


async def paper_book_problems(rt) -> list:
    """The paper book's invariants: per currency it sums to zero; each balance is the
    sum of its postings."""
    return [
        *await rows(rt, "SELECT currency FROM paper_ledger_accounts GROUP BY currency"
                        " HAVING sum(balance) <> 0"),
        *await rows(rt, "SELECT a.id FROM paper_ledger_accounts a LEFT JOIN (SELECT account_id,"
                        " sum(amount) AS s FROM paper_postings GROUP BY account_id) p"
                        " ON p.account_id = a.id WHERE a.balance <> coalesce(p.s, 0)"),
    ]  # fmt: skip


async def test_a_paper_order_fills_when_the_live_market_trades_through_it(rt):
    maker, taker = await live_market(rt)
    uid = await funded_user(rt, "paper")
    account = await accounts.open_account(
        rt, user_id=uid, name="Test", symbol=BTC, balances={"USDT": D("10000")}
    )
    order = await orders.place_order(
        rt, user_id=uid, paper_account_id=account.id, request=buy_limit("89000"),
        client_order_id="dip",
    )  # fmt: skip
    assert order.status == "OPEN"
    async with rt.sessions() as session:
        held = {b.currency: b for b in await accounts.balances_of(session, account)}
    assert held["USDT"].held > 0
    await trade_at(rt, maker, taker, "89500")  # above the limit: nothing
    await live.run_once(rt)
    await trade_at(rt, maker, taker, "88900")  # through it
    assert await live.run_once(rt) >= 1
    fills = await rows(rt, "SELECT price, quantity, liquidity, fee FROM paper_fills"
                           " WHERE paper_account_id = $1", account.id)  # fmt: skip
    assert [(f["price"], f["quantity"], f["liquidity"]) for f in fills] == [
        (D("89000.00"), D("0.0100"), "MAKER")
    ]
    async with rt.sessions() as session:
        now = {b.currency: b for b in await accounts.balances_of(session, account)}
    assert now["BTC"].available == D("0.01") and now["USDT"].held == 0
    assert now["USDT"].available == D("10000") - D("890") - fills[0]["fee"]
    assert not any(a or h for a, h in (await balances(rt, uid)).values())  # no real money
    assert await paper_book_problems(rt) == []
    async with rt.sessions() as session:
        assert await journal.check_invariants(session) == []


async def test_a_rebuild_from_the_log_equals_the_state_and_trading_resumes(rt):
    maker, taker = await live_market(rt)
    uid = await funded_user(rt, "paper")
    account = await accounts.open_account(
        rt, user_id=uid, name="Resume", symbol=BTC, balances={"USDT": D("5000"), "BTC": D("1")}
    )
    place = {"user_id": uid, "paper_account_id": account.id}
    await orders.place_order(rt, **place, request=buy_limit("89000"), client_order_id="a")
    await orders.place_order(
        rt, **place, client_order_id="stop",
        request=OrderRequest(Side.SELL, OrderType.STOP_MARKET, D("0.0200"), stop_price=D("88000")),
    )  # fmt: skip
    await orders.place_order(rt, **place, request=buy_limit("85000"), client_order_id="b")
    await orders.cancel_order(rt, **place, client_order_id="b")
    await trade_at(rt, maker, taker, "88950")
    await live.run_once(rt)

    async def rebuilt():
        async with rt.sessions() as session, session.begin():
            loaded = await state.load(session, paper_account_id=account.id, user_id=uid)
            book = await ledger.balances(session, account.id)
            mirrored = await rows(rt, "SELECT order_id, status, filled_quantity FROM"
                                      " paper_orders WHERE paper_account_id = $1"
                                      " ORDER BY order_id", account.id)  # fmt: skip
            return loaded.venue, book, mirrored

    venue, book, mirrored = await rebuilt()
    for currency, balance in venue.balances().items():
        ref = ledger.paper_ref(account.id, currency, AccountKind.PAPER_AVAILABLE)
        assert book.get(ref, D(0)) == balance.available
    statuses = {e.order_id: e for e in venue.open_orders()}
    assert {m["order_id"] for m in mirrored if m["status"] in state.LIVE} == set(statuses)
    assert [m["status"] for m in mirrored] == ["FILLED", "UNTRIGGERED", "CANCELED"]
    # resumes: the stop fires on the next trade through it, from the rebuilt venue
    await trade_at(rt, maker, taker, "87900")
    await live.run_once(rt)
    venue_after, _, mirrored = await rebuilt()
    assert [m["status"] for m in mirrored] == ["FILLED", "FILLED", "CANCELED"]
    assert venue_after.events()[: len(venue.events())] == venue.events()
    assert await paper_book_problems(rt) == []


async def test_the_recorded_session_replayed_by_the_backtester_gives_the_same_fills(rt):
    maker, taker = await live_market(rt)
    uid = await funded_user(rt, "paper")
    start = {"USDT": D("20000"), "BTC": D("0.5")}
    account = await accounts.open_account(rt, user_id=uid, name="P", symbol=BTC, balances=start)
    place = {"user_id": uid, "paper_account_id": account.id}
    await orders.place_order(rt, **place, request=buy_limit("89000"), client_order_id="l")
    await orders.place_order(
        rt, **place, client_order_id="m",
        request=OrderRequest(Side.BUY, OrderType.MARKET, D("0.0100")),
    )  # fmt: skip
    await orders.place_order(
        rt, **place, client_order_id="t",
        request=OrderRequest(Side.SELL, OrderType.TRAILING_STOP, D("0.0300"),
                             trailing_offset=D("300")),
    )  # fmt: skip
    # lists: an OCO whose limit fills, a bracket whose entry and take-profit fill, an OCO
    # canceled as a list
    await order_lists.place_order_list(rt, **place, client_list_id="o", oco=sell_oco("90500"))
    bracket = Bracket(buy_limit("89950"), take_profit_price=D("90550"), stop_loss_price=D("89000"))
    await order_lists.place_order_list(rt, **place, client_list_id="b", bracket=bracket)
    await order_lists.place_order_list(rt, **place, client_list_id="c", oco=sell_oco("95000"))
    await order_lists.cancel_order_list(rt, **place, client_list_id="c")
    for price in ("89900", "90200", "90600", "90100", "88900"):
        await trade_at(rt, maker, taker, price)
        await live.run_once(rt)
    async with rt.sessions() as session:
        stored = await accounts.get_account(session, user_id=uid, paper_account_id=account.id)
        log = await state.log_of(session, stored)
    assert {"SUBMIT_LIST", "CANCEL_LIST"} <= {entry.kind for entry in log}
    result = backtest_log(await _spec(rt), start, log)
    recorded = await rows(rt, "SELECT number, order_id, price, quantity, quote_amount, fee,"
                              " liquidity FROM paper_fills WHERE paper_account_id = $1"
                              " ORDER BY number", account.id)  # fmt: skip
    filled = await rows(rt, "SELECT DISTINCT client_order_id FROM paper_fills"
                            " WHERE paper_account_id = $1", account.id)  # fmt: skip
    # the market buy, the trailing stop, the limit; the OCO's limit, the bracket's entry
    # and take-profit
    assert sorted(r[0] for r in filled) == ["b:0", "b:1", "l", "m", "o:0", "t"]
    assert len(recorded) == 6
    assert [
        (f.number, f.order_id, f.price, f.quantity, f.value, f.fee, f.liquidity.value)
        for f in result.fills
    ] == [tuple(r) for r in recorded]
    assert all(isinstance(f, OrderFilled) for f in result.fills)


def sell_oco(limit: str) -> tuple[OrderRequest, OrderRequest]:
    return (
        OrderRequest(Side.SELL, OrderType.LIMIT, D("0.0100"), price=D(limit)),
        OrderRequest(Side.SELL, OrderType.STOP_MARKET, D("0.0100"), stop_price=D("85000")),
    )


async def _spec(rt):
    async with rt.sessions() as session:
        return (await market_by_symbol(session, BTC)).spec


async def test_refusals_write_nothing(rt):
    await live_market(rt)
    uid = await funded_user(rt, "paper")
    account = await accounts.open_account(
        rt, user_id=uid, name="R", symbol=BTC, balances={"USDT": D("100")}
    )
    place = {"user_id": uid, "paper_account_id": account.id}
    before = await scalar(rt, "SELECT count(*) FROM paper_log")
    entries = await scalar(rt, "SELECT count(*) FROM paper_journal_entries")
    for request, error in (
        (buy_limit("89000", "1"), InsufficientFunds),
        (buy_limit("89000.001"), PriceOffTick),
        (buy_limit("95000", "0.0010", post_only=True), PostOnlyWouldTake),
    ):
        with pytest.raises(error):
            await orders.place_order(rt, **place, request=request)
    other = await funded_user(rt, "other")
    with pytest.raises(NotFound):
        await orders.place_order(rt, user_id=other, paper_account_id=account.id,
                                 request=buy_limit("89000", "0.0010"))  # fmt: skip
    assert await scalar(rt, "SELECT count(*) FROM paper_log") == before
    assert await scalar(rt, "SELECT count(*) FROM paper_journal_entries") == entries


async def test_paper_and_real_accounts_never_exchange_money(rt):
    uid = await funded_user(rt, "both", USDT="100")
    account = await accounts.open_account(
        rt, user_id=uid, name="Iso", symbol=BTC, balances={"USDT": D("100")}
    )
    paper = ledger.paper_ref(account.id, "USDT", AccountKind.PAPER_AVAILABLE)
    real = journal.user_account(uid, "USDT")
    entries = await scalar(rt, "SELECT count(*) FROM journal_entries")
    for source, destination in ((paper, real), (real, paper)):
        async with rt.sessions() as session, session.begin():
            with pytest.raises(InvariantViolation, match="mixes paper and real"):
                await journal.post(session, kind="TRANSFER", legs=move(D(1), source, destination))
            with pytest.raises(InvariantViolation):
                await ledger.post(session, paper_account_id=account.id, kind="TRANSFER",
                                  legs=move(D(1), source, destination))  # fmt: skip
    equity = AccountRef("USDT", AccountKind.PAPER_EQUITY)
    async with rt.sessions() as session, session.begin():
        with pytest.raises(InvariantViolation):  # the real journal never takes paper legs
            await journal.post(session, kind="X", legs=move(D(1), equity, paper))
    assert await scalar(rt, "SELECT count(*) FROM journal_entries") == entries
    assert (await balances(rt, uid))["USDT"] == (D("100"), D(0))
    assert await paper_book_problems(rt) == []
    async with rt.sessions() as session:
        assert await journal.check_invariants(session) == []
