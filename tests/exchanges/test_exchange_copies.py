"""Copy trading onto a follower's connected exchange account, with the real ccxt talking
to the stand-ins: a leader's fill on the platform is copied once as an order at the
follower's exchange (however often the copy worker runs or the fill is read again),
sized by the follow and rounded to the exchange's lot and tick; a copy below the
exchange's minimum, or for an account disconnected or suspended, is skipped with the
reason and never sent; bad follow input is a typed error that changes nothing.

The copies' fills at the exchange make the follow's position (once per fill, however
often they are read); its stop-loss and an unfollow with closePositions sell it at the
exchange, once; an exchange follow is not charged a profit share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from app.exchanges import following
from app.risk.domain.states import RiskState, Scope, ScopeRef
from app.social import copy_exchange, copy_trading, profit_share
from app.social.copy_placement import CONSUMER
from app.social.follow_positions import POSITIONS_CONSUMER
from app.trading.domain.orders import Side
from db.models import Copy, ExchangeConnection, ExchangeOrder, Follow
from db.raw import driver
from tests.exchanges.test_accounts_api import DISCONNECT, _connect
from tests.risk.support import force_state
from tests.social.test_copy_trading import (
    FOLLOW_STATUS,
    copy_all,
    follow_position,
    leader,
    order,
    skipped_events,
)
from tests.support import GraphQLClient, gid, pk
from tests.support.exchanges import StandIn, fill
from tests.support.exchanges.keys import new_account
from tests.support.money import fund
from tests.support.partner import client_with
from tests.support.trading import (
    funded_user,
    limit,
    place,
    rows,
    scalar,
    trade_at,
    trader,
    wallet,
)

BUY, SELL = Side.BUY, Side.SELL

ORDER_EXCHANGES = ("binance", "kraken", "okx", "bybit", "coinbase")
FOLLOW = """
mutation($leader: ID!, $allocation: Decimal!, $mode: FollowMode!, $fixed: Decimal,
         $ratio: Decimal, $account: ID) {
  followLeader(leaderId: $leader, allocation: $allocation, mode: $mode, fixedAmount: $fixed,
               ratio: $ratio, exchangeAccountId: $account) {
    __typename ... on FollowPayload { follow { id exchangeAccountId } }
    ... on Error { code message field }
  }
}
"""
FOLLOW_WITH_STOP = """
mutation($leader: ID!, $allocation: Decimal!, $mode: FollowMode!, $ratio: Decimal,
         $account: ID, $stopLoss: Decimal, $close: Boolean! = false) {
  followLeader(leaderId: $leader, allocation: $allocation, mode: $mode, ratio: $ratio,
               exchangeAccountId: $account, stopLossPercent: $stopLoss,
               closePositionsOnStopLoss: $close) {
    __typename ... on FollowPayload { follow { id exchangeAccountId } }
    ... on Error { code message field }
  }
}
"""
UNFOLLOW = """
mutation($id: ID!) { unfollowLeader(id: $id, closePositions: true) {
  __typename ... on UnfollowPayload { follow { status } closingOrders { clientOrderId } }
  ... on Error { code } } }
"""
UPDATE = """
mutation($id: ID!, $account: ID) { updateFollow(id: $id, exchangeAccountId: $account) {
  __typename ... on FollowPayload { follow { id exchangeAccountId } }
  ... on Error { code message field } } }
"""
COPIES = """
query($follow: ID!) { copies(followId: $follow, first: 20) { edges { node {
  status reason side quantity price clientOrderId exchangeAccountId exchangeOrderId
  order { id } } } } }
"""
EXCHANGE_ORDER = """
query($id: ID!) { node(id: $id) { ... on ExchangeOrder {
  accountId clientOrderId symbol side type quantity price status } } }
"""


@pytest.fixture
async def api(rt, exchanges) -> AsyncIterator[GraphQLClient]:
    """GraphQL over HTTP (leaders need no closed trades), the runtime talking to the
    stand-ins (``exchanges`` first: the app shares its connector)."""
    async with client_with(rt, leader_min_closed_trades=0) as http:
        yield GraphQLClient(http)


async def _exchange_follower(
    api, rt, exchanges, name: str, leader_id: int, document: str = FOLLOW, **params
):
    """A follower with a connected account at ``name`` following ``leader_id`` there:
    (token, account global id, stand-in account, follow id)."""
    _, token = await trader(api, rt, f"f-{name}@example.com")
    account = exchanges[name].add(new_account(name))
    connected = await _connect(api, token, name, account)
    assert connected["__typename"] == "ConnectExchangeAccountPayload", connected
    account_id = connected["exchangeAccount"]["id"]
    variables = {"leader": gid("Leader", leader_id), "allocation": "500", "mode": "FIXED_RATIO",
                 "account": account_id, **params}  # fmt: skip
    body = (await api.data(document, variables, token=token))["followLeader"]
    assert body["__typename"] == "FollowPayload", body
    assert body["follow"]["exchangeAccountId"] == account_id
    return token, account_id, account, pk(body["follow"]["id"])


async def _leader_buys(api, rt, token: str, quantity: str = "1") -> None:
    """The leader buys ``quantity`` BTC at 100 on the platform; the copy worker runs."""
    bought = await order(api, token, "BUY", quantity, "100", timeInForce="IOC")
    assert bought["status"] == "FILLED"
    await copy_all(rt)


async def _leader(api, rt) -> tuple[int, str]:
    """A leader, and a maker selling 5 BTC at 100 on the platform: (id, token)."""
    maker = await funded_user(rt, "maker", BTC="10", USDT="10000")
    await place(rt, maker, limit(SELL, "5", "100"))
    return await leader(api, rt, "lea@example.com", USDT="1000.2")


async def _execute(rt, sql: str, *args) -> None:
    """``sql`` committed."""
    async with rt.sessions() as session, session.begin():
        await (await driver(session)).execute(sql, *args)


async def _copies(api, token, follow_id) -> list[dict]:
    body = await api.data(COPIES, {"follow": gid("Follow", follow_id)}, token=token)
    return [edge["node"] for edge in body["copies"]["edges"]]


@pytest.mark.parametrize("name", ORDER_EXCHANGES)
async def test_a_leader_fill_is_copied_once_to_the_exchange_rounded_to_its_lot(
    api, rt, engines, exchanges, name
):
    leader_id, leader_token = await _leader(api, rt)
    # 0.123456789 x the leader's 1 BTC: the stand-ins' lot is 0.00001, their tick 0.01
    token, account_id, account, follow_id = await _exchange_follower(
        api, rt, exchanges, name, leader_id, ratio="0.123456789"
    )
    await _leader_buys(api, rt, leader_token)

    [copy] = await _copies(api, token, follow_id)
    assert (copy["status"], copy["reason"], copy["side"]) == ("PLACED", None, "BUY")
    assert (copy["quantity"], copy["price"]) == ("0.12345", "101")  # 100 + 1 % slippage
    assert copy["exchangeAccountId"] == account_id and copy["order"] is None
    assert len(copy["clientOrderId"]) == 18 and copy["clientOrderId"].isalnum()
    [sent] = exchanges[name].orders
    assert sent.client_order_id == copy["clientOrderId"] and sent.api_key == account.api_key
    assert (sent.symbol, sent.side, sent.type) == ("BTC/USDT", "buy", "limit")
    assert (sent.quantity, sent.price) == (Decimal("0.12345"), Decimal("101"))
    node = (await api.data(EXCHANGE_ORDER, {"id": copy["exchangeOrderId"]}, token=token))["node"]
    assert node == {"accountId": account_id, "clientOrderId": copy["clientOrderId"],
                    "symbol": "BTC/USDT", "side": "BUY", "type": "LIMIT",
                    "quantity": "0.12345", "price": "101", "status": "OPEN"}  # fmt: skip

    # the fill read again (the checkpoint lost), the worker run twice, and a sender that
    # stopped before marking its copy: nothing is sent again
    await _execute(rt, "DELETE FROM event_consumers WHERE name = $1", CONSUMER)
    await copy_all(rt)
    await copy_trading.run_once(rt)
    async with rt.sessions() as session, session.begin():
        await session.execute(
            update(Copy).values(
                status="PENDING",
                exchange_order_id=None,
                quantity=Decimal("1"),
                updated_at=Copy.created_at,
            )
        )
    assert await copy_exchange.send_pending(rt) == 1
    assert len(exchanges[name].orders) == 1
    [again] = await _copies(api, token, follow_id)
    assert again == copy
    async with rt.sessions() as session:
        assert len((await session.scalars(select(ExchangeOrder))).all()) == 1


async def test_a_copy_below_the_exchange_minimum_is_skipped_with_the_reason(
    api, rt, engines, exchanges
):
    leader_id, leader_token = await _leader(api, rt)
    # 0.0004 BTC at 101: 0.04 USDT, under the stand-ins' 5 USDT minimum notional
    token, _, _, follow_id = await _exchange_follower(
        api, rt, exchanges, "binance", leader_id, ratio="0.0004"
    )
    await _leader_buys(api, rt, leader_token)
    [copy] = await _copies(api, token, follow_id)
    assert (copy["status"], copy["reason"], copy["exchangeOrderId"]) == (
        "SKIPPED", "BELOW_MINIMUM", None)  # fmt: skip
    assert exchanges["binance"].orders == []
    assert not [r for r in exchanges["binance"].requests if r.path == "/api/v3/order"]
    [event] = await skipped_events(rt)
    assert (event["reason"], event["followId"]) == ("BELOW_MINIMUM", follow_id)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("DISCONNECTED", "EXCHANGE_ACCOUNT_DISCONNECTED"),
        ("SUSPENDED", "EXCHANGE_ACCOUNT_SUSPENDED"),
    ],
)
async def test_copies_for_an_account_no_longer_active_are_skipped(
    api, rt, engines, exchanges, status, reason
):
    leader_id, leader_token = await _leader(api, rt)
    token, account_id, _, follow_id = await _exchange_follower(
        api, rt, exchanges, "okx", leader_id, ratio="0.1"
    )
    if status == "DISCONNECTED":
        done = await api.data(DISCONNECT, {"id": account_id}, token=token)
        assert done["disconnectExchangeAccount"]["__typename"] == "ExchangeAccountPayload"
    else:
        async with rt.sessions() as session, session.begin():
            await session.execute(update(ExchangeConnection).values(status=status))
    await _leader_buys(api, rt, leader_token)
    await _leader_buys(api, rt, leader_token, "0.5")
    copies = await _copies(api, token, follow_id)
    assert [(c["status"], c["reason"]) for c in copies] == [("SKIPPED", reason)] * 2
    assert exchanges["okx"].orders == []
    assert await copy_exchange.send_pending(rt) == 0  # nothing left to try: no loop


async def test_the_exchange_order_is_followed_like_any_other(api, rt, engines, exchanges):
    leader_id, leader_token = await _leader(api, rt)
    token, _, _, follow_id = await _exchange_follower(
        api, rt, exchanges, "bybit", leader_id, ratio="0.2"
    )
    await _leader_buys(api, rt, leader_token)
    [sent] = exchanges["bybit"].orders
    fill(exchanges["bybit"], sent, sent.quantity)
    await following.poll_live(rt)
    [copy] = await _copies(api, token, follow_id)
    node = (await api.data(EXCHANGE_ORDER, {"id": copy["exchangeOrderId"]}, token=token))["node"]
    assert (node["status"], node["quantity"]) == ("FILLED", "0.2")
    # the leader sells half: the follow sells half of what its exchange copy bought
    bidder = await trader(api, rt, "bidder@example.com", USDT="10000")
    await place(rt, bidder[0], limit(BUY, "5", "100"))
    sold = await order(api, leader_token, "SELL", "0.5", "100", timeInForce="IOC")
    assert sold["status"] == "FILLED"
    await copy_all(rt)
    newest, _ = await _copies(api, token, follow_id)
    assert (newest["status"], newest["side"], newest["quantity"]) == ("PLACED", "SELL", "0.1")
    assert newest["price"] == "99"  # 100 less the 1 % tolerance, up to the tick


@pytest.mark.parametrize(
    ("account", "typename", "field"),
    [
        ("someone else's", "NotFound", "exchangeAccountId"),
        ("RXhjaGFuZ2VBY2NvdW50Ojk5OTk5OTk=", "NotFound", "exchangeAccountId"),  # nobody's
        ("RXhjaGFuZ2VBY2NvdW50Ojk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5", None, "exchangeAccountId"),
        ("bm9wZQ==", None, "exchangeAccountId"),
        ("RXhjaGFuZ2VBY2NvdW50OgAx", None, "exchangeAccountId"),  # NUL in the id
        ("TGVhZGVyOjE=", None, "exchangeAccountId"),  # a Leader's id
    ],
)
async def test_bad_exchange_accounts_are_typed_errors_that_change_nothing(
    api, rt, exchanges, account, typename, field
):
    leader_id, _ = await _leader(api, rt)
    _, other_token = await trader(api, rt, "other@example.com")
    other = exchanges["kraken"].add(new_account("kraken"))
    theirs = (await _connect(api, other_token, "kraken", other))["exchangeAccount"]["id"]
    _, token = await trader(api, rt, "me@example.com", USDT="1000")
    variables = {"leader": gid("Leader", leader_id), "allocation": "100",
                 "mode": "FIXED_RATIO", "ratio": "0.1",
                 "account": theirs if account == "someone else's" else account}  # fmt: skip
    body = (await api.data(FOLLOW, variables, token=token))["followLeader"]
    assert body.get("field") == field, body
    assert typename is None or body["__typename"] == typename
    assert body["__typename"] != "FollowPayload"
    async with rt.sessions() as session:
        assert (await session.scalars(select(Follow))).all() == []


async def test_update_follow_moves_copies_to_an_account_and_back(api, rt, engines, exchanges):
    leader_id, _ = await _leader(api, rt)
    token, account_id, _, follow_id = await _exchange_follower(
        api, rt, exchanges, "coinbase", leader_id, ratio="0.1"
    )
    _, other_token = await trader(api, rt, "other@example.com")
    other = exchanges["coinbase"].add(new_account("coinbase"))
    theirs = (await _connect(api, other_token, "coinbase", other))["exchangeAccount"]["id"]
    refused = await api.data(UPDATE, {"id": gid("Follow", follow_id), "account": theirs},
                             token=token)  # fmt: skip
    assert refused["updateFollow"]["__typename"] == "NotFound"
    assert refused["updateFollow"]["field"] == "exchangeAccountId"
    # the allocation (500) is above the platform balance (none): back on the platform is refused
    back = await api.data(UPDATE, {"id": gid("Follow", follow_id), "account": None}, token=token)
    assert back["updateFollow"]["__typename"] == "InsufficientFunds", back
    async with rt.sessions() as session:
        row = await session.get(Follow, follow_id)
        assert row is not None and row.exchange_account_id == pk(account_id)


async def test_a_market_the_exchange_does_not_list_and_a_halted_follow_are_skipped(
    api, rt, engines, exchanges
):
    leader_id, leader_token = await _leader(api, rt)
    seller = await funded_user(rt, "sol-maker", SOL="10")
    await place(rt, seller, limit(SELL, "5", "150"), symbol="SOL/USDT")
    token, _, _, follow_id = await _exchange_follower(
        api, rt, exchanges, "kraken", leader_id, ratio="0.5"
    )
    # the stand-ins list BTC/USDT and ETH/USDT only
    bought = await order(api, leader_token, "BUY", "1", "150", symbol="SOL/USDT",
                         timeInForce="IOC")  # fmt: skip
    assert bought["status"] == "FILLED"
    await copy_all(rt)
    # the follow's risk scope halted: its copies are refused by the exchange order path
    await force_state(rt, ScopeRef(Scope.FOLLOW, follow_id), RiskState.HALTED, "by hand")
    await _leader_buys(api, rt, leader_token)
    halted, unlisted = await _copies(api, token, follow_id)
    assert (unlisted["status"], unlisted["reason"]) == ("SKIPPED", "EXCHANGE_MARKET_NOT_FOUND")
    assert (halted["status"], halted["reason"]) == ("SKIPPED", "RISK_HALTED")
    assert exchanges["kraken"].orders == []
    assert [e["reason"] for e in await skipped_events(rt)] == [
        "EXCHANGE_MARKET_NOT_FOUND", "RISK_HALTED"]  # fmt: skip


async def test_a_copy_whose_answer_is_lost_is_never_sent_again(api, rt, engines, exchanges):
    leader_id, leader_token = await _leader(api, rt)
    token, _, _, follow_id = await _exchange_follower(
        api, rt, exchanges, "binance", leader_id, ratio="0.1"
    )
    exchanges["binance"].fail_next(*([503] * 50))  # the placement and its lookup unanswered
    await _leader_buys(api, rt, leader_token)
    [copy] = await _copies(api, token, follow_id)
    # linked to its order, left PENDING_SUBMIT for reconciliation to settle
    assert copy["status"] == "PLACED" and copy["exchangeOrderId"] is not None
    node = (await api.data(EXCHANGE_ORDER, {"id": copy["exchangeOrderId"]}, token=token))["node"]
    assert (node["status"], node["clientOrderId"]) == ("PENDING_SUBMIT", copy["clientOrderId"])
    exchanges["binance"].failures.clear()
    await copy_trading.run_once(rt)
    assert await copy_exchange.send_pending(rt) == 0
    sent = [r for r in exchanges["binance"].requests
            if r.path == "/api/v3/order" and r.method == "POST"]  # fmt: skip
    assert len(sent) <= 1 and exchanges["binance"].orders == []


# --- the follow's position at the exchange ------------------------------------------------


async def _exchange_fills(rt) -> list:
    return await rows(rt, "SELECT quantity, price, fee, fee_currency, follow_id"
                          " FROM exchange_fills ORDER BY id")  # fmt: skip


def _bought(fills) -> tuple[Decimal, Decimal]:
    """(BTC received, USDT paid) by buys whose fee was taken in BTC or in USDT."""
    received = sum((f["quantity"] - (f["fee"] if f["fee_currency"] == "BTC" else 0)
                    for f in fills), Decimal(0))  # fmt: skip
    paid = sum((f["quantity"] * f["price"] + (f["fee"] if f["fee_currency"] == "USDT" else 0)
                for f in fills), Decimal(0))  # fmt: skip
    return received, paid


async def _filled_at_the_exchange(rt, stand_in: StandIn, *parts: str) -> None:
    """The stand-in's newest order filled in ``parts``, read by reconciliation, and the
    copy worker run."""
    sent = stand_in.orders[-1]
    for part in parts:
        fill(stand_in, sent, Decimal(part))
    await following.poll_live(rt)
    await copy_all(rt)


@pytest.mark.parametrize("name", ["binance", "bybit"])  # a buy's fee in USDT; in BTC
async def test_the_copys_fills_at_the_exchange_make_the_follows_position_once(
    api, rt, engines, exchanges, name
):
    leader_id, leader_token = await _leader(api, rt)
    _, _, _, follow_id = await _exchange_follower(api, rt, exchanges, name, leader_id, ratio="0.2")
    await _leader_buys(api, rt, leader_token)
    await _filled_at_the_exchange(rt, exchanges[name], "0.05", "0.15")

    fills = await _exchange_fills(rt)
    assert [f["follow_id"] for f in fills] == [follow_id, follow_id]
    received, paid = _bought(fills)
    assert received <= Decimal("0.2") and paid >= Decimal("0.2") * 101
    assert await follow_position(rt, follow_id) == (received, paid, 0)
    [copy] = await rows(rt, "SELECT filled_quantity FROM copies")
    assert copy["filled_quantity"] == Decimal("0.2")

    # the fills read again: reconciliation again, the consumer's checkpoint lost
    await following.poll_live(rt)
    await _execute(rt, "DELETE FROM event_consumers WHERE name = $1", POSITIONS_CONSUMER)
    await copy_all(rt)
    assert await follow_position(rt, follow_id) == (received, paid, 0)
    [copy] = await rows(rt, "SELECT filled_quantity FROM copies")
    assert copy["filled_quantity"] == Decimal("0.2")

    # the leader sells half: half of what the follow holds is sold there; its proceeds
    # (less the fee) realize a profit or loss at the average cost
    bidder = await trader(api, rt, "bidder@example.com", USDT="10000")
    await place(rt, bidder[0], limit(BUY, "5", "100"))
    sold = await order(api, leader_token, "SELL", "0.5", "100", timeInForce="IOC")
    assert sold["status"] == "FILLED"
    await copy_all(rt)
    sell = exchanges[name].orders[-1]
    assert (sell.side, sell.quantity) == (
        "sell",
        (received / 2).quantize(Decimal("0.00001"), rounding="ROUND_DOWN"),
    )
    await _filled_at_the_exchange(rt, exchanges[name], str(sell.quantity))
    [*_, last] = await _exchange_fills(rt)
    assert last["fee_currency"] == "USDT" and last["follow_id"] == follow_id
    proceeds = last["quantity"] * last["price"] - last["fee"]
    released = paid * sell.quantity / received
    quantity, cost, realized = await follow_position(rt, follow_id)
    assert quantity == received - sell.quantity
    assert abs(cost - (paid - released)) < Decimal("1e-15")
    assert abs(realized - (proceeds - released)) < Decimal("1e-15")
    assert realized < 0  # bought at 101, sold at 99, fees besides


async def _one_follow(rt) -> dict:
    [row] = await rows(rt, "SELECT status, ended_at, closing_at FROM follows")
    return dict(row)


async def test_unfollow_with_close_positions_sells_at_the_exchange_once(
    api, rt, engines, exchanges
):
    leader_id, leader_token = await _leader(api, rt)
    token, _, account, follow_id = await _exchange_follower(
        api, rt, exchanges, "okx", leader_id, ratio="0.3"
    )
    await _leader_buys(api, rt, leader_token)
    await _filled_at_the_exchange(rt, exchanges["okx"], "0.3")
    held = (await follow_position(rt, follow_id))[0]
    assert held > 0

    body = await api.data(UNFOLLOW, {"id": gid("Follow", follow_id)}, token=token)
    assert body["unfollowLeader"] == {
        "__typename": "UnfollowPayload",
        "follow": {"status": "STOPPED"},
        "closingOrders": [],
    }
    # sold at the exchange: a limit at the last price (100) less the 1 % tolerance
    _, sell = exchanges["okx"].orders
    assert (sell.side, sell.type, sell.symbol) == ("sell", "limit", "BTC/USDT")
    assert (sell.quantity, sell.price, sell.api_key) == (held, Decimal("99"), account.api_key)
    follow = await _one_follow(rt)
    assert follow["status"] == "STOPPED" and follow["closing_at"] is not None
    assert follow["ended_at"] is None  # it ends when its position is sold

    # the worker again, and again after a restart that lost the sender's progress: no
    # second sell
    await copy_trading.run_once(rt)
    await copy_all(rt)
    await copy_exchange.send_pending(rt)
    assert len(exchanges["okx"].orders) == 2
    assert await scalar(rt, "SELECT count(*) FROM exchange_orders WHERE side = 'SELL'") == 1

    # filled there: the position is gone and the follow ends
    await _filled_at_the_exchange(rt, exchanges["okx"], str(held))
    assert (await follow_position(rt, follow_id))[0] == 0
    follow = await _one_follow(rt)
    assert follow["closing_at"] is None and follow["ended_at"] is not None
    await copy_all(rt)
    assert len(exchanges["okx"].orders) == 2


async def test_an_exchange_follows_stop_loss_sells_its_position_there_once(
    api, rt, engines, exchanges
):
    leader_id, leader_token = await _leader(api, rt)
    token, _, _, follow_id = await _exchange_follower(
        api, rt, exchanges, "binance", leader_id, FOLLOW_WITH_STOP, allocation="100",
        ratio="0.4", stopLoss="10", close=True,
    )  # fmt: skip
    await _leader_buys(api, rt, leader_token)
    await _filled_at_the_exchange(rt, exchanges["binance"], "0.4")
    quantity, cost, _ = await follow_position(rt, follow_id)
    assert quantity == Decimal("0.4") and cost > Decimal("40.4")
    # the platform's price falls to 81: 0.4 x 81 - 40.4 = -8, above the 10 % stop
    maker = await funded_user(rt, "maker2", BTC="10")
    taker = await funded_user(rt, "taker", USDT="10000")
    for price in ("90", "81"):
        await trade_at(rt, maker, taker, price)
    await copy_all(rt)
    status = await api.data(FOLLOW_STATUS, {"id": gid("Follow", follow_id)}, token=token)
    assert status["follow"] == {"status": "ACTIVE", "pauseReason": None}
    assert len(exchanges["binance"].orders) == 1
    # at 73: 0.4 x 73 - 40.4 = -11.2, the stop-loss: paused and sold at the exchange
    await trade_at(rt, maker, taker, "73")
    await copy_all(rt)
    status = await api.data(FOLLOW_STATUS, {"id": gid("Follow", follow_id)}, token=token)
    assert status["follow"] == {"status": "PAUSED", "pauseReason": "STOP_LOSS"}
    _, sell = exchanges["binance"].orders
    assert (sell.side, sell.quantity, sell.price) == ("sell", Decimal("0.4"), Decimal("72.27"))
    await copy_all(rt)
    await copy_exchange.send_pending(rt)
    assert len(exchanges["binance"].orders) == 2
    await _filled_at_the_exchange(rt, exchanges["binance"], "0.4")
    assert (await follow_position(rt, follow_id))[:2] == (0, 0)
    assert (await _one_follow(rt))["closing_at"] is None


async def test_an_exchange_follow_is_not_charged_a_profit_share(api, rt, engines, exchanges):
    leader_id, leader_token = await _leader(api, rt)  # profitSharePercent: 10
    _, _, _, follow_id = await _exchange_follower(
        api, rt, exchanges, "kraken", leader_id, ratio="0.2"
    )
    await _leader_buys(api, rt, leader_token)
    await _filled_at_the_exchange(rt, exchanges["kraken"], "0.2")
    # a realized profit on the follow (its position sold higher at the exchange)
    await _execute(rt, "INSERT INTO follow_positions (follow_id, currency, realized_pnl)"
                   " VALUES ($1, 'BTC', 50) ON CONFLICT (follow_id, currency)"
                   " DO UPDATE SET realized_pnl = 50", follow_id)  # fmt: skip
    # the follower's platform wallet could pay a share: it is not taken from there
    follower = await scalar(rt, "SELECT follower_id FROM follows WHERE id = $1", follow_id)
    await fund(rt, follower, "USDT", "100")
    assert await profit_share.settle_profit_shares(rt) == 0
    assert await wallet(rt, follower, "USDT") == (Decimal("100"), Decimal("0"))
    assert await scalar(rt, "SELECT count(*) FROM profit_share_settlements") == 0
    assert await scalar(rt, "SELECT high_water_mark FROM follows WHERE id = $1", follow_id) == 0
