"""Internal transfers: effects, bad input, idempotency, history, privacy, concurrency."""

from __future__ import annotations

import asyncio
import base64
import random
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from app.core.errors import InsufficientFunds
from app.wallets import transfers
from db.models import Currency, LedgerAccount, OutboxEvent
from tests.support.money import TRANSFER, WALLETS, balances, fund, user_id, verified_user

HISTORY = (
    "query($first: Int!, $after: String, $cur: String, $kind: [TransactionKind!]) {"
    " transactions(first: $first, after: $after, currency: $cur, kind: $kind) {"
    " edges { cursor node { kind currency amount balanceAfter status memo"
    " counterparty { displayName handle } } } pageInfo { hasNextPage endCursor } } }"
)


@pytest.fixture
async def pair(gql, rt):
    alice = await verified_user(gql, rt, "alice@example.com", handle="alice")
    bob = await verified_user(gql, rt, "bob@example.com", handle="bob")
    a, b = await user_id(rt, "alice@example.com"), await user_id(rt, "bob@example.com")
    await fund(rt, a, "USDT", "100")
    return alice, bob, a, b


def _vars(**overrides):
    base = {"to": "bob", "cur": "USDT", "amount": "25.5", "key": "k-1", "memo": "lunch"}
    return {**base, **overrides}


async def test_transfer_moves_money_and_shows_in_both_histories(gql, rt, pair):
    alice, bob, a, b = pair
    data = await gql.data(TRANSFER, _vars(), token=alice["accessToken"])
    payload = data["transfer"]
    assert payload["__typename"] == "TransferPayload"
    assert Decimal(payload["balanceAfter"]) == Decimal("74.5")
    assert payload["transfer"]["recipient"] == {"displayName": "Carol", "handle": "bob"}
    assert (await balances(rt, a))["USDT"] == (Decimal("74.5"), 0)
    assert (await balances(rt, b))["USDT"] == (Decimal("25.5"), 0)

    mine = (await gql.data(HISTORY, {"first": 10}, token=alice["accessToken"]))["transactions"]
    newest = mine["edges"][0]["node"]
    assert (newest["kind"], Decimal(newest["amount"])) == ("TRANSFER_OUT", Decimal("-25.5"))
    assert newest["counterparty"]["handle"] == "bob"
    theirs = (await gql.data(HISTORY, {"first": 10}, token=bob["accessToken"]))["transactions"]
    (edge,) = theirs["edges"]
    assert edge["node"]["kind"] == "TRANSFER_IN"
    assert Decimal(edge["node"]["balanceAfter"]) == Decimal("25.5")
    assert edge["node"]["memo"] == "lunch"
    assert edge["node"]["counterparty"]["handle"] == "alice"

    async with rt.sessions() as session:
        events = (await session.scalars(select(OutboxEvent))).all()
    assert [(e.topic, e.user_id) for e in events] == [("transfer.received", b)]


async def test_recipient_by_email_is_case_insensitive(gql, rt, pair):
    alice, _, _, b = pair
    data = await gql.data(TRANSFER, _vars(to="BOB@example.com"), token=alice["accessToken"])
    assert data["transfer"]["__typename"] == "TransferPayload"
    assert (await balances(rt, b))["USDT"][0] == Decimal("25.5")


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"amount": "0"}, "VALIDATION_FAILED", "amount"),
        ({"amount": "-1"}, "VALIDATION_FAILED", "amount"),
        ({"amount": "0.0000001"}, "VALIDATION_FAILED", "amount"),  # USDT has 6 decimals
        ({"cur": "DOGE"}, "UNKNOWN_CURRENCY", "currency"),
        ({"to": "nobody@example.com"}, "RECIPIENT_NOT_FOUND", "recipient"),
        ({"to": ""}, "RECIPIENT_NOT_FOUND", "recipient"),
        ({"to": "alice"}, "TRANSFER_TO_SELF", "recipient"),
        ({"amount": "100.000001"}, "INSUFFICIENT_FUNDS", "amount"),
        ({"cur": "BTC", "amount": "0.1"}, "INSUFFICIENT_FUNDS", "amount"),
        ({"memo": "x" * 141}, "VALIDATION_FAILED", "memo"),
        ({"key": ""}, "VALIDATION_FAILED", "idempotencyKey"),
        ({"key": "k" * 256}, "VALIDATION_FAILED", "idempotencyKey"),
    ],
)
async def test_bad_transfers_change_nothing(gql, rt, pair, overrides, code, field):
    alice, _, a, b = pair
    before = (await balances(rt, a), await balances(rt, b))
    data = await gql.data(TRANSFER, _vars(**overrides), token=alice["accessToken"])
    assert data["transfer"]["code"] == code, data
    if "field" in data["transfer"]:
        assert data["transfer"]["field"] == field
    assert (await balances(rt, a), await balances(rt, b)) == before
    async with rt.sessions() as session:
        assert (await session.scalars(select(OutboxEvent))).all() == []


async def test_float_amounts_are_refused_by_the_schema(gql, pair):
    alice, *_ = pair
    body = await gql(TRANSFER, _vars(amount=1.5), token=alice["accessToken"])
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_disabled_currency(gql, rt, pair):
    alice, *_ = pair
    async with rt.sessions() as session, session.begin():
        await session.execute(update(Currency).where(Currency.code == "USDT").values(enabled=False))
    data = await gql.data(TRANSFER, _vars(), token=alice["accessToken"])
    assert data["transfer"]["code"] == "CURRENCY_DISABLED"


async def test_unverified_sender_and_anonymous_are_refused(gql, rt, pair):
    _, _bob, *_ = pair
    from tests.support.documents import signed_in

    eve = await signed_in(gql, "eve@example.com")
    data = await gql.data(TRANSFER, _vars(), token=eve["accessToken"])
    assert data["transfer"]["code"] == "EMAIL_NOT_VERIFIED"
    anonymous = await gql.data(TRANSFER, _vars())
    assert anonymous["transfer"]["code"] == "UNAUTHENTICATED"


async def test_same_key_same_request_returns_the_original(gql, rt, pair):
    alice, _, _a, b = pair
    first = await gql.data(TRANSFER, _vars(), token=alice["accessToken"])
    again = await gql.data(TRANSFER, _vars(), token=alice["accessToken"])
    assert again == first
    assert (await balances(rt, b))["USDT"][0] == Decimal("25.5")


async def test_same_request_written_differently_is_still_the_same(gql, rt, pair):
    alice, _, _a, b = pair
    first = await gql.data(TRANSFER, _vars(), token=alice["accessToken"])
    again = await gql.data(
        TRANSFER, _vars(to="@BOB", amount="25.500", cur="usdt"), token=alice["accessToken"]
    )
    assert again == first
    assert (await balances(rt, b))["USDT"][0] == Decimal("25.5")


async def test_same_key_different_request_is_refused(gql, rt, pair):
    alice, _, _a, b = pair
    await gql.data(TRANSFER, _vars(), token=alice["accessToken"])
    other = await gql.data(TRANSFER, _vars(amount="1"), token=alice["accessToken"])
    assert other["transfer"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert (await balances(rt, b))["USDT"][0] == Decimal("25.5")


async def test_a_failed_attempt_does_not_burn_the_key(gql, rt, pair):
    alice, _, a, _b = pair
    poor = await gql.data(TRANSFER, _vars(amount="150"), token=alice["accessToken"])
    assert poor["transfer"]["code"] == "INSUFFICIENT_FUNDS"
    await fund(rt, a, "USDT", "100")
    ok = await gql.data(TRANSFER, _vars(amount="150"), token=alice["accessToken"])
    assert ok["transfer"]["__typename"] == "TransferPayload"


async def test_five_concurrent_duplicates_have_one_effect_and_identical_answers(gql, rt, pair):
    alice, _, _a, b = pair
    answers = await asyncio.gather(
        *(gql.data(TRANSFER, _vars(), token=alice["accessToken"]) for _ in range(5))
    )
    assert all(answer == answers[0] for answer in answers)
    assert answers[0]["transfer"]["__typename"] == "TransferPayload"
    assert (await balances(rt, b))["USDT"][0] == Decimal("25.5")


async def test_replay_after_restart_returns_the_original(gql, rt, pair, settings):
    alice, _, a, b = pair
    first = await gql.data(TRANSFER, _vars(), token=alice["accessToken"])
    from app.runtime import build_runtime

    fresh = build_runtime(
        settings, database_url=settings.database_url, redis_url=settings.redis_url
    )
    try:
        done = await transfers.transfer(
            rt=fresh,
            sender_id=a,
            recipient="bob",
            currency="USDT",
            amount=Decimal("25.5"),
            memo="lunch",
            idempotency_key="k-1",
        )
    finally:
        await fresh.aclose()
    original_id = base64.b64decode(first["transfer"]["transfer"]["id"]).decode()
    assert original_id == f"Transfer:{done.transfer.id}"
    assert done.sender_balance_after == Decimal("74.5")
    assert (await balances(rt, b))["USDT"][0] == Decimal("25.5")


async def test_wallets_show_every_currency_with_usd_value(gql, rt, pair):
    alice, *_ = pair
    wallets = (await gql.data(WALLETS, token=alice["accessToken"]))["me"]["wallets"]
    by_currency = {w["currency"]: w for w in wallets}
    assert set(by_currency) == {"USD", "USDT", "BTC", "ETH", "SOL"}
    assert Decimal(by_currency["USDT"]["available"]) == Decimal("100")
    assert Decimal(by_currency["USDT"]["usdValue"]) == Decimal("100.00")
    assert Decimal(by_currency["BTC"]["total"]) == 0


async def test_transfer_node_is_private_to_its_parties(gql, rt, pair):
    alice, bob, *_ = pair
    eve = await verified_user(gql, rt, "eve@example.com")
    data = await gql.data(TRANSFER, _vars(), token=alice["accessToken"])
    node_id = data["transfer"]["transfer"]["id"]
    query = "query($id: ID!) { node(id: $id) { ... on Transfer { amount } } }"
    assert (await gql.data(query, {"id": node_id}, token=bob["accessToken"]))["node"]
    assert (await gql.data(query, {"id": node_id}, token=eve["accessToken"]))["node"] is None


async def test_history_filters_and_pages(gql, rt, pair):
    alice, _, a, _ = pair
    await fund(rt, a, "BTC", "1")
    for i in range(3):
        await gql.data(TRANSFER, _vars(key=f"k{i}", amount="1"), token=alice["accessToken"])
    token = alice["accessToken"]
    usdt = (await gql.data(HISTORY, {"first": 2, "cur": "usdt"}, token=token))["transactions"]
    assert [e["node"]["currency"] for e in usdt["edges"]] == ["USDT", "USDT"]
    assert usdt["pageInfo"]["hasNextPage"] is True
    rest = await gql.data(
        HISTORY, {"first": 10, "cur": "USDT", "after": usdt["pageInfo"]["endCursor"]}, token=token
    )
    assert len(rest["transactions"]["edges"]) == 2  # one more transfer and the funding
    outs = await gql.data(HISTORY, {"first": 10, "kind": ["TRANSFER_OUT"]}, token=token)
    assert len(outs["transactions"]["edges"]) == 3


async def test_history_needs_sign_in(gql):
    body = await gql(HISTORY, {"first": 5})
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_random_concurrent_transfers_lose_nothing(gql, rt):
    """64 tasks, 5,000 transfers among 50 accounts in 3 currencies, A->B with B->A."""
    from sqlalchemy import insert

    from db.models import User

    async with rt.sessions() as session, session.begin():
        ids = list(
            (
                await session.scalars(
                    insert(User).returning(User.id),
                    [
                        {
                            "email": f"u{i}@load.test",
                            "display_name": f"U{i}",
                            "password_hash": "x",
                            "email_verified_at": rt.now(),
                        }
                        for i in range(50)
                    ],
                )
            ).all()
        )
    emails = {uid: f"u{i}@load.test" for i, uid in enumerate(ids)}
    currencies = ["USDT", "BTC", "ETH"]
    for uid in ids:
        for currency in currencies:
            await fund(rt, uid, currency, "1000")
    rng = random.Random(7)
    plan = []
    for n in range(2500):
        a, b = rng.sample(ids, 2)
        currency = rng.choice(currencies)
        amount = Decimal(rng.randint(1, 5000)) / 100
        plan += [(a, b, currency, amount, f"p{n}a"), (b, a, currency, amount, f"p{n}b")]
    queue = asyncio.Queue()
    for item in plan:
        queue.put_nowait(item)
    outcomes = {"ok": 0, "insufficient": 0}

    async def worker():
        while not queue.empty():
            sender, receiver, currency, amount, key = queue.get_nowait()
            try:
                await transfers.transfer(
                    rt=rt,
                    sender_id=sender,
                    recipient=emails[receiver],
                    currency=currency,
                    amount=amount,
                    memo=None,
                    idempotency_key=key,
                )
                outcomes["ok"] += 1
            except InsufficientFunds:
                outcomes["insufficient"] += 1

    await asyncio.gather(*(worker() for _ in range(64)))
    assert outcomes["ok"] + outcomes["insufficient"] == 5000
    assert outcomes["ok"] > 4500
    async with rt.sessions() as session:
        totals = dict(
            (
                await session.execute(
                    select(LedgerAccount.currency, func.sum(LedgerAccount.balance))
                    .where(LedgerAccount.user_id.in_(ids))
                    .group_by(LedgerAccount.currency)
                )
            ).all()
        )
    assert totals == {c: Decimal(50_000) for c in currencies}  # not one minor unit lost
