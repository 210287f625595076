"""Emulated stops on connected exchange accounts, with the real ccxt talking to the
stand-ins: held ARMED (nothing sent) until the exchange's public trades cross the stop,
then sent once with the order's own client order id, however many runners judge it at
once or again; never on stale trades, never for a halted user; disarmed by a cancel."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import update

from app.exchanges import following, triggers
from app.risk.domain.states import RiskState, Scope, ScopeRef
from db.models import ExchangeOrder
from tests.exchanges.test_orders_api import (
    CANCEL,
    ORDER_FIELDS,
    PLACE,
    _account,
    _create_path,
    _creates,
    _place,
    _rows,
)
from tests.risk.support import force_state
from tests.support import pk
from tests.support.exchanges import trade_at
from tests.support.trading import rows

TRIGGER_FIELDS = "triggerState triggeredAt triggerPrice triggerNote"
ORDER = (
    "query($id: ID!) { node(id: $id) { ... on ExchangeOrder {"
    f" {ORDER_FIELDS} {TRIGGER_FIELDS} }} }} }}"
)
BTC = "BTC/USDT"
# the stops each exchange has no native order for (OKX: both; Coinbase: the stop market)
EMULATED = [("okx", "STOP_LOSS"), ("okx", "STOP_LOSS_LIMIT"), ("coinbase", "STOP_LOSS")]


def _stop(kind: str, side: str = "SELL", stop: str = "45000") -> dict:
    price = None if kind == "STOP_LOSS" else ("44000" if side == "SELL" else "46000")
    return {"type": kind, "side": side, "price": price, "stopPrice": stop}


async def _order(gql, token, order_id) -> dict:
    return (await gql.data(ORDER, {"id": order_id}, token=token))["node"]


async def _armed(gql, exchanges, name, kind, **stop) -> tuple[str, str, dict]:
    token, account_id, _ = await _account(gql, exchanges, name)
    result = await _place(gql, token, account_id, **_stop(kind, **stop))
    assert result["__typename"] == "ExchangeOrderPayload", result
    return token, account_id, result["exchangeOrder"]


@pytest.mark.parametrize(("name", "kind"), EMULATED)
async def test_an_emulated_stop_fires_once_when_the_trades_cross_it(gql, rt, exchanges, name,
                                                                   kind):  # fmt: skip
    server = exchanges[name]
    token, _, placed = await _armed(gql, exchanges, name, kind)
    assert (placed["status"], placed["emulated"]) == ("ARMED", True)
    node = await _order(gql, token, placed["id"])
    assert (node["triggerState"], node["triggeredAt"]) == ("ARMED", None)

    trade_at(server, BTC, Decimal("45000.01"))  # above a sell stop at 45000: not yet
    assert await triggers.fire_armed(rt) == 0
    assert server.orders == [] and not _creates(server, name)
    assert (await _order(gql, token, placed["id"]))["triggerState"] == "ARMED"

    trade_at(server, BTC, Decimal("44999.50"))
    fired = await asyncio.gather(*(triggers.fire_armed(rt) for _ in range(3)))
    assert sum(fired) == 1
    assert await triggers.fire_armed(rt) == 0  # a later run (or a restart): nothing again
    [sent] = server.orders
    assert len(_creates(server, name)) == 1
    assert sent.client_order_id == placed["clientOrderId"]
    assert sent.stop_price is None  # the child: a market order, or a limit at its price
    assert sent.type == ("market" if kind == "STOP_LOSS" else "limit")
    await following.poll_live(rt)
    node = await _order(gql, token, placed["id"])
    assert (node["triggerState"], node["triggerPrice"], node["emulated"]) == (
        "TRIGGERED", "44999.5", True)  # fmt: skip
    assert node["exchangeOrderId"] == sent.id
    assert node["status"] == ("FILLED" if kind == "STOP_LOSS" else "OPEN")


async def test_a_buy_stop_fires_when_the_price_rises_to_it(gql, rt, exchanges):
    server = exchanges["okx"]
    await _armed(gql, exchanges, "okx", "STOP_LOSS_LIMIT", side="BUY",
                 stop="46000")  # fmt: skip
    trade_at(server, BTC, Decimal("45999.99"))
    assert await triggers.fire_armed(rt) == 0 and server.orders == []
    trade_at(server, BTC, Decimal("46000"))
    assert await triggers.fire_armed(rt) == 1
    [sent] = server.orders
    assert (sent.side, sent.type, sent.price) == ("buy", "limit", Decimal(46000))


async def test_stale_trades_fire_nothing_and_say_so(gql, rt, exchanges):
    server = exchanges["okx"]
    token, _, placed = await _armed(gql, exchanges, "okx", "STOP_LOSS")
    async with rt.sessions() as session, session.begin():  # armed an hour ago
        await session.execute(update(ExchangeOrder).values(
            created_at=rt.now() - timedelta(hours=1)))  # fmt: skip
    age = rt.settings.exchange_trigger_max_price_age_seconds
    trade_at(server, BTC, Decimal("44000"), age_ms=int(age * 1000) + 60_000)
    assert await triggers.fire_armed(rt) == 0
    assert server.orders == [] and not _creates(server, "okx")
    node = await _order(gql, token, placed["id"])
    assert (node["status"], node["triggerNote"]) == ("ARMED", "STALE_PRICES")
    notes = await rows(rt, "SELECT payload FROM outbox WHERE topic = 'exchange-orders'"
                           " ORDER BY id")  # fmt: skip
    assert notes[-1]["payload"]["triggerNote"] == "STALE_PRICES"  # its event
    trade_at(server, BTC, Decimal("44000"))  # a fresh one
    assert await triggers.fire_armed(rt) == 1
    node = await _order(gql, token, placed["id"])
    assert (node["triggerState"], node["triggerNote"]) == ("TRIGGERED", None)


async def test_a_halted_users_stop_does_not_fire(gql, rt, exchanges):
    server = exchanges["coinbase"]
    token, _, placed = await _armed(gql, exchanges, "coinbase", "STOP_LOSS")
    uid = pk((await gql.data("{ me { id } }", token=token))["me"]["id"])
    await force_state(rt, ScopeRef(Scope.USER, uid), RiskState.HALTED, "by hand")
    trade_at(server, BTC, Decimal("44000"))
    assert await triggers.fire_armed(rt) == 0
    assert server.orders == [] and not _creates(server, "coinbase")
    node = await _order(gql, token, placed["id"])
    assert (node["status"], node["triggerNote"]) == ("ARMED", "RISK_HALTED")


async def test_a_canceled_stop_is_disarmed_and_never_sent(gql, rt, exchanges):
    server = exchanges["okx"]
    token, _, placed = await _armed(gql, exchanges, "okx", "STOP_LOSS")
    canceled = (await gql.data(CANCEL, {"id": placed["id"]}, token=token))["cancelExchangeOrder"]
    assert canceled["exchangeOrder"]["status"] == "CANCELED", canceled
    trade_at(server, BTC, Decimal("44000"))
    assert await triggers.fire_armed(rt) == 0
    assert server.orders == [] and not _creates(server, "okx")
    node = await _order(gql, token, placed["id"])
    assert node["triggerState"] == "DISARMED"
    again = (await gql.data(CANCEL, {"id": placed["id"]}, token=token))["cancelExchangeOrder"]
    assert again["__typename"] == "ExchangeOrderNotCancellable", again


async def test_a_lost_answer_to_the_child_is_looked_up_never_resent(gql, rt, exchanges):
    server = exchanges["okx"]
    token, _, placed = await _armed(gql, exchanges, "okx", "STOP_LOSS_LIMIT")
    server.lose_answers.append(_create_path("okx"))
    trade_at(server, BTC, Decimal("44000"))
    assert await triggers.fire_armed(rt) == 1
    assert await triggers.fire_armed(rt) == 0
    [sent] = server.orders
    assert len(_creates(server, "okx")) == 1
    node = await _order(gql, token, placed["id"])
    assert (node["status"], node["exchangeOrderId"]) == ("OPEN", sent.id)


@pytest.mark.parametrize(
    ("changes", "field", "typename"),
    [
        ({"stopPrice": "45000.005"}, "stopPrice", "ValidationFailed"),  # off the tick
        ({"stopPrice": None}, "stopPrice", "ValidationFailed"),
        ({"stopPrice": "1" + "0" * 23}, "stopPrice", "ValidationFailed"),
        ({"stopPrice": "-45000"}, "stopPrice", "ValidationFailed"),
        ({"price": "44000"}, "price", "ValidationFailed"),  # a stop market has no price
        ({"symbol": "DOGE/USDT"}, "symbol", "ValidationFailed"),
        (
            {"side": "BUY", "stopPrice": "46000"},
            "type",
            "ExchangeOrderTypeNotAvailable",
        ),  # Coinbase's market buy: quote-sized
    ],
)
async def test_bad_emulated_stops_are_typed_errors_that_arm_nothing(
    gql, rt, exchanges, changes, field, typename
):
    token, account_id, _ = await _account(gql, exchanges, "coinbase")
    result = await _place(gql, token, account_id, **{**_stop("STOP_LOSS"), **changes})
    assert result["__typename"] == typename, result
    assert result["field"] == field
    assert await _rows(rt) == [] and exchanges["coinbase"].orders == []


async def test_a_nul_byte_is_refused_before_anything_is_armed(gql, rt, exchanges):
    token, account_id, _ = await _account(gql, exchanges, "okx")
    variables = {"account": account_id, "symbol": "BTC/USDT\x00", "side": "SELL",
                 "type": "STOP_LOSS", "quantity": "0.01", "stopPrice": "45000"}  # fmt: skip
    body = await gql(PLACE, variables, token=token)
    [error] = body["errors"]
    assert (error["extensions"]["code"], error["extensions"]["field"]) == (
        "VALIDATION_FAILED", "symbol")  # fmt: skip
    assert await _rows(rt) == [] and exchanges["okx"].orders == []
