"""Staking over GraphQL: the catalogue, quotes, stake / unstake, me { stakes
stakingRewards }, admin products, typed errors that change nothing, idempotency,
privacy and statement counts."""

from __future__ import annotations

import asyncio
import base64
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from app.staking import staking
from db.models import Currency, OutboxEvent, Stake, StakingProduct, User
from tests.support.documents import login, register
from tests.support.money import fund, user_id, verified_user
from tests.support.staking import Clock, balance, product_id, run_job

PRODUCTS = (
    "query($asset: String, $closed: Boolean! = false) {"
    " stakingProducts(asset: $asset, includeClosed: $closed) {"
    " id asset kind lockDays apy apr dailyRate nextApy nextApyFrom compounding minAmount"
    " maxPerUser capacity stakedTotal remainingCapacity status } }"
)
QUOTE = (
    "query($p: ID!, $a: Decimal!) { stakingQuote(productId: $p, amount: $a) {"
    " amount apy apr dailyRate valueDate maturesAt perDay perTerm perYear product { asset } } }"
)
ERROR = "... on Error { code message } "
FIELDS = (
    "... on ValidationFailed { field } ... on NotFound { field }"
    " ... on BelowStakingMinimum { field } ... on StakingLimitExceeded { field }"
    " ... on StakingCapacityExceeded { field } ... on InsufficientFunds { field }"
)
STAKE_FIELDS = (
    "id currency principal accruedRewards currentTermRewards status autoRenew startedAt"
    " termStartedOn maturesAt product { asset kind lockDays apy }"
)
STAKE = (
    "mutation($p: ID!, $a: Decimal!, $key: String!, $renew: Boolean! = false) {"
    " stake(productId: $p, amount: $a, idempotencyKey: $key, autoRenew: $renew) {"
    f" __typename ... on StakePayload {{ stake {{ {STAKE_FIELDS} }} }} {ERROR} {FIELDS} }} }}"
)
UNSTAKE = (
    "mutation($s: ID!, $a: Decimal!, $key: String!, $penalty: Boolean! = false) {"
    " unstake(stakeId: $s, amount: $a, idempotencyKey: $key, acceptPenalty: $penalty) {"
    " __typename ... on UnstakePayload { returned forfeited stake { id principal status } }"
    f" {ERROR} ... on UnstakeExceedsStake {{ field }} ... on PenaltyNotAccepted {{ field }} }} }}"
)
AUTO_RENEW = (
    "mutation($s: ID!, $on: Boolean!) { setStakeAutoRenew(stakeId: $s, autoRenew: $on) {"
    f" __typename ... on StakePayload {{ stake {{ autoRenew }} }} {ERROR} }} }}"
)
ME = (
    "query($first: Int! = 20, $after: String) { me { stakes { id product { asset kind }"
    " principal accruedRewards status startedAt maturesAt autoRenew }"
    " stakingRewards(first: $first, after: $after) { edges { cursor node { amount currency"
    " accrualDate principal apy compounded stake { id } } } pageInfo { hasNextPage endCursor } }"
    " } }"
)
CREATE_PRODUCT = (
    "mutation($asset: String!, $kind: StakingProductKind!, $days: Int, $apy: Decimal!,"
    " $min: Decimal!, $max: Decimal!, $cap: Decimal!, $comp: Boolean! = false) {"
    " createStakingProduct(asset: $asset, kind: $kind, lockDays: $days, apy: $apy,"
    " minAmount: $min, maxPerUser: $max, capacity: $cap, compounding: $comp) {"
    " __typename ... on StakingProductPayload { product { id asset kind lockDays apy status } }"
    f" {ERROR} ... on ValidationFailed {{ field }} }} }}"
)
UPDATE_PRODUCT = (
    "mutation($p: ID!, $apy: Decimal, $cap: Decimal, $max: Decimal,"
    " $status: StakingProductStatus) {"
    " updateStakingProduct(productId: $p, apy: $apy, capacity: $cap, maxPerUser: $max,"
    " status: $status) { __typename ... on StakingProductPayload { product { id apy nextApy"
    f" nextApyFrom capacity status }} }} {ERROR} ... on ValidationFailed {{ field }} }} }}"
)


def gid(type_name: str, pk: int) -> str:
    return base64.b64encode(f"{type_name}:{pk}".encode()).decode()


def pk(global_id: str) -> int:
    return int(base64.b64decode(global_id).decode().split(":")[1])


@pytest.fixture(autouse=True)
async def _staking_invariants(rt):
    yield
    async with rt.sessions() as session:
        problems = await staking.check_invariants(session)
    assert problems == [], "staking invariants broken:\n" + "\n".join(problems)


@pytest.fixture
async def alice(gql, rt):
    auth = await verified_user(gql, rt, "alice@example.com", handle="alice")
    uid = await user_id(rt, "alice@example.com")
    await fund(rt, uid, "USDT", "5000")
    return auth["accessToken"], uid


async def _admin_token(gql, rt) -> str:
    await register(gql, "root@example.com")
    async with rt.sessions() as session, session.begin():
        await session.execute(
            update(User).where(User.email == "root@example.com").values(role="ADMIN")
        )
    return (await login(gql, "root@example.com"))["accessToken"]


async def _snapshot(rt, uid: int) -> tuple:
    async with rt.sessions() as session:
        stakes = await session.scalar(select(func.count()).select_from(Stake))
        outbox = await session.scalar(select(func.count()).select_from(OutboxEvent))
        totals = (await session.scalars(select(StakingProduct.staked_total))).all()
    return (
        await balance(rt, uid, "USDT"),
        await balance(rt, uid, "USDT", "STAKED"),
        stakes,
        outbox,
        sorted(totals),
    )


async def test_catalogue_per_asset_with_apy_and_apr(gql, rt):
    data = await gql.data(PRODUCTS, {"asset": "usdt"})
    products = data["stakingProducts"]
    assert [(p["kind"], p["lockDays"]) for p in products] == [
        ("FLEXIBLE", None),
        ("LOCKED", 30),
        ("LOCKED", 60),
        ("LOCKED", 90),
        ("LOCKED", 120),
    ]
    flexible = products[0]
    assert (flexible["apy"], flexible["apr"]) == ("4", "3.9223")  # 365 * 0.00010745978...
    assert flexible["dailyRate"] == "0.000107459782027902551934834476"
    assert flexible["remainingCapacity"] == flexible["capacity"] == "50000000"
    every = (await gql.data(PRODUCTS))["stakingProducts"]
    assert {p["asset"] for p in every} == {"USDT", "BTC", "ETH", "SOL"}
    assert all(Decimal(2) <= Decimal(p["apy"]) <= Decimal(18) for p in every)


async def test_quote_projects_day_term_and_year(gql, rt):
    locked = gid("StakingProduct", await product_id(rt, "USDT", 30))
    quote = (await gql.data(QUOTE, {"p": locked, "a": "1000"}))["stakingQuote"]
    assert (quote["perDay"], quote["perTerm"], quote["perYear"]) == (
        "0.159653",
        "4.789590",  # 30 * 0.159653
        "58.273345",  # 365 * 0.159653
    )
    assert quote["product"] == {"asset": "USDT"}
    body = await gql(QUOTE, {"p": locked, "a": "1"})
    assert body["errors"][0]["extensions"]["code"] == "BELOW_STAKING_MINIMUM"
    body = await gql(QUOTE, {"p": gid("StakingProduct", 9999), "a": "100"})
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_stake_then_me_shows_it_and_unstake_returns_it(gql, rt, alice):
    token, uid = alice
    flexible = gid("StakingProduct", await product_id(rt, "USDT"))
    data = await gql.data(STAKE, {"p": flexible, "a": "1000", "key": "s1"}, token=token)
    created = data["stake"]
    assert created["__typename"] == "StakePayload", created
    assert created["stake"]["principal"] == "1000.000000"
    assert created["stake"]["product"] == {
        "asset": "USDT",
        "kind": "FLEXIBLE",
        "lockDays": None,
        "apy": "4",
    }
    assert created["stake"]["maturesAt"] is None
    assert await balance(rt, uid, "USDT") == Decimal(4000)
    assert await balance(rt, uid, "USDT", "STAKED") == Decimal(1000)

    mine = (await gql.data(ME, token=token))["me"]
    assert [s["id"] for s in mine["stakes"]] == [created["stake"]["id"]]
    assert mine["stakes"][0]["status"] == "ACTIVE"

    out = await gql.data(
        UNSTAKE, {"s": created["stake"]["id"], "a": "250", "key": "u1"}, token=token
    )
    assert out["unstake"]["returned"] == "250.000000"
    assert out["unstake"]["forfeited"] == "0.000000"
    assert out["unstake"]["stake"]["principal"] == "750.000000"
    assert await balance(rt, uid, "USDT") == Decimal(4250)


async def test_rewards_connection_pages_newest_first(gql, rt, alice):
    token, uid = alice
    flexible = gid("StakingProduct", await product_id(rt, "USDT"))
    await gql.data(STAKE, {"p": flexible, "a": "1000", "key": "s1"}, token=token)
    clock = Clock(rt.now() + timedelta(days=4))
    rt.clock = clock
    await run_job(rt)  # three finished days (the stake's day does not count)
    first = (await gql.data(ME, {"first": 2}, token=token))["me"]["stakingRewards"]
    assert [e["node"]["amount"] for e in first["edges"]] == ["0.107459", "0.107459"]
    dates = [e["node"]["accrualDate"] for e in first["edges"]]
    assert dates == sorted(dates, reverse=True)
    assert first["pageInfo"]["hasNextPage"] is True
    rest = (await gql.data(ME, {"first": 2, "after": first["pageInfo"]["endCursor"]}, token=token))[
        "me"
    ]["stakingRewards"]
    assert len(rest["edges"]) == 1 and rest["pageInfo"]["hasNextPage"] is False
    assert rest["edges"][0]["node"]["compounded"] is False
    me = (await gql.data(ME, token=token))["me"]
    assert me["stakes"][0]["accruedRewards"] == "0.322377"
    assert await balance(rt, uid, "USDT") == Decimal(4000) + Decimal("0.322377")


@pytest.fixture
async def small_product(rt, gql):
    """USDT, flexible, 5 %, min 10, max 100 per user, capacity 150."""
    token = await _admin_token(gql, rt)
    data = await gql.data(
        CREATE_PRODUCT,
        {"asset": "USDT", "kind": "FLEXIBLE", "apy": "5", "min": "10", "max": "100", "cap": "150"},
        token=token,
    )
    return data["createStakingProduct"]["product"]["id"], token


@pytest.mark.parametrize(
    ("variables", "code", "field"),
    [
        ({"a": "5"}, "BELOW_STAKING_MINIMUM", "amount"),
        ({"a": "100.5"}, "STAKING_LIMIT_EXCEEDED", "amount"),
        ({"a": "60"}, "STAKING_CAPACITY_EXCEEDED", "amount"),  # 100 of 150 taken by bob
        ({"a": "10.0000001"}, "VALIDATION_FAILED", "amount"),
        ({"a": "-10"}, "VALIDATION_FAILED", "amount"),
        ({"p": "nonsense"}, "VALIDATION_FAILED", "productId"),
        ({"p": gid("User", 1)}, "VALIDATION_FAILED", "productId"),
        ({"p": gid("StakingProduct", 9999)}, "NOT_FOUND", "productId"),
        ({"key": ""}, "VALIDATION_FAILED", "idempotencyKey"),
        ({"closed": True}, "STAKING_PRODUCT_CLOSED", None),
    ],
)
async def test_bad_stakes_change_nothing(gql, rt, alice, small_product, variables, code, field):
    token, uid = alice
    product, admin = small_product
    variables = dict(variables)
    bob = await verified_user(gql, rt, "bob@example.com")
    await fund(rt, await user_id(rt, "bob@example.com"), "USDT", "100")
    base = {"p": product, "a": "10", "key": "k1"}
    taken = await gql.data(STAKE, {**base, "a": "100"}, token=bob["accessToken"])
    assert taken["stake"]["__typename"] == "StakePayload"
    if variables.pop("closed", False):
        await gql.data(UPDATE_PRODUCT, {"p": product, "status": "CLOSED"}, token=admin)
    before = await _snapshot(rt, uid)
    data = await gql.data(STAKE, {**base, **variables}, token=token)
    assert data["stake"]["code"] == code, data
    assert data["stake"].get("field") == field
    assert await _snapshot(rt, uid) == before


async def test_insufficient_funds_and_anonymous(gql, rt, alice):
    token, uid = alice
    flexible = gid("StakingProduct", await product_id(rt, "USDT"))
    before = await _snapshot(rt, uid)
    poor = await gql.data(STAKE, {"p": flexible, "a": "5000.000001", "key": "k"}, token=token)
    assert poor["stake"]["code"] == "INSUFFICIENT_FUNDS"
    anonymous = await gql.data(STAKE, {"p": flexible, "a": "100", "key": "k"})
    assert anonymous["stake"]["code"] == "UNAUTHENTICATED"
    async with rt.sessions() as session, session.begin():
        await session.execute(update(Currency).where(Currency.code == "USDT").values(enabled=False))
    disabled = await gql.data(STAKE, {"p": flexible, "a": "100", "key": "k2"}, token=token)
    assert disabled["stake"]["code"] == "CURRENCY_DISABLED"
    assert await _snapshot(rt, uid) == before


async def test_bad_unstakes_change_nothing(gql, rt, alice):
    token, uid = alice
    locked = gid("StakingProduct", await product_id(rt, "USDT", 30))
    flexible = gid("StakingProduct", await product_id(rt, "USDT"))
    lock = (await gql.data(STAKE, {"p": locked, "a": "1000", "key": "a"}, token=token))["stake"]
    flex = (await gql.data(STAKE, {"p": flexible, "a": "100", "key": "b"}, token=token))["stake"]
    lock_id, flex_id = lock["stake"]["id"], flex["stake"]["id"]
    await gql.data(UNSTAKE, {"s": flex_id, "a": "100", "key": "c"}, token=token)
    eve = await verified_user(gql, rt, "eve@example.com")

    cases = [
        ({"s": lock_id, "a": "1000.01"}, token, "UNSTAKE_EXCEEDS_STAKE"),
        ({"s": lock_id, "a": "1000"}, token, "PENALTY_NOT_ACCEPTED"),
        ({"s": flex_id, "a": "1"}, token, "STAKE_NOT_ACTIVE"),
        ({"s": lock_id, "a": "1"}, eve["accessToken"], "NOT_FOUND"),
        ({"s": gid("StakingProduct", 1), "a": "1"}, token, "VALIDATION_FAILED"),
        ({"s": lock_id, "a": "0"}, token, "VALIDATION_FAILED"),
    ]
    for n, (variables, who, code) in enumerate(cases):
        before = await _snapshot(rt, uid)
        data = await gql.data(UNSTAKE, {**variables, "key": f"bad{n}"}, token=who)
        assert data["unstake"]["code"] == code, (variables, data)
        assert await _snapshot(rt, uid) == before


async def test_same_key_replays_and_a_different_request_is_refused(gql, rt, alice):
    token, uid = alice
    flexible = gid("StakingProduct", await product_id(rt, "USDT"))
    variables = {"p": flexible, "a": "300", "key": "same"}
    answers = await asyncio.gather(*(gql.data(STAKE, variables, token=token) for _ in range(4)))
    assert all(a == answers[0] for a in answers)
    assert await balance(rt, uid, "USDT", "STAKED") == Decimal(300)
    other = await gql.data(STAKE, {**variables, "a": "301"}, token=token)
    assert other["stake"]["code"] == "IDEMPOTENCY_KEY_REUSED"

    stake_id = answers[0]["stake"]["stake"]["id"]
    out = {"s": stake_id, "a": "100", "key": "out"}
    first = await gql.data(UNSTAKE, out, token=token)
    assert await gql.data(UNSTAKE, out, token=token) == first
    assert await balance(rt, uid, "USDT", "STAKED") == Decimal(200)


async def test_locked_stake_auto_renew_can_be_switched(gql, rt, alice):
    token, _ = alice
    locked = gid("StakingProduct", await product_id(rt, "USDT", 90))
    data = await gql.data(STAKE, {"p": locked, "a": "500", "key": "r", "renew": True}, token=token)
    created = data["stake"]["stake"]
    assert created["autoRenew"] is True and created["maturesAt"] is not None
    off = await gql.data(AUTO_RENEW, {"s": created["id"], "on": False}, token=token)
    assert off["setStakeAutoRenew"]["stake"]["autoRenew"] is False
    flexible = gid("StakingProduct", await product_id(rt, "USDT"))
    flex = await gql.data(STAKE, {"p": flexible, "a": "50", "key": "f", "renew": True}, token=token)
    assert flex["stake"]["stake"]["autoRenew"] is False  # flexible stakes never renew
    refused = await gql.data(
        AUTO_RENEW, {"s": flex["stake"]["stake"]["id"], "on": True}, token=token
    )
    assert refused["setStakeAutoRenew"]["code"] == "VALIDATION_FAILED"


async def test_stake_nodes_are_private(gql, rt, alice):
    token, _ = alice
    flexible = gid("StakingProduct", await product_id(rt, "USDT"))
    data = await gql.data(STAKE, {"p": flexible, "a": "100", "key": "n"}, token=token)
    node_id = data["stake"]["stake"]["id"]
    query = "query($id: ID!) { node(id: $id) { ... on Stake { principal } } }"
    assert (await gql.data(query, {"id": node_id}, token=token))["node"] == {
        "principal": "100.000000"
    }
    eve = await verified_user(gql, rt, "eve@example.com")
    assert (await gql.data(query, {"id": node_id}, token=eve["accessToken"]))["node"] is None
    product = "query($id: ID!) { node(id: $id) { ... on StakingProduct { asset } } }"
    assert (await gql.data(product, {"id": flexible}))["node"] == {"asset": "USDT"}


async def test_admin_creates_and_updates_products(gql, rt, alice):
    token, _ = alice
    admin = await _admin_token(gql, rt)
    variables = {
        "asset": "ETH",
        "kind": "LOCKED",
        "days": 60,
        "apy": "6.25",
        "min": "0.05",
        "max": "10",
        "cap": "100",
    }
    refused = await gql.data(CREATE_PRODUCT, variables, token=token)
    assert refused["createStakingProduct"]["code"] == "FORBIDDEN"
    created = (await gql.data(CREATE_PRODUCT, variables, token=admin))["createStakingProduct"]
    product = created["product"]
    assert (product["kind"], product["lockDays"], product["apy"]) == ("LOCKED", 60, "6.25")

    for bad, field in [
        ({"days": 45}, "lockDays"),
        ({"apy": "18.5"}, "apy"),
        ({"apy": "1"}, "apy"),
        ({"min": "20"}, "maxPerUser"),
        ({"cap": "5"}, "capacity"),
        ({"min": "0.000000001"}, "minAmount"),  # ETH has 8 decimals
    ]:
        data = await gql.data(CREATE_PRODUCT, {**variables, **bad}, token=admin)
        assert data["createStakingProduct"]["field"] == field, (bad, data)
    unknown = await gql.data(CREATE_PRODUCT, {**variables, "asset": "DOGE"}, token=admin)
    assert unknown["createStakingProduct"]["code"] == "UNKNOWN_CURRENCY"

    changed = await gql.data(UPDATE_PRODUCT, {"p": product["id"], "apy": "7"}, token=admin)
    updated = changed["updateStakingProduct"]["product"]
    assert (updated["apy"], updated["nextApy"]) == ("6.25", "7")  # from tomorrow
    assert updated["nextApyFrom"] == (rt.now().date() + timedelta(days=1)).isoformat()
    quote = (await gql.data(QUOTE, {"p": product["id"], "a": "1"}))["stakingQuote"]
    assert quote["apy"] == "7"  # a stake made now first earns tomorrow
    closed = await gql.data(UPDATE_PRODUCT, {"p": product["id"], "status": "CLOSED"}, token=admin)
    assert closed["updateStakingProduct"]["product"]["status"] == "CLOSED"
    listed = (await gql.data(PRODUCTS, {"asset": "ETH"}))["stakingProducts"]
    assert product["id"] not in [p["id"] for p in listed]
    with_closed = (await gql.data(PRODUCTS, {"asset": "ETH", "closed": True}))["stakingProducts"]
    assert product["id"] in [p["id"] for p in with_closed]
    bad = await gql.data(UPDATE_PRODUCT, {"p": product["id"], "max": "1000"}, token=admin)
    assert bad["updateStakingProduct"]["field"] == "capacity"
    missing = await gql.data(UPDATE_PRODUCT, {"p": gid("StakingProduct", 9999)}, token=admin)
    assert missing["updateStakingProduct"]["code"] == "NOT_FOUND"
    user = await gql.data(UPDATE_PRODUCT, {"p": product["id"], "apy": "3"}, token=token)
    assert user["updateStakingProduct"]["code"] == "FORBIDDEN"


async def test_me_stakes_cost_a_constant_number_of_statements(gql, rt, alice, sql_statements):
    token, uid = alice
    await fund(rt, uid, "SOL", "100")
    flexible = gid("StakingProduct", await product_id(rt, "USDT"))
    await gql.data(STAKE, {"p": flexible, "a": "10", "key": "q0"}, token=token)
    sql_statements.reset()
    await gql.data(ME, token=token)
    one = sql_statements.count
    for n, (asset, days) in enumerate([("USDT", 30), ("USDT", 60), ("SOL", None), ("SOL", 90)]):
        product = gid("StakingProduct", await product_id(rt, asset, days))
        await gql.data(STAKE, {"p": product, "a": "10", "key": f"q{n + 1}"}, token=token)
    sql_statements.reset()
    data = await gql.data(ME, token=token)
    assert len(data["me"]["stakes"]) == 5
    assert sql_statements.count == one  # stakes, products and rewards: one query each
