"""Crypto deposits: stable per-user addresses, and the admin credit of an on-chain
transfer, once per transaction hash, with an audit trail."""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from app.wallets.domain.deposit_addresses import derive_address
from db.models import AuditLog, Currency, Deposit, DepositAddress, JournalEntry, OutboxEvent, User
from tests.support.documents import login, register
from tests.support.money import balances, user_id, verified_user

ADDRESS = (
    "query($cur: String!) { depositAddress(currency: $cur) { __typename"
    " ... on DepositAddress { currency address network }"
    " ... on Error { code message } ... on DepositMethodNotSupported { field } } }"
)
CREDIT = (
    "mutation($cur: String!, $address: String!, $tx: String!, $amount: Decimal!) {"
    " creditCryptoDeposit(currency: $cur, address: $address, txHash: $tx, amount: $amount) {"
    " __typename ... on CreditCryptoDepositPayload { credited deposit { id amount currency"
    " method status creditedAmount txHash address } }"
    " ... on Error { code message } ... on ValidationFailed { field } ... on NotFound { field }"
    " ... on TxHashConflict { field } ... on DepositMethodNotSupported { field } } }"
)
DEPOSIT = "query($id: ID!) { deposit(id: $id) { amount status txHash } }"
HISTORY = "{ transactions(first: 5) { edges { node { kind currency amount } } } }"
TX = "a1" * 32  # a Bitcoin transaction id
FORMATS = {
    "BTC": r"bc1q[02-9ac-hj-np-z]{38}",
    "ETH": r"0x[0-9a-f]{40}",
    "USDT": r"0x[0-9a-f]{40}",
    "SOL": r"[1-9A-HJ-NP-Za-km-z]{32,44}",
}


@pytest.fixture
async def carol(gql, rt):
    auth = await verified_user(gql, rt, "carol@example.com", handle="carol")
    return auth["accessToken"], await user_id(rt, "carol@example.com")


@pytest.fixture
async def admin(gql, rt):
    await register(gql, "root@example.com")
    async with rt.sessions() as session, session.begin():
        await session.execute(
            update(User).where(User.email == "root@example.com").values(role="ADMIN")
        )
    return (await login(gql, "root@example.com"))["accessToken"]


async def _address(gql, token, currency: str) -> dict:
    return (await gql.data(ADDRESS, {"cur": currency}, token=token))["depositAddress"]


async def _credit(gql, token, address: str, *, tx=TX, amount="0.5", cur="BTC", **kw) -> dict:
    variables = {"cur": cur, "address": address, "tx": tx, "amount": amount}
    return (await gql.data(CREDIT, variables, token=token, **kw))["creditCryptoDeposit"]


async def _rows(rt, model):
    async with rt.sessions() as session:
        key = model.__mapper__.primary_key[0]
        return (await session.scalars(select(model).order_by(key))).all()


# --- addresses ---------------------------------------------------------------------------


@pytest.mark.parametrize("currency", ["BTC", "ETH", "USDT", "SOL"])
async def test_each_user_gets_one_stable_address_per_crypto_currency(gql, rt, carol, currency):
    token, uid = carol
    first = await _address(gql, token, currency.lower())
    assert first["__typename"] == "DepositAddress"
    assert first["currency"] == currency
    assert re.fullmatch(FORMATS[currency], first["address"]), first
    assert await _address(gql, token, currency) == first
    key = rt.settings.secret_key.get_secret_value().encode()
    assert first["address"] == derive_address(key=key, user_id=uid, currency=currency)

    dave = await verified_user(gql, rt, "dave@example.com")
    theirs = await _address(gql, dave["accessToken"], currency)
    assert theirs["address"] != first["address"]
    stored = await _rows(rt, DepositAddress)
    assert {(r.user_id, r.address) for r in stored} == {
        (uid, first["address"]),
        (await user_id(rt, "dave@example.com"), theirs["address"]),
    }


async def test_addresses_differ_per_currency_and_concurrent_first_use_makes_one(gql, rt, carol):
    token, _ = carol
    answers = await asyncio.gather(*(_address(gql, token, "ETH") for _ in range(5)))
    assert all(answer == answers[0] for answer in answers)
    usdt = await _address(gql, token, "USDT")
    assert usdt["address"] != answers[0]["address"]
    assert (answers[0]["network"], usdt["network"]) == ("Ethereum", "Ethereum (ERC-20)")
    assert len(await _rows(rt, DepositAddress)) == 2


async def test_address_for_fiat_unknown_disabled_or_anonymous_is_a_typed_error(gql, rt, carol):
    token, _ = carol
    fiat = await _address(gql, token, "USD")
    assert (fiat["code"], fiat["field"]) == ("DEPOSIT_METHOD_NOT_SUPPORTED", "currency")
    assert (await _address(gql, token, "XYZ"))["code"] == "UNKNOWN_CURRENCY"
    async with rt.sessions() as session, session.begin():
        await session.execute(update(Currency).where(Currency.code == "SOL").values(enabled=False))
    assert (await _address(gql, token, "SOL"))["code"] == "CURRENCY_DISABLED"
    assert (await _address(gql, None, "BTC"))["code"] == "UNAUTHENTICATED"
    assert await _rows(rt, DepositAddress) == []


# --- the admin credit --------------------------------------------------------------------


async def test_admin_credits_an_onchain_deposit_once_with_an_audit_row(gql, rt, carol, admin):
    token, uid = carol
    address = (await _address(gql, token, "BTC"))["address"]
    done = await _credit(gql, admin, address, headers={"x-request-id": "credit-req-1"})
    assert done["__typename"] == "CreditCryptoDepositPayload", done
    assert done["credited"] is True
    deposit = done["deposit"]
    assert (deposit["amount"], deposit["currency"], deposit["method"], deposit["status"]) == (
        "0.50000000",
        "BTC",
        "CRYPTO",
        "SUCCEEDED",
    )
    assert (deposit["txHash"], deposit["address"], deposit["creditedAmount"]) == (
        TX,
        address,
        "0.50000000",
    )
    assert (await balances(rt, uid))["BTC"] == (Decimal("0.5"), 0)
    history = (await gql.data(HISTORY, token=token))["transactions"]["edges"]
    assert [(e["node"]["kind"], e["node"]["amount"]) for e in history] == [
        ("DEPOSIT", "0.50000000")
    ]
    mine = (await gql.data(DEPOSIT, {"id": deposit["id"]}, token=token))["deposit"]
    assert mine == {"amount": "0.50000000", "status": "SUCCEEDED", "txHash": TX}

    (event,) = await _rows(rt, OutboxEvent)
    assert (event.topic, event.user_id) == ("deposit.credited", uid)
    assert (event.payload["amount"], event.payload["txHash"]) == ("0.5", TX)
    (entry,) = await _rows(rt, AuditLog)
    admin_id = await user_id(rt, "root@example.com")
    assert (entry.actor_user_id, entry.action, entry.request_id) == (
        admin_id,
        "deposit.credit_crypto",
        "credit-req-1",
    )
    deposit_pk = (await _rows(rt, Deposit))[0].id
    assert entry.target == f"deposit:{deposit_pk}"
    assert entry.details == {
        "userId": uid,
        "currency": "BTC",
        "amount": "0.5",
        "address": address,
        "txHash": TX,
    }
    (journal,) = await _rows(rt, JournalEntry)
    assert (journal.kind, journal.request_id) == ("CRYPTO_DEPOSIT", "credit-req-1")


async def test_the_same_transaction_again_returns_the_deposit_and_credits_nothing(
    gql, rt, carol, admin
):
    token, uid = carol
    address = (await _address(gql, token, "BTC"))["address"]
    first = await _credit(gql, admin, address)
    again = await _credit(gql, admin, address.upper(), tx=TX.upper())  # same, other case
    assert again["credited"] is False
    assert again["deposit"] == first["deposit"]
    assert (await balances(rt, uid))["BTC"][0] == Decimal("0.5")
    assert len(await _rows(rt, AuditLog)) == 1
    assert len(await _rows(rt, OutboxEvent)) == 1


async def test_concurrent_credits_of_one_transaction_credit_once(gql, rt, carol, admin):
    token, uid = carol
    address = (await _address(gql, token, "ETH"))["address"]
    tx = "0x" + "b2" * 32
    answers = await asyncio.gather(
        *(_credit(gql, admin, address, tx=tx, cur="ETH", amount="1.25") for _ in range(5))
    )
    assert sorted(a["credited"] for a in answers) == [False, False, False, False, True]
    assert len({a["deposit"]["id"] for a in answers}) == 1
    assert (await balances(rt, uid))["ETH"][0] == Decimal("1.25")
    assert len(await _rows(rt, Deposit)) == 1
    assert [e.kind for e in await _rows(rt, JournalEntry)] == ["CRYPTO_DEPOSIT"]


async def test_same_transaction_with_other_details_is_a_conflict(gql, rt, carol, admin):
    token, uid = carol
    address = (await _address(gql, token, "BTC"))["address"]
    await _credit(gql, admin, address)
    other_amount = await _credit(gql, admin, address, amount="0.6")
    assert (other_amount["code"], other_amount["field"]) == ("TX_HASH_CONFLICT", "txHash")
    dave = await verified_user(gql, rt, "dave@example.com")
    elsewhere = (await _address(gql, dave["accessToken"], "BTC"))["address"]
    assert (await _credit(gql, admin, elsewhere))["code"] == "TX_HASH_CONFLICT"
    assert (await balances(rt, uid))["BTC"][0] == Decimal("0.5")
    assert len(await _rows(rt, Deposit)) == 1


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"amount": "0"}, "VALIDATION_FAILED", "amount"),
        ({"amount": "-0.1"}, "VALIDATION_FAILED", "amount"),
        ({"amount": "0.000000001"}, "VALIDATION_FAILED", "amount"),  # BTC has 8 decimals
        ({"tx": "not-a-hash"}, "VALIDATION_FAILED", "txHash"),
        ({"tx": "0x" + "a1" * 32}, "VALIDATION_FAILED", "txHash"),  # an Ethereum hash
        ({"address": "bc1qnobodyhasthisaddressxxxxxxxxxxxxxxxxx"}, "NOT_FOUND", "address"),
        ({"cur": "USD"}, "DEPOSIT_METHOD_NOT_SUPPORTED", "currency"),
        ({"cur": "ETH"}, "NOT_FOUND", "address"),  # a BTC address is not an ETH one
        ({"cur": "XYZ"}, "UNKNOWN_CURRENCY", None),
    ],
)
async def test_bad_credits_change_nothing(gql, rt, carol, admin, overrides, code, field):
    token, _ = carol
    address = (await _address(gql, token, "BTC"))["address"]
    if overrides.get("cur") == "ETH":
        overrides = {**overrides, "tx": "0x" + "a1" * 32}
    answer = await _credit(gql, admin, overrides.pop("address", address), **overrides)
    assert answer["code"] == code, answer
    assert answer.get("field") == field
    assert await _rows(rt, Deposit) == []
    assert await _rows(rt, JournalEntry) == []
    assert await _rows(rt, AuditLog) == []


async def test_only_admins_credit(gql, rt, carol):
    token, _ = carol
    address = (await _address(gql, token, "BTC"))["address"]
    assert (await _credit(gql, token, address))["code"] == "FORBIDDEN"
    assert (await _credit(gql, None, address))["code"] == "UNAUTHENTICATED"
    assert await _rows(rt, Deposit) == []


async def test_a_disabled_currency_can_still_be_credited(gql, rt, carol, admin):
    token, uid = carol
    address = (await _address(gql, token, "SOL"))["address"]
    async with rt.sessions() as session, session.begin():
        await session.execute(update(Currency).where(Currency.code == "SOL").values(enabled=False))
    signature = "5" * 88
    done = await _credit(gql, admin, address, cur="SOL", tx=signature, amount="2.5")
    assert done["credited"] is True
    assert (await balances(rt, uid)).get("SOL") is None  # wallets list enabled currencies
    async with rt.sessions() as session:
        deposit = await session.scalar(select(Deposit))
    assert (deposit.currency, deposit.amount) == ("SOL", Decimal("2.5"))
