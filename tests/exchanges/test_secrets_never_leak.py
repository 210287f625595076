"""An account's API key, secret and passphrase are never returned, never logged, never
stored in the clear: connect accounts, use every path (balances, refusals, the
re-check, disconnect), with every logger at DEBUG, then search the captured logs, every
answer, and every column of every table (text, and bytea as hex) for them."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import text, update

from app.exchanges.accounts import recheck_due
from db.base import Base
from db.models import ExchangeConnection
from tests.exchanges.test_accounts_api import CONNECT, DISCONNECT, MINE, _input
from tests.support.documents import signed_in
from tests.support.exchanges.keys import new_account


def _needles(secret: str) -> set[str]:
    raw = secret.encode()
    return {secret, raw.hex(), secret[: len(secret) // 2 + 4]}


async def test_no_secret_in_logs_answers_or_the_database(gql, rt, exchanges, caplog):
    caplog.set_level(logging.DEBUG)
    carol = await signed_in(gql)
    token = carol["accessToken"]
    answers: list[str] = []
    needles: set[str] = set()
    ids = []
    for name in ("binance", "kraken", "okx", "bybit", "coinbase"):
        account = exchanges[name].add(new_account(name))
        for value in (account.api_key, account.secret, account.passphrase):
            if value:
                needles |= _needles(value)
        body = await gql(CONNECT, {"input": _input(name, account)}, token=token)
        answers.append(str(body))
        ids.append(body["data"]["connectExchangeAccount"]["exchangeAccount"]["id"])
        refused = new_account(name, can_withdraw=True)
        exchanges[name].add(refused)
        needles |= _needles(refused.secret)
        answers.append(str(await gql(CONNECT, {"input": _input(name, refused)}, token=token)))
    answers.append(str(await gql(MINE, token=token)))
    malformed = new_account("bybit")  # refused by the gateway, before any resolver
    needles |= _needles(malformed.secret)
    for value in (malformed.secret + "\x00", [malformed.secret], {"v": malformed.secret}):
        body = await gql(CONNECT, {"input": _input("bybit", malformed, secret=value)},
                         token=token)  # fmt: skip
        assert body["errors"][0]["extensions"]["code"] in {"VALIDATION_FAILED", "BAD_USER_INPUT"}
    exchanges["okx"].fail_next(503, 503, 503)
    exchanges["binance"].accounts.clear()
    answers.append(str(await gql(MINE, token=token)))
    async with rt.sessions() as session, session.begin():
        await session.execute(update(ExchangeConnection).values(
            last_checked_at=ExchangeConnection.last_checked_at - timedelta(days=2)))  # fmt: skip
    assert await recheck_due(rt) == 5
    answers.append(str(await gql(DISCONNECT, {"id": ids[0]}, token=token)))

    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "exchange account connected" in logged  # the logs were captured
    assert [n for n in needles if n in logged] == []
    assert [n for n in needles if any(n in a for a in answers)] == []
    stored = await _every_row_as_text(rt)
    assert stored.get("exchange_connections")
    found = {t: [n for n in needles if n in rows] for t, rows in stored.items()}
    assert {t: n for t, n in found.items() if n} == {}


async def _every_row_as_text(rt) -> dict[str, str]:
    """Each table's rows as PostgreSQL writes them (a row's text form: bytea as hex)."""
    dump = {}
    async with rt.sessions() as session:
        for table in Base.metadata.sorted_tables:
            rows = await session.scalars(text(f'SELECT t::text FROM "{table.name}" t'))
            dump[table.name] = "\n".join(rows)
    return dump


async def test_no_secret_on_the_order_path(gql, rt, exchanges, caplog):
    """Orders placed, refused, lost and looked up, canceled and polled on the five exchanges,
    every logger at DEBUG: no key, secret or passphrase in the logs, answers or tables."""
    from app.exchanges import following
    from tests.exchanges.test_orders_api import CANCEL, PLACE
    from tests.support.exchanges import fill

    caplog.set_level(logging.DEBUG)
    token = (await signed_in(gql))["accessToken"]
    answers: list[str] = []
    needles: set[str] = set()
    for name, create in (("binance", "/api/v3/order"), ("kraken", "/0/private/AddOrder"),
                         ("okx", "/api/v5/trade/batch-orders"), ("bybit", "/v5/order/create"),
                         ("coinbase", "/api/v3/brokerage/orders")):  # fmt: skip
        server = exchanges[name]
        account = server.add(new_account(name))
        for value in (account.api_key, account.secret, account.passphrase):
            if value:
                needles |= _needles(value)
        body = await gql(CONNECT, {"input": _input(name, account)}, token=token)
        account_id = body["data"]["connectExchangeAccount"]["exchangeAccount"]["id"]
        order = {"account": account_id, "symbol": "BTC/USDT", "side": "BUY",
                 "type": "LIMIT", "quantity": "0.01", "price": "40000"}  # fmt: skip
        placed = await gql(PLACE, order, token=token)
        answers.append(str(placed))
        answers.append(str(await gql(PLACE, {**order, "quantity": "1"}, token=token)))
        server.lose_answers.append(create)
        answers.append(str(await gql(PLACE, order, token=token)))
        server.lose_answers.append(create)
        server.after_lost = [503] * 3
        answers.append(str(await gql(PLACE, order, token=token)))
        fill(server, server.orders[0], Decimal("0.004"))
        await following.poll_live(rt)
        order_id = placed["data"]["placeExchangeOrder"]["exchangeOrder"]["id"]
        answers.append(str(await gql(CANCEL, {"id": order_id}, token=token)))
        assert len(server.refused) == 1  # the insufficient funds, each signature good
        assert "nsufficient" in server.refused[0] or "51008" in server.refused[0]

    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "exchange call failed" in logged and "exchange account reconciled" in logged
    assert [n for n in needles if n in logged] == []
    assert [n for n in needles if any(n in a for a in answers)] == []
    stored = await _every_row_as_text(rt)
    assert stored.get("exchange_orders") and stored.get("exchange_fills")
    found = {t: [n for n in needles if n in rows] for t, rows in stored.items()}
    assert {t: n for t, n in found.items() if n} == {}
