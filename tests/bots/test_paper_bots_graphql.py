"""Paper bots over GraphQL (real PostgreSQL and Redis, every market's engine running):
``createBot(input: {..., paper: true})`` runs the bot on a paper account of its own;
``bot`` reads its figures, holdings, trades and open orders from that account's current
run (its orders never reach the live book, the owner's real balances never move);
a live trade through its buy fills it on paper and the bots job steps it; ``stopBot``
ends it and releases nothing; the paper limits refuse with field ``paper`` and write
nothing; a page of live and paper bots costs the same statements for two bots or ten."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

import pytest

from app.bots import worker
from app.paper import accounts as paper_accounts
from app.paper import live
from tests.support import pk as pk_of
from tests.support.bot_api import (
    CREATE,
    PAPER_BOT,
    PREVIEW,
    STOP,
    SYMBOL,
    grid_input,
    written,
)
from tests.support.money import balances
from tests.support.trading import (
    FAST_ENGINE,
    funded_user,
    rows,
    running_engines,
    scalar,
    trade_at,
    trader,
)

LAST = D(90000)  # the market's last trade before each test's bots start


@pytest.fixture
async def market(rt, monkeypatch) -> tuple[int, int]:
    """BTC/USDT last traded at 90000 with nothing resting: (maker, taker), who trade with
    each other."""
    monkeypatch.setattr(rt, "settings", rt.settings.model_copy(update=FAST_ENGINE))
    async with running_engines(rt):
        maker = await funded_user(rt, "maker", BTC="10")
        taker = await funded_user(rt, "taker", USDT="1000000")
        await trade_at(rt, maker, taker, str(LAST), "0.01")
        await worker.run_once(rt)  # the events so far concern no bot
        await live.run_once(rt)
        yield maker, taker


def paper_grid(name: str = "paper grid", **settings: str) -> dict:
    return {**grid_input(name, **settings), "paper": True}


async def create(gql, token: str, input_: dict) -> dict:
    return (await gql.data(CREATE, {"input": input_}, token=token))["createBot"]


async def shown(gql, token: str, bot_id: str) -> dict:
    return (await gql.data(PAPER_BOT, {"id": bot_id}, token=token))["bot"]


async def paper_rows(rt, bot_id: str, table: str, where: str = "TRUE") -> list:
    """The bot's paper account's ``table`` rows of its current run, oldest first."""
    return await rows(
        rt,
        f"SELECT t.* FROM {table} t JOIN paper_accounts a ON a.id = t.paper_account_id"
        f" AND a.generation = t.generation JOIN bots b ON b.paper_account_id = a.id"
        f" WHERE b.id = $1 AND {where} ORDER BY t.id",
        int(pk_of(bot_id)),
    )  # fmt: skip


async def open_paper_orders(rt, bot_id: str) -> list:
    return await paper_rows(
        rt, bot_id, "paper_orders", "t.status IN ('NEW', 'OPEN', 'PARTIALLY_FILLED')"
    )


def amounts(items: list[dict]) -> dict[str, D]:
    return {i["currency"]: D(i["amount"]) for i in items}


def assert_figures(bot: dict, last: D) -> None:
    """The docs' definitions: equity = the holdings at the last price, pnl = equity -
    budget = realisedPnl + unrealisedPnl; the holdings are the paper account's."""
    held = amounts(bot["holdings"])
    paper = {b["currency"]: D(b["total"]) for b in bot["paperAccount"]["balances"]}
    assert held == {c: t for c, t in paper.items() if t}
    assert D(bot["budget"]) == 1000
    assert D(bot["equity"]) == held.get("USDT", 0) + held.get("BTC", 0) * last
    assert D(bot["pnl"]) == D(bot["equity"]) - 1000
    assert D(bot["realisedPnl"]) + D(bot["unrealisedPnl"]) == D(bot["pnl"])


async def live_orders(rt) -> int:
    return await scalar(rt, "SELECT count(*) FROM orders")


async def test_a_paper_grid_bot_rests_its_orders_on_its_paper_account_only(gql, rt, market):
    uid, token = await trader(gql, rt, "paper@example.com", USDT="5000")
    wallet, on_the_book = await balances(rt, uid), await live_orders(rt)
    made = await create(gql, token, paper_grid())
    assert made["__typename"] == "CreateBotPayload", made
    preview = (await gql.data(PREVIEW, {"input": grid_input()}, token=token))["previewBot"]
    assert {**made["preflight"], "__typename": "BotPreflight"} == preview  # a live bot's
    bot = await shown(gql, token, made["bot"]["id"])
    assert bot["paper"] is True and bot["status"] == "RUNNING"
    assert bot["paperAccount"]["name"] == "paper grid"
    assert bot["paperAccount"]["status"] == "OPEN"
    # its open orders are its paper account's, and nothing reached the live book
    expected = await open_paper_orders(rt, made["bot"]["id"])
    assert {o["side"] for o in expected} == {"BUY", "SELL"}
    orders = bot["openOrders"]
    assert [o["clientOrderId"] for o in orders] == [o["client_order_id"] for o in expected][::-1]
    account_open = {
        e["node"]["clientOrderId"]
        for e in bot["paperAccount"]["orders"]["edges"]
        if e["node"]["status"] in ("NEW", "OPEN", "PARTIALLY_FILLED")
    }
    assert {o["clientOrderId"] for o in orders} == account_open
    for order, row in zip(orders, expected[::-1], strict=True):
        assert order["clientOrderId"].startswith(f"bot:{pk_of(made['bot']['id'])}:")
        assert (order["side"], order["type"], order["status"]) == (row["side"], "LIMIT", "OPEN")
        assert (D(order["price"]), D(order["quantity"])) == (row["price"], row["quantity"])
        assert order["market"] == {"symbol": SYMBOL} and order["order"] is None
        assert order["paperOrder"]["clientOrderId"] == order["clientOrderId"]
        assert order["id"] == order["paperOrder"]["id"]
    assert await live_orders(rt) == on_the_book
    assert await balances(rt, uid) == wallet
    # its trades are its paper fills: the opening buy, at the last price
    (trade,) = [e["node"] for e in bot["trades"]["edges"]]
    (fill,) = await paper_rows(rt, made["bot"]["id"], "paper_fills")
    assert (trade["side"], D(trade["price"])) == ("BUY", LAST)
    assert D(trade["quantity"]) == fill["quantity"]
    assert D(trade["fee"]) == fill["fee"] and trade["feeCurrency"] == "USDT"
    assert trade["fill"] is None and trade["paperFill"]["clientOrderId"] == fill["client_order_id"]
    assert trade["id"] == trade["paperFill"]["id"] and trade["market"] == {"symbol": SYMBOL}
    assert_figures(bot, LAST)
    assert D(bot["realisedPnl"]) == 0  # nothing sold yet: what it lost is its buy's fee
    assert D(bot["pnl"]) == -fill["fee"]


async def test_a_paper_bots_figures_follow_its_paper_fills(gql, rt, market):
    maker, taker = market
    uid, token = await trader(gql, rt, "figures@example.com", USDT="5000")
    wallet = await balances(rt, uid)
    bot_id = (await create(gql, token, paper_grid()))["bot"]["id"]
    buys = [o for o in await open_paper_orders(rt, bot_id) if o["side"] == "BUY"]
    top = max(buys, key=lambda o: o["price"])
    # the live market trades through its top buy: the paper account fills it, the bot
    # sells that level a line up
    await trade_at(rt, maker, taker, str(top["price"] - 100), "0.01")
    await worker.run_once(rt)
    assert await live.run_once(rt) >= 1
    assert await worker.run_once(rt) >= 1
    bot = await shown(gql, token, bot_id)
    trades = [e["node"] for e in bot["trades"]["edges"]]
    bought = [t for t in trades if t["paperFill"]["clientOrderId"] == top["client_order_id"]]
    assert [(t["side"], D(t["price"])) for t in bought] == [("BUY", top["price"])]
    assert bought[0]["liquidity"] == "MAKER"
    sell_at = top["price"] + 2000
    (sell,) = [o for o in bot["openOrders"] if o["side"] == "SELL" and D(o["price"]) == sell_at]
    assert top["client_order_id"] not in {o["clientOrderId"] for o in bot["openOrders"]}
    assert_figures(bot, top["price"] - 100)
    assert D(bot["realisedPnl"]) == 0
    # a live trade above its sell completes the round trip: realised is its profit
    await trade_at(rt, maker, taker, str(sell_at + 100), "0.01")
    await worker.run_once(rt)
    assert await live.run_once(rt) >= 1
    assert await worker.run_once(rt) >= 1
    bot = await shown(gql, token, bot_id)
    fills = {f["client_order_id"]: f for f in await paper_rows(rt, bot_id, "paper_fills")}
    buy, sold = fills[top["client_order_id"]], fills[sell["clientOrderId"]]
    profit = sold["quote_amount"] - sold["fee"] - buy["quote_amount"] - buy["fee"]
    assert profit > 0 and D(bot["realisedPnl"]) == profit
    assert_figures(bot, sell_at + 100)
    assert sell["clientOrderId"] not in {o["clientOrderId"] for o in bot["openOrders"]}
    assert await balances(rt, uid) == wallet


async def test_stopping_a_paper_bot_releases_nothing_and_its_account_stays(gql, rt, market):
    uid, token = await trader(gql, rt, "stop@example.com", USDT="5000")
    wallet = await balances(rt, uid)
    bot_id = (await create(gql, token, paper_grid()))["bot"]["id"]
    stopped = (await gql.data(STOP, {"id": bot_id, "close": True}, token=token))["stopBot"]
    assert stopped["__typename"] == "BotPayload", stopped
    assert stopped["bot"]["status"] == "STOPPED" and stopped["bot"]["stoppedAt"] is not None
    bot = await shown(gql, token, bot_id)
    assert bot["openOrders"] == [] and await open_paper_orders(rt, bot_id) == []
    # its position sold on paper, at the last price: the play money stays there
    held = amounts(bot["holdings"])
    assert list(held) == ["USDT"] and 0 < held["USDT"] < 1000
    assert bot["paperAccount"]["status"] == "OPEN"
    assert [t["side"] for t in (e["node"] for e in bot["trades"]["edges"])] == ["SELL", "BUY"]
    assert_figures(bot, LAST)
    assert D(bot["realisedPnl"]) == D(bot["pnl"]) < 0  # two fees, no price change
    assert await balances(rt, uid) == wallet
    released = "SELECT count(*) FROM journal_entries WHERE reference = $1"
    assert await scalar(rt, released, f"bot:{pk_of(bot_id)}") == 0


async def paper_accounts_written(rt) -> int:
    return await scalar(rt, "SELECT count(*) FROM paper_accounts")


async def test_a_paper_bot_beyond_the_open_paper_accounts_is_refused_on_paper(gql, rt, market):
    uid, token = await trader(gql, rt, "limit@example.com", USDT="5000")
    first = await create(gql, token, paper_grid("first"))
    assert first["__typename"] == "CreateBotPayload", first
    for n in range(9):  # ten open paper accounts: the most a user may have
        await paper_accounts.open_account(
            rt, user_id=uid, name=f"manual {n}", symbol=SYMBOL, balances={"USDT": D(100)}
        )
    before, wallet = await written(rt), await balances(rt, uid)
    accounts = await paper_accounts_written(rt)
    refused = await create(gql, token, paper_grid("second"))
    assert (refused["__typename"], refused["field"]) == ("ValidationFailed", "paper"), refused
    assert await written(rt) == before and await paper_accounts_written(rt) == accounts
    assert await balances(rt, uid) == wallet
    # a preview opens nothing: it does not count accounts (as it takes no funds)
    preview = await gql.data(PREVIEW, {"input": paper_grid("second")}, token=token)
    assert preview["previewBot"]["__typename"] == "BotPreflight"


TWO_MARKETS = {
    "name": "two", "paper": True,
    "allocation": [{"currency": "USDT", "amount": "1000"}],
    "rebalance": {"quote": "USDT", "trigger": "THRESHOLD", "threshold": "0.05",
                  "targets": [{"asset": "BTC", "weight": "0.25"},
                              {"asset": "ETH", "weight": "0.25"},
                              {"asset": "USDT", "weight": "0.5"}]},
}  # fmt: skip


@pytest.mark.parametrize(
    "input_",
    [paper_grid(investment="20000000"), paper_grid(investment="1000.123456789"), TWO_MARKETS],
    ids=["over-the-play-money-cap", "beyond-the-quote-scale", "two-markets"],
)
async def test_what_a_paper_account_cannot_hold_is_refused_on_paper(gql, rt, market, input_):
    _, token = await trader(gql, rt, "refused@example.com")
    before, accounts = await written(rt), await paper_accounts_written(rt)
    for document, name in ((CREATE, "createBot"), (PREVIEW, "previewBot")):
        answer = (await gql.data(document, {"input": input_}, token=token))[name]
        assert (answer["__typename"], answer["field"]) == ("ValidationFailed", "paper"), answer
    assert await written(rt) == before and await paper_accounts_written(rt) == accounts
    # the same bot, live: not refused on paper (a preview takes nothing)
    live_input = {**input_, "paper": False}
    answer = (await gql.data(PREVIEW, {"input": live_input}, token=token))["previewBot"]
    assert answer["__typename"] == "BotPreflight", answer


MIXED_PAGE = """{ bots(first: 10) { edges { node { id paper status equity pnl realisedPnl
  unrealisedPnl holdings { currency amount } paperAccount { id name }
  openOrders { clientOrderId side price status market { symbol } }
  trades(first: 3) { edges { node { price quantity market { symbol } } } }
  decisions(first: 3) { edges { node { action reason } } } } } } }"""


async def test_a_page_of_live_and_paper_bots_costs_the_same_statements_for_two_or_ten(
    gql, rt, market, sql_statements, statements
):
    _, token = await trader(gql, rt, "mixed@example.com", USDT="20000")

    async def make(n: int) -> None:
        for made in (await create(gql, token, grid_input(f"live {n}")),
                     await create(gql, token, paper_grid(f"paper {n}"))):  # fmt: skip
            assert made["__typename"] == "CreateBotPayload", made

    async def cost() -> tuple[int, list[dict]]:
        sql_statements.reset()
        statements.clear()
        data = await gql.data(MIXED_PAGE, token=token)
        await asyncio.sleep(0)  # asyncpg's query logger runs soon after each statement
        return sql_statements.count + len(statements), [e["node"] for e in data["bots"]["edges"]]

    await make(0)
    await gql.data(MIXED_PAGE, token=token)  # connections warmed (types introspected once)
    two, shown_ = await cost()
    assert [b["paper"] for b in shown_] == [True, False]
    for n in range(1, 5):
        await make(n)
    ten, shown_ = await cost()
    assert [b["paper"] for b in shown_] == [True, False] * 5
    for bot in shown_:
        assert (bot["paperAccount"] is not None) == bot["paper"]
        assert bot["openOrders"] and bot["decisions"]["edges"] and bot["equity"] is not None
    assert all(b["trades"]["edges"] for b in shown_ if b["paper"])
    # authenticate, bots, live holdings, paper balances, markets by symbol, live open
    # orders, paper open orders, markets by id, live trades, paper trades, decisions,
    # paper accounts
    assert ten == two == 12
