"""OCO and bracket lists on connected exchange accounts over GraphQL, with the real ccxt
talking to the stand-ins: the platform holds the list at every exchange; the first leg
to fill or fire cancels the other (at the exchange if it was sent, else disarmed); a
bracket's exits are placed once, for what its entry filled; a list's cancel cancels
every leg; bad lists are typed errors that place nothing."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from app.exchanges import following, order_lists, triggers
from tests.exchanges.test_orders_api import ORDER_EXCHANGES, ORDER_FIELDS, _account, _rows
from tests.support.documents import ERROR_FIELDS
from tests.support.exchanges import cancel, fill, trade_at

LIST_FIELDS = f"listId kind status note orders {{ {ORDER_FIELDS} listId listRole triggerState }}"
PLACE_LIST = (
    "mutation($input: PlaceExchangeOrderListInput!) { placeExchangeOrderList(input: $input) {"
    f" __typename ... on ExchangeOrderListPayload {{ {LIST_FIELDS} }}"
    f" {ERROR_FIELDS} ... on Error {{ field }} }} }}"
)
CANCEL_LIST = (
    "mutation($id: ID!) { cancelExchangeOrderList(id: $id) {"
    f" __typename ... on ExchangeOrderListPayload {{ {LIST_FIELDS} }}"
    f" {ERROR_FIELDS} ... on Error {{ field }} }} }}"
)
BTC = "BTC/USDT"
TAKE_PROFIT = {"side": "SELL", "type": "LIMIT", "quantity": "0.01", "price": "46000"}
STOP = {"side": "SELL", "type": "STOP_LOSS_LIMIT", "quantity": "0.01", "price": "43900",
        "stopPrice": "44000"}  # fmt: skip


async def _place_list(gql, token, account_id, **fields) -> dict:
    data = {"accountId": account_id, "symbol": BTC, **fields}
    return (await gql.data(PLACE_LIST, {"input": data}, token=token))["placeExchangeOrderList"]


def _by_role(placed: dict) -> dict[str, dict]:
    return {o["listRole"]: o for o in placed["orders"]}


def _at_exchange(server, leg: dict):
    [order] = [o for o in server.orders if o.client_order_id == leg["clientOrderId"]]
    return order


async def _settle(rt) -> None:
    await following.poll_live(rt)
    await order_lists.settle_lists(rt)
    await following.poll_live(rt)
    await order_lists.settle_lists(rt)  # the canceled leg seen: the list ends


async def _list(rt, token, gql, list_id) -> dict:
    result = await gql.data(CANCEL_LIST, {"id": list_id}, token=token)
    return result["cancelExchangeOrderList"]


@pytest.mark.parametrize("name", ORDER_EXCHANGES)
async def test_an_oco_limit_filled_cancels_the_stop(gql, rt, exchanges, name):
    server = exchanges[name]
    token, account_id, _ = await _account(gql, exchanges, name)
    placed = await _place_list(gql, token, account_id, kind="OCO", orders=[TAKE_PROFIT, STOP])
    assert placed["__typename"] == "ExchangeOrderListPayload", placed
    assert (placed["kind"], placed["status"]) == ("OCO", "ACTIVE")
    legs = _by_role(placed)
    stop_emulated = name == "okx"  # OKX's spot stops are the platform's
    assert legs["STOP_LOSS"]["emulated"] is stop_emulated
    assert legs["STOP_LOSS"]["status"] == ("ARMED" if stop_emulated else "OPEN")
    assert legs["TAKE_PROFIT"]["listId"] == placed["listId"]
    assert len(server.orders) == (1 if stop_emulated else 2)
    limit = _at_exchange(server, legs["TAKE_PROFIT"])
    fill(server, limit, Decimal("0.01"))
    await _settle(rt)
    rows = {r.list_role: r for r in await _rows(rt)}
    assert rows["TAKE_PROFIT"].status == "FILLED"
    assert rows["STOP_LOSS"].status == "CANCELED"
    if not stop_emulated:
        assert _at_exchange(server, legs["STOP_LOSS"]).status == "canceled"
    again = await _list(rt, token, gql, placed["listId"])
    assert again["__typename"] == "ExchangeOrderNotCancellable", again  # it is DONE


@pytest.mark.parametrize("name", ["okx", "coinbase"])
async def test_an_emulated_stop_fired_cancels_the_limit_at_the_exchange(gql, rt, exchanges,
                                                                        name):  # fmt: skip
    server = exchanges[name]
    token, account_id, _ = await _account(gql, exchanges, name)
    stop = {"side": "SELL", "type": "STOP_LOSS", "quantity": "0.01", "stopPrice": "44000"}
    placed = await _place_list(gql, token, account_id, kind="OCO", orders=[TAKE_PROFIT, stop])
    legs = _by_role(placed)
    assert legs["STOP_LOSS"]["triggerState"] == "ARMED"
    trade_at(server, BTC, Decimal("43999"))
    assert await triggers.fire_armed(rt) == 1
    await _settle(rt)
    assert _at_exchange(server, legs["TAKE_PROFIT"]).status == "canceled"
    rows = {r.list_role: r for r in await _rows(rt)}
    assert (rows["STOP_LOSS"].status, rows["TAKE_PROFIT"].status) == ("FILLED", "CANCELED")
    assert len(server.orders) == 2  # the limit and the stop's market order, nothing more


async def test_an_armed_leg_does_not_fire_once_the_other_filled(gql, rt, exchanges):
    server = exchanges["okx"]
    token, account_id, _ = await _account(gql, exchanges, "okx")
    placed = await _place_list(gql, token, account_id, kind="OCO", orders=[TAKE_PROFIT, STOP])
    fill(server, _at_exchange(server, _by_role(placed)["TAKE_PROFIT"]), Decimal("0.004"))
    trade_at(server, BTC, Decimal("43000"))  # before the list job saw the fill
    assert await triggers.fire_armed(rt) == 0  # the fill is read first: disarmed
    assert len(server.orders) == 1
    rows = {r.list_role: r for r in await _rows(rt)}
    assert (rows["STOP_LOSS"].status, rows["STOP_LOSS"].triggered_at) == ("CANCELED", None)


@pytest.mark.parametrize("name", ["binance", "okx"])
async def test_a_bracket_partly_filled_gets_exits_for_what_filled(gql, rt, exchanges, name):
    server = exchanges[name]
    token, account_id, _ = await _account(gql, exchanges, name)
    entry = {"side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "40000"}
    placed = await _place_list(gql, token, account_id, kind="BRACKET", entry=entry,
                               takeProfitPrice="46000", stopLossPrice="38000")  # fmt: skip
    assert placed["__typename"] == "ExchangeOrderListPayload", placed
    [leg] = placed["orders"]
    assert leg["listRole"] == "ENTRY"
    at_exchange = _at_exchange(server, leg)
    fill(server, at_exchange, Decimal("0.004"))
    await following.poll_live(rt)
    await order_lists.settle_lists(rt)
    assert len(server.orders) == 1  # the entry still open: no exits yet
    cancel(server, at_exchange)  # the rest of the entry canceled at the exchange
    await following.poll_live(rt)
    await asyncio.gather(*(order_lists.settle_lists(rt) for _ in range(3)))
    await order_lists.settle_lists(rt)
    rows = {r.list_role: r for r in await _rows(rt)}
    assert set(rows) == {"ENTRY", "TAKE_PROFIT", "STOP_LOSS"}
    assert rows["TAKE_PROFIT"].quantity == rows["STOP_LOSS"].quantity == Decimal("0.004")
    assert (rows["TAKE_PROFIT"].side, rows["STOP_LOSS"].side) == ("SELL", "SELL")
    assert rows["STOP_LOSS"].status == ("ARMED" if name == "okx" else "OPEN")
    sells = [o for o in server.orders if o.side == "sell"]
    assert len(sells) == (1 if name == "okx" else 2)
    assert all(o.quantity == Decimal("0.004") for o in sells)


@pytest.mark.parametrize("name", ["binance", "okx"])
async def test_canceling_a_list_cancels_every_leg(gql, rt, exchanges, name):
    server = exchanges[name]
    token, account_id, _ = await _account(gql, exchanges, name)
    placed = await _place_list(gql, token, account_id, kind="OCO", orders=[TAKE_PROFIT, STOP])
    canceled = await _list(rt, token, gql, placed["listId"])
    assert canceled["__typename"] == "ExchangeOrderListPayload", canceled
    assert canceled["status"] == "CANCELED"
    assert {o["status"] for o in canceled["orders"]} == {"CANCELED"}
    assert {o.status for o in server.orders} == {"canceled"}
    trade_at(server, BTC, Decimal("43000"))
    assert await triggers.fire_armed(rt) == 0
    again = await _list(rt, token, gql, placed["listId"])
    assert again["__typename"] == "ExchangeOrderNotCancellable", again


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"kind": "OCO", "orders": [TAKE_PROFIT]}, "orders"),
        ({"kind": "OCO"}, "orders"),
        ({"kind": "OCO", "orders": [TAKE_PROFIT, {**TAKE_PROFIT, "price": "47000"}]}, "orders"),
        ({"kind": "OCO", "orders": [TAKE_PROFIT, {**STOP, "side": "BUY"}]}, "orders"),
        ({"kind": "OCO", "orders": [TAKE_PROFIT, {**STOP, "quantity": "0.02"}]}, "orders"),
        ({"kind": "OCO", "orders": [{**TAKE_PROFIT, "price": "43000"}, STOP]}, "orders"),
        ({"kind": "OCO", "orders": [{**TAKE_PROFIT, "price": "46000.001"}, STOP]}, "price"),
        ({"kind": "OCO", "orders": [TAKE_PROFIT, {**STOP, "stopPrice": None}]}, "stopPrice"),
        (
            {
                "kind": "OCO",
                "orders": [
                    {**TAKE_PROFIT, "quantity": "1" + "0" * 23},
                    {**STOP, "quantity": "1" + "0" * 23},
                ],
            },
            "quantity",
        ),
        ({"kind": "BRACKET", "entry": TAKE_PROFIT, "takeProfitPrice": "40000"}, "entry"),
        (
            {
                "kind": "BRACKET",
                "entry": STOP,
                "takeProfitPrice": "46000",
                "stopLossPrice": "40000",
            },
            "entry",
        ),
        (
            {
                "kind": "BRACKET",
                "entry": {**TAKE_PROFIT, "side": "BUY"},
                "takeProfitPrice": "38000",
                "stopLossPrice": "40000",
            },
            "takeProfitPrice",
        ),
        (
            {
                "kind": "BRACKET",
                "entry": {**TAKE_PROFIT, "side": "BUY"},
                "takeProfitPrice": "-1",
                "stopLossPrice": "40000",
            },
            "takeProfitPrice",
        ),
        (
            {
                "kind": "BRACKET",
                "entry": {**TAKE_PROFIT, "side": "BUY"},
                "takeProfitPrice": "47000.001",
                "stopLossPrice": "40000",
            },
            "price",
        ),
        ({"kind": "OCO", "orders": [TAKE_PROFIT, STOP], "symbol": "DOGE/USDT"}, "symbol"),
        ({"kind": "OCO", "orders": [TAKE_PROFIT, STOP], "accountId": "bm9wZQ=="}, "accountId"),
    ],
)
async def test_bad_lists_are_typed_errors_that_place_nothing(gql, rt, exchanges, fields, field):
    token, account_id, _ = await _account(gql, exchanges, "binance")
    result = await _place_list(gql, token, account_id, **fields)
    assert result["__typename"] in ("ValidationFailed", "NotFound"), result
    assert result["field"] == field
    assert await _rows(rt) == [] and exchanges["binance"].orders == []
