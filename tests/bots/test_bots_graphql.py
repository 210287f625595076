"""The bots over GraphQL (real PostgreSQL and Redis, every market's engine running):
``createBot`` and ``previewBot`` with their pre-flight and quick backtest, the typed
errors that write nothing, pause / resume / stop / rename, ``bots`` and ``bot(id)`` with
their figures, trades, open orders and decisions (statements constant in the number of
bots), hostile arguments, and ``botUpdates`` over a real WebSocket."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import timedelta
from decimal import Decimal as D

import pytest
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection, connect

from app.bots.domain.dca_settings import DcaSettings
from app.bots.domain.grid_settings import GridSettings
from app.bots.domain.preflight import dca_preflight, grid_preflight
from app.events import topics
from app.risk.domain.limits import LimitKind
from app.risk.domain.states import Scope
from app.risk.limits import Target
from app.trading import markets
from app.trading.domain.orders import MarketStatus
from app.venues.live import LiveVenue
from db.models import Bot, BotDecision
from tests.gateway.test_websocket import TRANSPORT_WS, serving
from tests.risk.support import make_admin, set_limit
from tests.support import gid
from tests.support import pk as pk_of
from tests.support.bot_api import (
    BOT,
    BOTS,
    CREATE,
    PAGE_OF_BOTS,
    PAUSE,
    PREVIEW,
    RENAME,
    RESUME,
    START,
    STOP,
    SYMBOL,
    btc_market,
    dca_input,
    grid_input,
    store_candles,
    written,
)
from tests.support.money import balances
from tests.support.trading import FAST_ENGINE, running_engines, trader

WS_TIMEOUT = 5.0
MINUTE = timedelta(minutes=1)
STORED_EARLIER = START - timedelta(days=10)
AFTER_TEN_HOURS = START + timedelta(hours=10)


@pytest.fixture
async def market(rt, monkeypatch):
    monkeypatch.setattr(rt, "settings", rt.settings.model_copy(update=FAST_ENGINE))
    async with running_engines(rt):
        await btc_market(rt)
        yield


DECISIONS = """query($id: ID!, $first: Int!, $after: String) { bot(id: $id) {
  decisions(first: $first, after: $after) { edges { cursor node { reason } } } } }"""


async def spec_of(rt):
    async with rt.sessions() as session:
        return (await markets.market_by_symbol(session, SYMBOL)).spec


async def last_price(rt):
    async with rt.sessions() as session:
        return (await markets.market_by_symbol(session, SYMBOL)).last_price


async def create(gql, token, input_):
    return (await gql.data(CREATE, {"input": input_}, token=token))["createBot"]


# --- createBot and previewBot ---------------------------------------------------------


async def test_create_a_grid_bot_answers_with_its_preflight_and_funds_it(gql, rt, market):
    uid, token = await trader(gql, rt, "grid@example.com", USDT="5000")
    made = await create(gql, token, grid_input())
    assert made["__typename"] == "CreateBotPayload", made
    bot = made["bot"]
    assert (bot["kind"], bot["name"], bot["status"]) == ("GRID", "grid", "RUNNING")
    assert bot["symbols"] == [SYMBOL] and bot["quoteCurrency"] == "USDT"
    assert bot["steps"] >= 1 and bot["stoppedAt"] is None
    assert bot["settings"] == {
        "lower": "86000", "upper": "94000", "levels": 5, "investment": "1000",
        "spacing": "ARITHMETIC", "atBounds": "WAIT", "maxSlippageBps": 100,
    }  # fmt: skip
    assert made["webhookUrl"] is None and made["webhookSecret"] is None
    assert bot["webhookUrl"] is None
    assert bot["allocation"] == [{"currency": "USDT", "amount": "1000"}]
    assert D(bot["budget"]) == 1000
    # the pre-flight at the last price, as the pure code computes it
    flight = made["preflight"]
    expected = grid_preflight(
        GridSettings(lower=D(86000), upper=D(94000), levels=5, investment=D(1000)),
        await spec_of(rt), D(90000),
    )  # fmt: skip
    assert D(flight["price"]) == 90000
    assert flight["funding"] == [{"currency": "USDT", "amount": "1000"}]
    assert [D(line) for line in flight["grid"]["lines"]] == list(expected.lines)
    assert D(flight["grid"]["quantityPerLevel"]) == expected.quantity
    assert [D(level["roundTripProfit"]) for level in flight["grid"]["levels"]] == list(
        expected.round_trips
    )
    assert flight["grid"]["problem"] == expected.problem
    assert flight["dca"] is None
    assert flight["backtest"] is None
    assert flight["backtestSkipped"] == "No candles of BTC/USDT are stored"
    # the budget left the owner's wallet; the sub-account holds it (and what it bought)
    assert (await balances(rt, uid))["USDT"] == (D(4000), D(0))
    equity = D(bot["equity"])
    assert D(bot["pnl"]) == equity - 1000
    assert D(bot["realisedPnl"]) + D(bot["unrealisedPnl"]) == D(bot["pnl"])
    held = {h["currency"]: D(h["amount"]) for h in bot["holdings"]}
    last = await last_price(rt)
    assert last == 90100  # its opening buy took the first ask
    assert equity == held["USDT"] + held["BTC"] * last


async def test_preview_shows_the_dca_ladder_and_writes_nothing(gql, rt, market):
    _, token = await trader(gql, rt, "dca@example.com")  # no money: a preview needs none
    before = await written(rt)
    shown = (await gql.data(PREVIEW, {"input": dca_input()}, token=token))["previewBot"]
    assert shown["__typename"] == "BotPreflight", shown
    settings = DcaSettings(
        base_order=D(500), safety_order=D(500), max_safety_orders=2,
        max_active_safety_orders=2, price_deviation=D("0.02"),
    )  # fmt: skip
    expected = dca_preflight(settings, await spec_of(rt), D(90000))
    rows = shown["dca"]["orders"]
    assert [r["order"] for r in rows] == [0, 1, 2]
    for row, want in zip(rows, expected.rows, strict=True):
        for name, value in (("price", want.price), ("quantity", want.quantity),
                            ("averageEntry", want.average_entry), ("breakeven", want.breakeven),
                            ("takeProfit", want.take_profit), ("cost", want.cost)):  # fmt: skip
            assert D(row[name]) == value, name
    assert D(shown["dca"]["worstCaseCapital"]) == expected.worst_case_capital
    assert D(shown["dca"]["allDealsCapital"]) == expected.all_deals_capital
    assert shown["grid"] is None
    assert await written(rt) == before


async def test_the_quick_backtest_runs_the_bot_on_the_latest_stored_candles(gql, rt, market):
    _, token = await trader(gql, rt, "bt@example.com", USDT="5000")
    swing = [90000, 88000, 86500, 88000, 91000, 93500, 91000, 88000] * 6  # 48 hours
    await store_candles(rt, swing, source="file:old", start=STORED_EARLIER)
    await store_candles(rt, swing)  # file:test, later: the most recent wins
    shown = (await gql.data(PREVIEW, {"input": grid_input()}, token=token))["previewBot"]
    backtest = shown["backtest"]
    assert shown["backtestSkipped"] is None
    assert (backtest["source"], backtest["symbol"], backtest["interval"]) == (
        "file:test", SYMBOL, "1h",
    )  # fmt: skip
    assert backtest["candles"] == 48 == backtest["metrics"]["bars"]
    assert backtest["start"] == "2026-01-01T00:00:00+00:00"
    assert backtest["end"] == "2026-01-03T00:00:00+00:00"
    assert backtest["orders"] > 0 and backtest["fills"] > 0  # the swing crosses its lines
    assert backtest["decisions"] >= backtest["orders"]
    # a DCA bot started by alerts has nothing to replay
    signal = dca_input(start="SIGNAL")
    shown = (await gql.data(PREVIEW, {"input": signal}, token=token))["previewBot"]
    assert shown["backtest"] is None and "alerts" in shown["backtestSkipped"]
    # bounded: a bot that keeps too many orders open, a rebalance over two markets
    many = dca_input(maxSafetyOrders=100, maxActiveDeals=3, priceDeviation="0.001")
    shown = (await gql.data(PREVIEW, {"input": many}, token=token))["previewBot"]
    assert shown["backtest"] is None
    assert shown["backtestSkipped"] == (
        "A quick backtest runs bots that keep at most 250 orders open: this one may keep 306"
    )
    targets = [{"asset": a, "weight": w} for a, w in (("BTC", "0.4"), ("ETH", "0.4"),
                                                      ("USDT", "0.2"))]  # fmt: skip
    both = {"name": "r", "allocation": [{"currency": "USDT", "amount": "100"}],
            "rebalance": {"quote": "USDT", "trigger": "THRESHOLD", "threshold": "0.05",
                          "targets": targets}}  # fmt: skip
    shown = (await gql.data(PREVIEW, {"input": both}, token=token))["previewBot"]
    assert shown["backtest"] is None
    assert shown["backtestSkipped"] == "A backtest trades one market: this bot trades 2"


async def test_the_quick_backtest_runs_under_the_limits_the_bot_would_meet(gql, rt, market):
    uid, token = await trader(gql, rt, "limited@example.com", USDT="5000")
    swing = [90000, 88000, 86500, 88000, 91000, 93500, 91000, 88000] * 6  # 48 hours
    await store_candles(rt, swing)
    free = (await gql.data(PREVIEW, {"input": grid_input()}, token=token))["previewBot"]
    assert free["backtest"]["riskLimits"] == 0 == free["backtest"]["riskRefusals"]
    admin = await make_admin(rt)
    await set_limit(rt, uid, LimitKind.TRADES_PER_DAY, 3)  # the owner's own USER limit
    await set_limit(rt, admin, LimitKind.ORDER_RATE, 1000, target=Target(Scope.PLATFORM))
    other = await make_admin(rt, "someone")
    await set_limit(rt, other, LimitKind.TRADES_PER_DAY, 1)  # another user's: not read
    bound = (await gql.data(PREVIEW, {"input": grid_input()}, token=token))["previewBot"]
    backtest = bound["backtest"]
    assert backtest["riskLimits"] == 2
    assert backtest["riskRefusals"] > 0
    assert backtest["orders"] < free["backtest"]["orders"]
    # a paper bot trades play money: the owner's limits do not bind it
    paper = await gql.data(PREVIEW, {"input": {**grid_input(), "paper": True}}, token=token)
    assert paper["previewBot"]["backtest"]["riskLimits"] == 0


async def test_the_quick_backtest_merges_minutes_into_hours_and_needs_enough(gql, rt, market):
    _, token = await trader(gql, rt, "bt@example.com")
    await store_candles(rt, [90000] * 600, interval="1m", step=MINUTE)  # 10 hours
    shown = (await gql.data(PREVIEW, {"input": grid_input()}, token=token))["previewBot"]
    assert shown["backtest"] is None
    assert shown["backtestSkipped"] == (
        "10 1h candles of BTC/USDT are stored in the last 720: a backtest needs 24"
    )
    await store_candles(rt, [90000] * 1000, interval="1m", step=MINUTE, start=AFTER_TEN_HOURS)
    shown = (await gql.data(PREVIEW, {"input": grid_input()}, token=token))["previewBot"]
    assert shown["backtest"]["interval"] == "1h"
    assert shown["backtest"]["candles"] == 27  # 1600 minutes, the last hour part-held


async def test_an_alert_driven_bot_gets_its_webhook_and_its_secret_once(gql, rt, market):
    _, token = await trader(gql, rt, "signal@example.com", USDT="5000")
    signal = {"name": "tv", "symbol": SYMBOL, "ipAllowlist": ["10.0.0.7/8", "2001:db8::1"],
              "signal": {"amount": "100", "budget": "500", "maxLagSeconds": 30}}  # fmt: skip
    made = await create(gql, token, signal)
    assert made["__typename"] == "CreateBotPayload", made
    url, secret = made["webhookUrl"], made["webhookSecret"]
    async with rt.sessions() as session:
        row = await session.get(Bot, int(pk_of(made["bot"]["id"])))
    assert url == f"{rt.settings.public_url}/hooks/bots/{row.webhook_token}"
    assert row.webhook_secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert row.ip_allowlist == ["10.0.0.0/8", "2001:db8::1/128"]
    shown = (await gql.data(BOT, {"id": made["bot"]["id"]}, token=token))["bot"]
    assert shown["webhookUrl"] == url and secret not in str(shown)
    assert shown["settings"]["maxLagSeconds"] == 30
    assert D(shown["budget"]) == 500 and shown["kind"] == "SIGNAL"
    assert made["preflight"]["backtest"] is None
    assert made["preflight"]["funding"] == [{"currency": "USDT", "amount": "500"}]
    bot_type = await gql.data('{ __type(name: "Bot") { fields { name } } }', token=token)
    assert not [f for f in bot_type["__type"]["fields"] if "secret" in f["name"].lower()]


async def test_a_rebalance_bot_is_given_its_allocation_and_valued_against_it(gql, rt, market):
    uid, token = await trader(gql, rt, "rebalance@example.com", USDT="5000", BTC="1")
    input_ = {"name": "half", "allocation": [{"currency": "BTC", "amount": "0.01"},
                                              {"currency": "usdt", "amount": "900"}],
              "rebalance": {"quote": "USDT", "trigger": "THRESHOLD", "threshold": "0.05",
                            "targets": [{"asset": "BTC", "weight": "0.5"},
                                        {"asset": "USDT", "weight": "0.5"}]}}  # fmt: skip
    made = await create(gql, token, input_)
    assert made["__typename"] == "CreateBotPayload", made
    bot = made["bot"]
    assert bot["kind"] == "REBALANCE" and bot["symbols"] == [SYMBOL]
    assert bot["allocation"] == [{"currency": "BTC", "amount": "0.01"},
                                 {"currency": "USDT", "amount": "900"}]  # fmt: skip
    last = await last_price(rt)
    assert D(bot["budget"]) == D("0.01") * last + 900
    assert bot["realisedPnl"] is None
    assert D(bot["unrealisedPnl"]) == D(bot["pnl"]) == D(bot["equity"]) - D(bot["budget"])
    assert made["preflight"]["funding"] == bot["allocation"]
    mine = await balances(rt, uid)
    assert mine["BTC"][0] == D("0.99") and mine["USDT"][0] == D(4100)


ERRORS = [
    ({"name": "x", "symbol": SYMBOL}, "ValidationFailed", "dca"),
    ({**grid_input(), "dca": dca_input()["dca"]}, "ValidationFailed", "grid"),
    (grid_input(levels=1), "ValidationFailed", "levels"),
    (grid_input(lower="89000", upper="89100", levels=50), "GridSpacingBelowFees", "levels"),
    (grid_input(investment="10000"), "InsufficientFunds", "investment"),
    ({**grid_input(), "symbol": "DOGE/EUR"}, "UnknownMarket", "symbol"),
    ({**grid_input(), "symbol": None}, "ValidationFailed", "symbol"),
    ({**grid_input(), "name": "   "}, "ValidationFailed", "name"),
    ({**grid_input(), "ipAllowlist": ["10.0.0.1"]}, "ValidationFailed", "ipAllowlist"),
    (
        {**grid_input(), "allocation": [{"currency": "USDT", "amount": "1"}]},
        "ValidationFailed",
        "allocation",
    ),
    (dca_input(priceDeviation=None), "ValidationFailed", "priceDeviation"),
    (dca_input(cooldownSeconds=-1), "ValidationFailed", "cooldown"),
    (
        {
            "name": "s",
            "symbol": SYMBOL,
            "ipAllowlist": ["not an address"],
            "signal": {"amount": "1", "budget": "10"},
        },
        "ValidationFailed",
        "ipAllowlist",
    ),
    (
        {
            "name": "r",
            "symbol": SYMBOL,
            "rebalance": {
                "quote": "USDT",
                "trigger": "PERIOD",
                "periodSeconds": 3600,
                "targets": [{"asset": "BTC", "weight": "1"}],
            },
        },
        "ValidationFailed",
        "symbol",
    ),
    (
        {
            "name": "r",
            "rebalance": {
                "quote": "USDT",
                "trigger": "PERIOD",
                "periodSeconds": 3600,
                "targets": [{"asset": "NOPE", "weight": "1"}],
            },
        },
        "UnknownMarket",
        "symbol",
    ),
]


@pytest.mark.parametrize(("input_", "typename", "field"), ERRORS)
async def test_refused_bots_are_typed_errors_and_write_nothing(
    gql, rt, market, input_, typename, field
):
    uid, token = await trader(gql, rt, "refused@example.com", USDT="5000")
    before, wallet = await written(rt), await balances(rt, uid)
    for document, name in ((CREATE, "createBot"), (PREVIEW, "previewBot")):
        answer = (await gql.data(document, {"input": input_}, token=token))[name]
        if name == "previewBot" and typename == "InsufficientFunds":
            assert answer["__typename"] == "BotPreflight"  # a preview takes nothing
            continue
        assert (answer["__typename"], answer["field"]) == (typename, field), answer
    assert await written(rt) == before and await balances(rt, uid) == wallet


async def test_a_halted_market_and_an_anonymous_caller_are_refused(gql, rt, market):
    _, token = await trader(gql, rt, "halted@example.com", USDT="5000")
    answer = (await gql.data(CREATE, {"input": grid_input()}))["createBot"]
    assert answer["__typename"] == "NotAuthenticated"
    async with rt.sessions() as session, session.begin():
        await markets.set_market_status(session, SYMBOL, MarketStatus.HALTED)
    answer = (await gql.data(CREATE, {"input": grid_input()}, token=token))["createBot"]
    assert (answer["__typename"], answer["field"]) == ("MarketHalted", "symbol")
    assert (await written(rt))[0] == 0


# --- pause, resume, stop, rename --------------------------------------------------------


async def act(gql, document, token, **variables):
    body = await gql.data(document, variables, token=token)
    return next(iter(body.values()))


async def test_pause_resume_rename_and_stop(gql, rt, market):
    uid, token = await trader(gql, rt, "actions@example.com", USDT="5000")
    bot_id = (await create(gql, token, grid_input()))["bot"]["id"]
    paused = await act(gql, PAUSE, token, id=bot_id)
    assert paused["bot"]["status"] == "PAUSED"
    resumed = await act(gql, RESUME, token, id=bot_id)
    assert resumed["bot"]["status"] == "RUNNING"
    renamed = await act(gql, RENAME, token, id=bot_id, name="  renamed ")
    assert renamed["bot"]["name"] == "renamed"
    refused = await act(gql, RENAME, token, id=bot_id, name="")
    assert (refused["__typename"], refused["field"]) == ("ValidationFailed", "name")
    stopped = await act(gql, STOP, token, id=bot_id, close=True)
    bot = stopped["bot"]
    assert bot["status"] == "STOPPED" and bot["stoppedAt"] is not None
    # a stopped bot shows what it gave back (no bids: its closing sale found no buyer)
    gave = {h["currency"]: D(h["amount"]) for h in bot["holdings"]}
    assert gave["USDT"] > 0 and gave["BTC"] > 0
    mine = await balances(rt, uid)
    assert (mine["USDT"][0], mine["BTC"][0]) == (4000 + gave["USDT"], gave["BTC"])
    for document in (PAUSE, RESUME, STOP):
        again = await act(gql, document, token, id=bot_id)
        assert (again["__typename"], again["field"]) == ("BotStopped", "id")


async def test_another_users_bot_and_bad_ids_change_nothing(gql, rt, market):
    _, owner = await trader(gql, rt, "owner@example.com", USDT="5000")
    _, other = await trader(gql, rt, "other@example.com", USDT="5000")
    bot_id = (await create(gql, owner, grid_input()))["bot"]["id"]
    before = await written(rt)
    for document in (PAUSE, RESUME, STOP):
        answer = await act(gql, document, other, id=bot_id)
        assert (answer["__typename"], answer["field"]) == ("BotNotFound", "id")
        for bad in BAD_IDS:
            answer = await act(gql, document, owner, id=bad)
            assert (answer["__typename"], answer["field"]) == ("ValidationFailed", "id"), bad
    answer = await act(gql, RENAME, other, id=bot_id, name="mine now")
    assert answer["__typename"] == "BotNotFound"
    assert await written(rt) == before
    assert (await gql.data(BOT, {"id": bot_id}, token=other))["bot"] is None
    node = f'{{ node(id: "{bot_id}") {{ __typename ... on Bot {{ name }} }} }}'
    assert (await gql.data(node, token=other))["node"] is None
    assert (await gql.data(node, token=owner))["node"] == {"__typename": "Bot", "name": "grid"}
    for bad in BAD_IDS:
        assert (await gql.data(BOT, {"id": bad}, token=owner))["bot"] is None


BAD_IDS = [
    "not base64!", gid("Bot", 0), gid("Bot", -1), gid("Bot", 2**63), gid("Bot", "１"),
    gid("Order", 1), gid("Bot", "1 OR 1=1"),
]  # fmt: skip


# --- reads --------------------------------------------------------------------------------


async def test_a_bot_shows_its_trades_open_orders_and_decisions(gql, rt, market):
    _, token = await trader(gql, rt, "reads@example.com", USDT="5000")
    bot_id = (await create(gql, token, grid_input()))["bot"]["id"]
    bot = (await gql.data(BOT, {"id": bot_id}, token=token))["bot"]
    async with rt.sessions() as session:
        row = await session.get(Bot, pk_of(bot_id))
        decisions = (await session.scalars(
            select(BotDecision).where(BotDecision.bot_id == row.id).order_by(BotDecision.id.desc())
        )).all()  # fmt: skip
    live = await LiveVenue(rt, user_id=row.account_id).open_orders()
    assert sorted(o["clientOrderId"] for o in bot["openOrders"]) == sorted(
        o.client_order_id for o in live
    )
    assert all(o["status"] in ("OPEN", "NEW", "PARTIALLY_FILLED") for o in bot["openOrders"])
    (fill,) = [e["node"] for e in bot["trades"]["edges"]]  # the opening buy
    assert (fill["side"], D(fill["price"])) == ("BUY", 90100)
    shown = [e["node"] for e in bot["decisions"]["edges"]]
    assert [(d["action"], d["reason"]) for d in shown] == [(d.action, d.reason) for d in decisions]
    # newest first, paged by cursor
    first = await gql.data(DECISIONS, {"id": bot_id, "first": 2}, token=token)
    page = first["bot"]["decisions"]
    after = page["edges"][-1]["cursor"]
    rest = await gql.data(DECISIONS, {"id": bot_id, "first": 100, "after": after}, token=token)
    both = page["edges"] + rest["bot"]["decisions"]["edges"]
    assert [e["node"]["reason"] for e in both] == [d.reason for d in decisions]


async def test_bots_are_listed_newest_first_by_cursor(gql, rt, market):
    _, token = await trader(gql, rt, "list@example.com", USDT="5000")
    _, other = await trader(gql, rt, "someone@example.com", USDT="5000")
    await create(gql, other, grid_input("theirs"))
    for name in ("a", "b", "c"):
        await create(gql, token, grid_input(name))
    first = (await gql.data(BOTS, {"first": 2}, token=token))["bots"]
    assert [e["node"]["name"] for e in first["edges"]] == ["c", "b"]
    assert first["pageInfo"]["hasNextPage"] is True
    after = first["pageInfo"]["endCursor"]
    rest = (await gql.data(BOTS, {"first": 2, "after": after}, token=token))["bots"]
    assert [e["node"]["name"] for e in rest["edges"]] == ["a"]
    assert rest["pageInfo"]["hasNextPage"] is False
    body = await gql(BOTS, {"first": 2, "after": "\\u0000bad"}, token=token)
    assert body["errors"][0]["extensions"]["code"] == "VALIDATION_FAILED"


async def test_a_page_of_bots_costs_the_same_statements_for_one_or_ten(
    gql, rt, market, sql_statements, statements
):
    _, token = await trader(gql, rt, "many@example.com", USDT="20000")
    await create(gql, token, grid_input("bot 0"))
    await gql.data(PAGE_OF_BOTS, token=token)  # connections warmed (types introspected once)

    async def cost() -> tuple[int, dict]:
        sql_statements.reset()
        statements.clear()
        data = await gql.data(PAGE_OF_BOTS, token=token)
        await asyncio.sleep(0)  # asyncpg's query logger runs soon after each statement
        return sql_statements.count + len(statements), data

    one, data = await cost()
    assert len(data["bots"]["edges"]) == 1
    for n in range(1, 10):
        await create(gql, token, grid_input(f"bot {n}"))
    ten, data = await cost()
    shown = [e["node"] for e in data["bots"]["edges"]]
    assert len(shown) == 10 and all(b["openOrders"] and b["decisions"]["edges"] for b in shown)
    # authenticate, bots, holdings, markets by symbol, open orders, markets by id, trades,
    # decisions
    assert ten == one == 8


# --- hostile arguments ----------------------------------------------------------------------

HOSTILE = [
    {**grid_input(), "name": "nul\x00byte"},
    {**grid_input(), "symbol": "lone \udfff surrogate"},
    {**grid_input(), "name": "x" * 5000},
    {**grid_input(), "symbol": "X" * 5000},
    grid_input(levels=2**31),
    grid_input(levels=2**31 - 1),
    grid_input(investment="9" * 30),
    grid_input(investment="9" * 31),
    grid_input(investment="1E+30"),
    grid_input(lower="0.000000000000000001"),
    grid_input(
        lower="0.01",
        upper="999999999999999",
        levels=200,
        spacing="GEOMETRIC",
        investment="999999999999999",
    ),
    dca_input(maxSafetyOrders=2**31 - 1),
    dca_input(maxSafetyOrders=100, stepScale="10", volumeScale="10"),
    dca_input(maxSafetyOrders=100, priceDeviation="0.000000000000000001", maxActiveDeals=100),
    dca_input(cooldownSeconds=-(2**31)),
    dca_input(takeProfit=[{"profit": "10", "share": "0.5"}, {"profit": "1", "share": "0.5"}]),
    {
        "name": "s",
        "symbol": SYMBOL,
        "signal": {"amount": "1", "budget": "1", "maxLagSeconds": 2**31 - 1},
    },
    {
        "name": "r",
        "allocation": [{"currency": "\u0130" * 30, "amount": "1"}],
        "rebalance": {
            "quote": "USDT",
            "trigger": "PERIOD",
            "periodSeconds": 60,
            "targets": [{"asset": "BTC", "weight": "1"}],
        },
    },
]


async def escaped(gql, document: str, variables: dict, token: str) -> dict:
    """A request whose JSON escapes what UTF-8 cannot carry (a lone surrogate: ``\\udfff``)."""
    response = await gql.http.post(
        "/graphql", content=json.dumps({"query": document, "variables": variables}),
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
    )  # fmt: skip
    assert response.status_code in (200, 400), response.text
    return response.json()


def never_internal(body: dict) -> None:
    codes = [e.get("extensions", {}).get("code") for e in body.get("errors", [])]
    assert "INTERNAL_SERVER_ERROR" not in codes and None not in codes, body


@pytest.mark.parametrize("input_", HOSTILE, ids=range(len(HOSTILE)))
async def test_hostile_bot_inputs_are_typed_errors_and_write_nothing(gql, rt, market, input_):
    _, token = await trader(gql, rt, "fuzz@example.com", USDT="5000")
    before = await written(rt)
    for document in (CREATE, PREVIEW):
        body = await escaped(gql, document, {"input": input_}, token)
        never_internal(body)
        answer = next(iter((body.get("data") or {}).values()), None)
        assert answer is None or answer["__typename"] in (
            "ValidationFailed", "UnknownMarket", "InsufficientFunds", "GridSpacingBelowFees",
            "BotPreflight",
        ), answer  # fmt: skip
    assert await written(rt) == before


async def test_hostile_ids_and_bodies_are_refused(gql, client, rt, market):
    _, token = await trader(gql, rt, "fuzzid@example.com", USDT="5000")
    await create(gql, token, grid_input())
    before = await written(rt)
    for bad in ("nul\x00byte", "\udfff", "x" * 5000, *BAD_IDS):
        for document in (PAUSE, RESUME, STOP, BOT):
            never_internal(await escaped(gql, document, {"id": bad}, token))
        never_internal(await escaped(gql, RENAME, {"id": bad, "name": "n\x00"}, token))
    raw = b'{"query": "{ bots(first: 1) { edges { cursor } } }", "variables": {"a": "\xff"}}'
    response = await client.post(
        "/graphql", content=raw,
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
    )  # fmt: skip
    assert response.status_code == 400
    for first in (-1, 101, 2**31):
        never_internal(await gql(BOTS, {"first": first}, token=token))
    assert await written(rt) == before


# --- botUpdates over a real WebSocket ------------------------------------------------------

UPDATES = """subscription($id: ID) { botUpdates(botId: $id) { __typename
  ... on BotUpdate { botId status steps decisions decisionsAfter at
                     bot { id name status } }
  ... on Error { code field } } }"""


# A server (its outbox relay running); the test's own engines match the orders.
live = pytest.fixture(serving, name="live")


async def subscribe(live, token: str | None, variables: dict) -> ClientConnection:
    ws = await connect(live.ws_url, subprotocols=[TRANSPORT_WS], open_timeout=WS_TIMEOUT)
    init = {"authToken": token} if token else {}
    await ws.send(json.dumps({"type": "connection_init", "payload": init}))
    ack = json.loads(await asyncio.wait_for(ws.recv(), WS_TIMEOUT))
    assert ack["type"] == "connection_ack", ack
    payload = {"query": UPDATES, "variables": variables}
    await ws.send(json.dumps({"id": "b", "type": "subscribe", "payload": payload}))
    return ws


async def receive(ws: ClientConnection) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), WS_TIMEOUT))


async def until_subscribed(rt, owner: int) -> None:
    """Until the server listens on the owner's bots channel (an event before is lost)."""
    name = topics.channel(rt.settings.redis_prefix, topics.BOTS.named(), owner)
    for _ in range(200):
        if dict(await rt.redis.pubsub_numsub(name)).get(name.encode()):
            return
        await asyncio.sleep(0.025)
    raise AssertionError("the server never subscribed to the bots channel")


async def test_bot_updates_arrive_over_a_websocket_for_their_owner_only(live, live_gql, rt, market):
    owner, token = await trader(live_gql, rt, "ws@example.com", USDT="5000")
    _, other = await trader(live_gql, rt, "wsother@example.com", USDT="5000")
    theirs_id = (await create(live_gql, other, grid_input("theirs")))["bot"]["id"]

    anonymous = await subscribe(live, None, {})
    refused = await receive(anonymous)
    assert refused["payload"]["data"] is None, refused
    assert refused["payload"]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    await anonymous.close()

    not_mine = await subscribe(live, token, {"id": theirs_id})
    answer = await receive(not_mine)
    assert answer["payload"]["data"]["botUpdates"] == {
        "__typename": "BotNotFound",
        "code": "BOT_NOT_FOUND",
        "field": "id",
    }
    assert (await receive(not_mine))["type"] == "complete"
    await not_mine.close()

    ws = await subscribe(live, token, {})
    try:
        await until_subscribed(rt, owner)
        made = await create(live_gql, token, grid_input("live one"))
        bot_id = made["bot"]["id"]
        updates = [await receive(ws) for _ in range(2)]  # its creation, its first step
    finally:
        await ws.close()
    shown = [u["payload"]["data"]["botUpdates"] for u in updates]
    assert [u["botId"] for u in shown] == [bot_id, bot_id]
    assert shown[0]["bot"]["name"] == "live one"
    step = shown[1]
    assert step["steps"] == 1 and step["status"] == "RUNNING" and step["decisions"] > 0
    page = """query($id: ID!, $first: Int!, $after: String) { bot(id: $id) {
      decisions(first: $first, after: $after) { edges { node { reason } } } } }"""
    variables = {"id": bot_id, "first": step["decisions"], "after": step["decisionsAfter"]}
    decided = await live_gql.data(page, variables, token=token)
    assert len(decided["bot"]["decisions"]["edges"]) == step["decisions"]
