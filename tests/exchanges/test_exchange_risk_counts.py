"""The count limits (ORDER_RATE, TRADES_PER_DAY, CANCEL_RATE) at a placement on a
connected exchange account count the orders and cancels already sent to exchanges, not
only the platform's own; an emulated stop's firing is the order placed when it was
armed, counted then, so the counts never hold a stop that fires."""

from __future__ import annotations

from decimal import Decimal

import pytest

from app.exchanges import triggers
from app.risk.domain.limits import LimitKind
from tests.exchanges.test_orders_api import CANCEL, _account, _place, _rows
from tests.risk.support import set_limit
from tests.support import pk
from tests.support.exchanges import trade_at


async def _uid(gql, token) -> int:
    return pk((await gql.data("{ me { id } }", token=token))["me"]["id"])


@pytest.mark.parametrize("kind", [LimitKind.ORDER_RATE, LimitKind.TRADES_PER_DAY])
async def test_exchange_orders_count_towards_the_order_counts(gql, rt, exchanges, kind):
    token, account_id, _ = await _account(gql, exchanges, "binance")
    await set_limit(rt, await _uid(gql, token), kind, 2)
    for _ in range(2):
        placed = await _place(gql, token, account_id)
        assert placed["__typename"] == "ExchangeOrderPayload", placed
    refused = await _place(gql, token, account_id)
    assert refused["__typename"] == "RiskLimitReached", refused
    assert len(await _rows(rt)) == 2 and len(exchanges["binance"].orders) == 2


async def test_exchange_cancels_count_towards_the_cancel_rate(gql, rt, exchanges):
    token, account_id, _ = await _account(gql, exchanges, "binance")
    await set_limit(rt, await _uid(gql, token), LimitKind.CANCEL_RATE, 1)
    placed = [(await _place(gql, token, account_id))["exchangeOrder"] for _ in range(2)]
    canceled = await gql.data(CANCEL, {"id": placed[0]["id"]}, token=token)
    assert canceled["cancelExchangeOrder"]["exchangeOrder"]["status"] == "CANCELED"
    one_cancel = await _place(gql, token, account_id)  # 1 cancel: not over the limit
    assert one_cancel["__typename"] == "ExchangeOrderPayload", one_cancel
    canceled = await gql.data(CANCEL, {"id": placed[1]["id"]}, token=token)
    assert canceled["cancelExchangeOrder"]["exchangeOrder"]["status"] == "CANCELED"
    refused = await _place(gql, token, account_id)
    assert refused["__typename"] == "RiskLimitReached", refused
    assert len(await _rows(rt)) == 3


async def test_a_disarmed_stop_counts_as_a_cancel(gql, rt, exchanges):
    token, account_id, _ = await _account(gql, exchanges, "okx")
    await set_limit(rt, await _uid(gql, token), LimitKind.CANCEL_RATE, 1)
    stop = {"type": "STOP_LOSS", "side": "SELL", "price": None, "stopPrice": "45000"}
    for _ in range(2):
        armed = (await _place(gql, token, account_id, **stop))["exchangeOrder"]
        done = await gql.data(CANCEL, {"id": armed["id"]}, token=token)
        assert done["cancelExchangeOrder"]["exchangeOrder"]["status"] == "CANCELED"
    refused = await _place(gql, token, account_id)
    assert refused["__typename"] == "RiskLimitReached", refused


async def test_the_counts_never_hold_a_stop_that_fires(gql, rt, exchanges):
    server = exchanges["okx"]
    token, account_id, _ = await _account(gql, exchanges, "okx")
    await set_limit(rt, await _uid(gql, token), LimitKind.ORDER_RATE, 1)
    stop = {"type": "STOP_LOSS", "side": "SELL", "price": None, "stopPrice": "45000"}
    armed = await _place(gql, token, account_id, **stop)
    assert armed["exchangeOrder"]["status"] == "ARMED", armed
    refused = await _place(gql, token, account_id)  # the stop is this minute's one order
    assert refused["__typename"] == "RiskLimitReached", refused
    trade_at(server, "BTC/USDT", Decimal("44000"))
    assert await triggers.fire_armed(rt) == 1
    [row] = await _rows(rt)
    assert row.trigger_note is None and len(server.orders) == 1
