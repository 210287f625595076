"""What becomes of the platform's protections when a connected account stops being usable,
with the real ccxt talking to the stand-ins: a SUSPENDED account (the daily re-check) or
a DISCONNECTED one has its ARMED stops disarmed (CANCELED, ``triggerNote`` saying why) and
its order lists ended, in the transaction of the status change, each with its order
event, and its owner notified; the trigger job never fires a stop of an account that is
not ACTIVE; disconnecting cancels the platform's live orders at the exchange first and
refuses (typed) when one cannot be canceled, unless the caller leaves them open."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import update

from app.exchanges import order_lists, triggers
from app.exchanges.accounts import recheck_due
from db.models import ExchangeConnection, ExchangeOrderList
from tests.exchanges.test_accounts_api import DISCONNECT
from tests.exchanges.test_order_lists_api import STOP, TAKE_PROFIT, _place_list
from tests.exchanges.test_orders_api import _account, _place, _rows
from tests.support import pk
from tests.support.documents import ERROR_FIELDS
from tests.support.exchanges import trade_at
from tests.support.trading import rows

BTC = "BTC/USDT"
ARMED_STOP = {"type": "STOP_LOSS", "side": "SELL", "price": None, "stopPrice": "45000"}
DISCONNECT_LEAVING = (
    "mutation($id: ID!, $cancel: Boolean!) {"
    " disconnectExchangeAccount(id: $id, cancelOpenOrders: $cancel) { __typename"
    " ... on ExchangeAccountPayload { exchangeAccount { id status } }"
    f" {ERROR_FIELDS} ... on Error {{ field }} }} }}"
)


async def _protected(gql, exchanges) -> tuple[str, str, object, dict, dict]:
    """An OKX account with an armed stop and an OCO (its limit at the exchange, its stop
    armed)."""
    token, account_id, account = await _account(gql, exchanges, "okx")
    stop = await _place(gql, token, account_id, **ARMED_STOP)
    assert stop["exchangeOrder"]["status"] == "ARMED", stop
    oco = await _place_list(gql, token, account_id, kind="OCO", orders=[TAKE_PROFIT, STOP])
    assert oco["status"] == "ACTIVE", oco
    return token, account_id, account, stop["exchangeOrder"], oco


async def _age_checks(rt) -> None:
    async with rt.sessions() as session, session.begin():
        await session.execute(update(ExchangeConnection).values(
            last_checked_at=ExchangeConnection.last_checked_at - timedelta(days=2)))  # fmt: skip


async def _lists(rt) -> list[ExchangeOrderList]:
    return await _rows(rt, ExchangeOrderList)


async def _notices(rt) -> list:
    return await rows(rt, "SELECT type, priority, title, body, link FROM notifications"
                          " WHERE source LIKE 'exchange-protections:%' ORDER BY id")  # fmt: skip


async def _order_events(rt) -> list[dict]:
    found = await rows(rt, "SELECT payload FROM outbox WHERE topic = 'exchange-orders'"
                           " ORDER BY id")  # fmt: skip
    return [r["payload"] for r in found]


async def test_a_suspended_account_s_stops_are_disarmed_and_its_lists_ended(gql, rt,
                                                                          exchanges):  # fmt: skip
    server = exchanges["okx"]
    _, account_id, account, stop, _ = await _protected(gql, exchanges)
    account.can_withdraw = True  # the user gave the key withdrawals at the exchange
    await _age_checks(rt)
    assert await recheck_due(rt) == 1
    armed = {r.id: r for r in await _rows(rt) if r.emulated}
    assert len(armed) == 2
    assert {(r.status, r.trigger_note, r.triggered_at) for r in armed.values()} == {
        ("CANCELED", "ACCOUNT_SUSPENDED", None)}  # fmt: skip
    [listed] = await _lists(rt)
    assert (listed.status, listed.note) == ("CANCELED", "ACCOUNT_SUSPENDED")
    events = [e for e in await _order_events(rt) if e.get("triggerNote") == "ACCOUNT_SUSPENDED"]
    assert sorted(e["id"] for e in events) == sorted(armed)
    assert {e["status"] for e in events} == {"CANCELED"}
    [notice] = await _notices(rt)
    assert (notice["type"], notice["priority"]) == ("TRADE", "HIGH")
    assert "suspended" in notice["body"] and "EXCHANGE_KEY_ALLOWS_WITHDRAWALS" in notice["body"]
    assert "2 stop orders disarmed" in notice["body"] and "1 order list ended" in notice["body"]
    assert pk(notice["link"]) == pk(account_id)
    trade_at(server, BTC, Decimal("43000"))  # through both stops
    assert await triggers.fire_armed(rt) == 0
    assert [o.type for o in server.orders] == ["limit"]  # the OCO's limit, nothing fired
    assert stop["id"] in {e["id"] for e in events} or pk(stop["id"]) in armed


async def test_a_transient_recheck_failure_disarms_nothing(gql, rt, exchanges):
    _, _, _, _, _ = await _protected(gql, exchanges)
    await _age_checks(rt)
    exchanges["okx"].fail_next(503, 503, 503, 503)
    assert await recheck_due(rt) == 1
    assert {r.status for r in await _rows(rt) if r.emulated} == {"ARMED"}
    assert [r.status for r in await _lists(rt)] == ["ACTIVE"]
    assert await _notices(rt) == []


async def test_a_suspended_account_without_protections_notifies_nothing(gql, rt, exchanges):
    _, _, account = await _account(gql, exchanges, "okx")
    account.can_withdraw = True
    await _age_checks(rt)
    assert await recheck_due(rt) == 1
    assert await _notices(rt) == []


@pytest.mark.parametrize("status", ["SUSPENDED", "DISCONNECTED"])
async def test_the_trigger_job_never_fires_a_stop_of_an_account_not_active(gql, rt, exchanges,
                                                                           status):  # fmt: skip
    server = exchanges["okx"]
    await _account_with_stop(gql, exchanges)
    erased = {"key_id": None, "wrapped_key": None, "sealed_secret": None}
    async with rt.sessions() as session, session.begin():  # moved by hand: still ARMED
        await session.execute(update(ExchangeConnection).values(
            status=status, **(erased if status == "DISCONNECTED" else {})))  # fmt: skip
    [armed] = await _rows(rt)
    assert armed.status == "ARMED"
    trade_at(server, BTC, Decimal("44000"))
    assert await triggers.fire_armed(rt) == 0
    assert await triggers.fire(rt, order_id=armed.id, price=Decimal("44000")) is False
    assert server.orders == []
    assert (await _rows(rt))[0].status == "ARMED"


async def _account_with_stop(gql, exchanges) -> tuple[str, str, dict]:
    token, account_id, _ = await _account(gql, exchanges, "okx")
    placed = await _place(gql, token, account_id, **ARMED_STOP)
    assert placed["exchangeOrder"]["status"] == "ARMED", placed
    return token, account_id, placed["exchangeOrder"]


async def test_disconnect_cancels_the_live_orders_at_the_exchange_first(gql, rt, exchanges):
    server = exchanges["okx"]
    token, account_id, _, _, _ = await _protected(gql, exchanges)
    plain = await _place(gql, token, account_id)  # a limit buy, open at the exchange
    assert plain["exchangeOrder"]["status"] == "OPEN", plain
    done = await gql.data(DISCONNECT, {"id": account_id}, token=token)
    result = done["disconnectExchangeAccount"]
    assert result["exchangeAccount"]["status"] == "DISCONNECTED", result
    assert {o.status for o in server.orders} == {"canceled"}  # the OCO's limit and the buy
    by_status = {(r.status, r.trigger_note) for r in await _rows(rt)}
    assert by_status == {("CANCELED", None), ("CANCELED", "ACCOUNT_DISCONNECTED")}
    assert [(r.status, r.note) for r in await _lists(rt)] == [
        ("CANCELED", "ACCOUNT_DISCONNECTED")]  # fmt: skip
    [notice] = await _notices(rt)
    assert "disconnected" in notice["body"] and "2 stop orders disarmed" in notice["body"]
    assert "2 open orders canceled at the exchange" in notice["body"]
    assert await order_lists.settle_lists(rt) == 0  # nothing left for the list job


async def test_disconnect_refuses_while_an_order_cannot_be_canceled(gql, rt, exchanges):
    server = exchanges["okx"]
    token, account_id, _, _, _ = await _protected(gql, exchanges)
    server.accounts.clear()  # the key was deleted at the exchange: nothing can be canceled
    refused = await gql.data(DISCONNECT, {"id": account_id}, token=token)
    result = refused["disconnectExchangeAccount"]
    assert (result["__typename"], result["field"]) == ("ExchangeOrdersStillOpen", "id"), result
    [connection] = await _rows(rt, ExchangeConnection)
    assert connection.status == "ACTIVE" and connection.sealed_secret is not None
    assert {r.status for r in await _rows(rt) if r.emulated} == {"ARMED"}
    assert await _notices(rt) == []

    left = await gql.data(DISCONNECT_LEAVING, {"id": account_id, "cancel": False}, token=token)
    assert left["disconnectExchangeAccount"]["exchangeAccount"]["status"] == "DISCONNECTED"
    assert [o.status for o in server.orders] == ["open"]  # left there, as asked
    rows_ = {r.emulated: r for r in await _rows(rt)}
    assert (rows_[True].status, rows_[True].trigger_note) == ("CANCELED", "ACCOUNT_DISCONNECTED")
    assert rows_[False].status == "OPEN"
    [notice] = await _notices(rt)
    assert "1 order left open at the exchange" in notice["body"]
