"""Exchange custody over GraphQL, with the real ccxt talking to the stand-ins: balances
held at a connected exchange mirrored into ledger accounts of their own on connect,
reconciled by syncs (exactly the difference posted, once however many run at once,
failures recorded with nothing written), closed on disconnect, shown in the portfolio
apart from the platform's custody, which mirroring never touches."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from app.core.errors import InvariantViolation
from app.exchanges.syncs import sync_due
from app.ledger import journal as ledger
from app.ledger.rules import AccountKind, AccountRef, move
from db.models import ExchangeConnection, ExchangeSync, JournalEntry, LedgerAccount, Posting
from db.session import in_transaction
from tests.exchanges.conftest import EXCHANGES
from tests.support import gid
from tests.support.documents import ERROR_FIELDS, signed_in
from tests.support.exchanges.keys import new_account
from tests.support.money import fund, user_id

D = Decimal
CONNECT = (
    "mutation($input: ConnectExchangeAccountInput!) { connectExchangeAccount(input: $input) {"
    " __typename ... on ConnectExchangeAccountPayload { exchangeAccount { id } }"
    f" {ERROR_FIELDS} }} }}"
)
SYNC_FIELDS = "trigger outcome errorCode changes { currency free used total totalAfter }"
SYNC = (
    "mutation($id: ID!) { syncExchangeAccount(id: $id) { __typename"
    f" ... on SyncExchangeAccountPayload {{ sync {{ {SYNC_FIELDS} }}"
    " exchangeAccount { mirroredBalances { currency free used total } } }"
    f" {ERROR_FIELDS} ... on Error {{ field }} }} }}"
)
DISCONNECT = (
    f"mutation($id: ID!) {{ disconnectExchangeAccount(id: $id) {{ __typename {ERROR_FIELDS} }} }}"
)
ACCOUNT = (
    "query($id: ID!) { node(id: $id) { ... on ExchangeAccount { syncedAt"
    " mirroredBalances { currency free used total usdValue asOf }"
    f" lastSync {{ {SYNC_FIELDS} }}"
    " syncs(first: 10) { edges { node { trigger outcome errorCode } } } } } }"
)
PORTFOLIO = (
    "{ me { wallets { currency total } portfolio { equity positions { currency quantity }"
    " exchangeHoldings { equity combinedEquity accounts { exchangeAccount { id }"
    " equity balances { currency total usdValue } } } } } }"
)
MINE = "{ me { exchangeAccounts { id mirroredBalances { currency total } lastSync { outcome } } } }"


async def _connect(gql, token: str, server, exchange: str = "binance"):
    account = server.add(new_account(exchange))
    variables = {"input": {"exchange": exchange, "label": f"my {exchange}",
                           "apiKey": account.api_key, "secret": account.secret,
                           "passphrase": account.passphrase}}  # fmt: skip
    result = (await gql.data(CONNECT, variables, token=token))["connectExchangeAccount"]
    assert result["__typename"] == "ConnectExchangeAccountPayload", result
    return account, result["exchangeAccount"]["id"]


async def _node(gql, token: str, node_id: str) -> dict:
    return (await gql.data(ACCOUNT, {"id": node_id}, token=token))["node"]


async def _sync(gql, token: str, node_id: str) -> dict:
    return (await gql.data(SYNC, {"id": node_id}, token=token))["syncExchangeAccount"]


def _totals(balances: list[dict]) -> dict[str, tuple[D, D, D]]:
    return {b["currency"]: (D(b["free"]), D(b["used"]), D(b["total"])) for b in balances}


async def _custody(rt) -> dict[tuple[int, str, str], D]:
    """Every exchange custody account's balance, by (connection, currency, kind)."""
    async with rt.sessions() as session:
        rows = await session.scalars(
            select(LedgerAccount).where(LedgerAccount.exchange_account_id.is_not(None))
        )
        return {(r.exchange_account_id, r.currency, r.kind): r.balance for r in rows}


async def _platform(rt) -> list[tuple]:
    """Every platform (and paper) ledger account's balance."""
    async with rt.sessions() as session:
        rows = await session.execute(
            select(LedgerAccount.user_id, LedgerAccount.currency, LedgerAccount.kind,
                   LedgerAccount.balance)
            .where(LedgerAccount.exchange_account_id.is_(None))
            .order_by(LedgerAccount.id)
        )  # fmt: skip
        return [tuple(r) for r in rows]


async def _entries(rt, kind: str) -> list[int]:
    async with rt.sessions() as session:
        return list(
            await session.scalars(
                select(JournalEntry.id).where(JournalEntry.kind == kind).order_by(JournalEntry.id)
            )
        )


async def _postings(rt, entry_id: int) -> dict[tuple[str, str], D]:
    async with rt.sessions() as session:
        rows = await session.execute(
            select(LedgerAccount.currency, LedgerAccount.kind, Posting.amount)
            .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
            .where(Posting.entry_id == entry_id)
        )
        return {(c, k): a.normalize() for c, k, a in rows}


@pytest.mark.parametrize("exchange", EXCHANGES)
async def test_connecting_mirrors_the_balances_into_custody_of_its_own(
    gql, rt, exchanges, exchange
):
    carol = await signed_in(gql)
    _, node_id = await _connect(gql, carol["accessToken"], exchanges[exchange], exchange)
    node = await _node(gql, carol["accessToken"], node_id)
    assert _totals(node["mirroredBalances"]) == {
        "BTC": (D("0.5"), D("0.25"), D("0.75")), "USDT": (D("1234.5"), 0, D("1234.5"))}  # fmt: skip
    assert node["mirroredBalances"][0]["usdValue"] == "67500.00"  # the reference price
    assert node["syncedAt"] is not None and node["mirroredBalances"][0]["asOf"] == node["syncedAt"]
    assert (node["lastSync"]["trigger"], node["lastSync"]["outcome"]) == ("CONNECT", "CHANGED")
    custody = await _custody(rt)
    [connection] = {key[0] for key in custody}
    assert custody == {
        (connection, "BTC", "EXCHANGE_FREE"): D("0.5"),
        (connection, "BTC", "EXCHANGE_USED"): D("0.25"),
        (connection, "BTC", "EXCHANGE_COUNTERPARTY"): D("-0.75"),
        (connection, "USDT", "EXCHANGE_FREE"): D("1234.5"),
        (connection, "USDT", "EXCHANGE_USED"): D(0),
        (connection, "USDT", "EXCHANGE_COUNTERPARTY"): D("-1234.5"),
    }
    async with rt.sessions() as session:
        assert await ledger.check_invariants(session) == []


async def test_a_change_at_the_exchange_posts_exactly_the_difference(gql, rt, exchanges):
    carol = await signed_in(gql)
    server = exchanges["kraken"]
    account, node_id = await _connect(gql, carol["accessToken"], server, "kraken")
    # an order filled at the exchange, the USDT withdrawn, ETH deposited
    server.set_balances(account, {"BTC": (D("0.7"), D("0.05")), "ETH": (D(2), D(0))})
    result = await _sync(gql, carol["accessToken"], node_id)
    assert result["__typename"] == "SyncExchangeAccountPayload", result
    assert result["sync"]["outcome"] == "CHANGED"
    assert {c["currency"]: (c["free"], c["used"], c["total"], c["totalAfter"])
            for c in result["sync"]["changes"]} == {
        "BTC": ("0.2", "-0.2", "0", "0.75"), "ETH": ("2", "0", "2", "2"),
        "USDT": ("-1234.5", "0", "-1234.5", "0")}  # fmt: skip
    assert _totals(result["exchangeAccount"]["mirroredBalances"]) == {
        "BTC": (D("0.7"), D("0.05"), D("0.75")), "ETH": (D(2), 0, D(2))}  # fmt: skip
    [_, entry] = await _entries(rt, "EXCHANGE_SYNC")
    assert await _postings(rt, entry) == {  # nothing for BTC's counterparty: its total held
        ("BTC", "EXCHANGE_FREE"): D("0.2"), ("BTC", "EXCHANGE_USED"): D("-0.2"),
        ("ETH", "EXCHANGE_FREE"): D(2), ("ETH", "EXCHANGE_COUNTERPARTY"): D(-2),
        ("USDT", "EXCHANGE_FREE"): D("-1234.5"), ("USDT", "EXCHANGE_COUNTERPARTY"): D("1234.5"),
    }  # fmt: skip
    again = await _sync(gql, carol["accessToken"], node_id)
    assert (again["sync"]["outcome"], again["sync"]["changes"]) == ("UNCHANGED", [])
    assert len(await _entries(rt, "EXCHANGE_SYNC")) == 2  # the connect's and the change's


async def test_syncs_at_once_post_the_difference_once(gql, rt, exchanges):
    carol = await signed_in(gql)
    server = exchanges["okx"]
    account, node_id = await _connect(gql, carol["accessToken"], server, "okx")
    server.set_balances(account, {"BTC": (D(1), D(0)), "USDT": (D("1234.5"), D(0))})
    results = await asyncio.gather(*(_sync(gql, carol["accessToken"], node_id) for _ in range(3)))
    outcomes = sorted(r["sync"]["outcome"] for r in results)
    assert outcomes.count("CHANGED") == 1, outcomes
    assert set(outcomes) <= {"CHANGED", "UNCHANGED", "SUPERSEDED"}
    assert len(await _entries(rt, "EXCHANGE_SYNC")) == 2
    custody = await _custody(rt)
    assert {k[1:]: v for k, v in custody.items() if k[1] == "BTC"} == {
        ("BTC", "EXCHANGE_FREE"): D(1), ("BTC", "EXCHANGE_USED"): D(0),
        ("BTC", "EXCHANGE_COUNTERPARTY"): D(-1)}  # fmt: skip


async def test_mirroring_leaves_the_platform_s_balances_and_totals_alone(gql, rt, exchanges):
    carol = await signed_in(gql)
    await fund(rt, await user_id(rt, "carol@example.com"), "USDT", "100")
    before = await _platform(rt)
    token = carol["accessToken"]
    platform = (await gql.data(PORTFOLIO, token=token))["me"]
    account, node_id = await _connect(gql, token, exchanges["bybit"], "bybit")
    exchanges["bybit"].set_balances(account, {"BTC": (D(1), D(0)), "USDT": (D(50), D(0))})
    assert (await _sync(gql, token, node_id))["sync"]["outcome"] == "CHANGED"
    assert await _platform(rt) == before
    seen = (await gql.data(PORTFOLIO, token=token))["me"]
    assert seen["wallets"] == platform["wallets"]  # USDT 100: never the exchange's 50
    assert seen["portfolio"]["equity"] == platform["portfolio"]["equity"] == "100.00"
    assert seen["portfolio"]["positions"] == platform["portfolio"]["positions"]
    held = seen["portfolio"]["exchangeHoldings"]
    assert (held["equity"], held["combinedEquity"]) == ("90050.00", "90150.00")
    [holding] = held["accounts"]
    assert holding["exchangeAccount"]["id"] == node_id
    assert {b["currency"]: (b["total"], b["usdValue"]) for b in holding["balances"]} == {
        "BTC": ("1.00000000", "90000.00"), "USDT": ("50.000000", "50.00")}  # fmt: skip


async def test_no_platform_entry_can_reach_a_mirror_account(gql, rt, exchanges):
    carol = await signed_in(gql)
    uid = await user_id(rt, "carol@example.com")
    await fund(rt, uid, "BTC", "1")
    await _connect(gql, carol["accessToken"], exchanges["binance"])
    [connection] = {key[0] for key in await _custody(rt)}
    mirror = AccountRef("BTC", AccountKind.EXCHANGE_FREE, exchange_account_id=connection)
    before = (await _platform(rt), await _custody(rt))
    attempts = [
        ("CORRECTION", move(D(1), ledger.user_account(uid, "BTC"), mirror)),
        ("TRANSFER", move(D(1), mirror, ledger.user_account(uid, "BTC"))),
        ("EXCHANGE_SYNC", move(D(1), ledger.user_account(uid, "BTC"), mirror)),
        ("EXCHANGE_SYNC", move(D(1), mirror, ledger.system_account("BTC", AccountKind.EXTERNAL))),
    ]
    for kind, legs in attempts:
        with pytest.raises(InvariantViolation):
            await in_transaction(
                rt.sessions, lambda s, k=kind, parts=legs: ledger.post(s, kind=k, legs=parts)
            )
    counterparty = AccountRef(
        "BTC", AccountKind.EXCHANGE_COUNTERPARTY, exchange_account_id=connection
    )
    with pytest.raises(InvariantViolation, match="custody"):  # only through a sync
        await in_transaction(
            rt.sessions,
            lambda s: ledger.post(s, kind="EXCHANGE_SYNC", legs=move(D(1), counterparty, mirror)),
        )
    assert (await _platform(rt), await _custody(rt)) == before


async def test_disconnecting_closes_the_mirror_and_keeps_its_history(gql, rt, exchanges):
    carol = await signed_in(gql)
    token = carol["accessToken"]
    _, node_id = await _connect(gql, token, exchanges["coinbase"], "coinbase")
    done = await gql.data(DISCONNECT, {"id": node_id}, token=token)
    assert done["disconnectExchangeAccount"]["__typename"] == "ExchangeAccountPayload"
    custody = await _custody(rt)
    assert len(custody) == 6 and set(custody.values()) == {D(0)}  # the accounts stay, at zero
    [opened] = await _entries(rt, "EXCHANGE_SYNC")
    [closed] = await _entries(rt, "EXCHANGE_CLOSE")
    assert await _postings(rt, closed) == {k: -v for k, v in (await _postings(rt, opened)).items()}
    async with rt.sessions() as session:
        outcomes = list(
            await session.scalars(select(ExchangeSync.outcome).order_by(ExchangeSync.id))
        )
    assert outcomes == ["CHANGED", "CLOSED"]
    seen = (await gql.data(PORTFOLIO, token=token))["me"]["portfolio"]["exchangeHoldings"]
    assert seen == {"equity": "0", "combinedEquity": "0", "accounts": []}  # as usd() shows 0
    assert (await _sync(gql, token, node_id))["__typename"] == "NotFound"


@pytest.mark.parametrize(
    ("failure", "typename", "code"),
    [
        ("down", "ExchangeUnavailable", "EXCHANGE_UNAVAILABLE"),
        ("rate limited", "ExchangeRateLimited", "EXCHANGE_RATE_LIMITED"),
        ("key revoked", "ExchangeKeyInvalid", "EXCHANGE_KEY_INVALID"),
        ("negative balance", "ExchangeRejected", "EXCHANGE_REJECTED"),
    ],
)
async def test_an_exchange_failure_is_recorded_and_nothing_is_written(
    gql, rt, exchanges, failure, typename, code
):
    carol = await signed_in(gql)
    token = carol["accessToken"]
    server = exchanges["binance"]
    account, node_id = await _connect(gql, token, server)
    before = (await _node(gql, token, node_id), await _custody(rt))
    server.set_balances(account, {"BTC": (D(9), D(0))})  # would post, were it read
    if failure == "down":
        server.fail_next(503, 503, 503)
    elif failure == "rate limited":
        server.fail_next(429)
    elif failure == "key revoked":
        server.accounts.pop(account.api_key)
    else:
        server.set_balances(account, {"BTC": (D(-1), D(0))})
    result = await _sync(gql, token, node_id)
    assert (result["__typename"], result["code"]) == (typename, code)
    after = await _node(gql, token, node_id)
    assert after["lastSync"] == {"trigger": "MANUAL", "outcome": "FAILED", "errorCode": code,
                                 "changes": []}  # fmt: skip
    assert after["mirroredBalances"] == before[0]["mirroredBalances"]
    assert after["syncedAt"] == before[0]["syncedAt"]
    assert await _custody(rt) == before[1]
    assert len(await _entries(rt, "EXCHANGE_SYNC")) == 1  # the connect's
    edges = after["syncs"]["edges"]
    assert [e["node"]["outcome"] for e in edges] == ["FAILED", "CHANGED"]  # newest first


@pytest.mark.parametrize(
    "bad_id",
    ["", "nonsense", "x\x00y", gid("ExchangeAccount", 0), gid("User", 1),
     gid("ExchangeAccount", 2**63), gid("ExchangeAccount", -1), "A" * 10_000],
)  # fmt: skip
async def test_hostile_ids_are_typed_errors_that_change_nothing(gql, rt, exchanges, bad_id):
    carol = await signed_in(gql)
    await _connect(gql, carol["accessToken"], exchanges["binance"])
    body = await gql(SYNC, {"id": bad_id}, token=carol["accessToken"])
    if "\x00" in bad_id:  # the gateway refuses NUL bytes in any argument, typed
        assert [e["extensions"]["code"] for e in body["errors"]] == ["VALIDATION_FAILED"]
    else:
        assert "errors" not in body, body
        result = body["data"]["syncExchangeAccount"]
        assert result["__typename"] in {"NotFound", "ValidationFailed"}
    async with rt.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(ExchangeSync)) == 1


async def test_another_user_s_account_cannot_be_synced_nor_seen(gql, rt, exchanges):
    carol = await signed_in(gql)
    dave = await signed_in(gql, "dave@example.com")
    await fund(rt, await user_id(rt, "dave@example.com"), "USDT", "5")
    _, node_id = await _connect(gql, carol["accessToken"], exchanges["binance"])
    assert (await _sync(gql, dave["accessToken"], node_id))["__typename"] == "NotFound"
    seen = (await gql.data(PORTFOLIO, token=dave["accessToken"]))["me"]["portfolio"]
    assert seen["exchangeHoldings"]["accounts"] == []
    assert seen["exchangeHoldings"]["combinedEquity"] == seen["equity"] == "5.00"
    async with rt.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(ExchangeSync)) == 1


async def test_syncing_now_is_rate_limited_per_user(gql, rt, exchanges):
    carol = await signed_in(gql)
    _, node_id = await _connect(gql, carol["accessToken"], exchanges["binance"])
    allowed = rt.settings.exchange_sync_requests_per_minute
    for _ in range(allowed):
        assert (await _sync(gql, carol["accessToken"], node_id))["sync"]["outcome"] == "UNCHANGED"
    refused = await _sync(gql, carol["accessToken"], node_id)
    assert refused["__typename"] == "RateLimited"
    async with rt.sessions() as session:
        count = await session.scalar(select(func.count()).select_from(ExchangeSync))
    assert count == 1 + allowed  # the refused one read nothing, recorded nothing


async def test_the_periodic_job_reconciles_the_connections_that_are_due(gql, rt, exchanges):
    carol = await signed_in(gql)
    server = exchanges["binance"]
    account, node_id = await _connect(gql, carol["accessToken"], server)
    server.set_balances(account, {"BTC": (D("0.5"), D("0.25")), "USDT": (D(1000), D(0))})
    assert await sync_due(rt) == 0  # synced when connected: not due yet
    now = rt.now()
    after = timedelta(seconds=rt.settings.exchange_sync_after_seconds + 1)
    rt.clock = lambda: now + after
    assert await sync_due(rt) == 1
    assert await sync_due(rt) == 0  # just attempted: not due again yet
    node = await _node(gql, carol["accessToken"], node_id)
    assert (node["lastSync"]["trigger"], node["lastSync"]["outcome"]) == ("SCHEDULED", "CHANGED")
    assert [c["currency"] for c in node["lastSync"]["changes"]] == ["USDT"]
    rt.clock = lambda: now + 2 * after
    assert await sync_due(rt) == 1
    node = await _node(gql, carol["accessToken"], node_id)
    assert node["lastSync"]["outcome"] == "UNCHANGED"


async def test_the_accounts_mirrors_cost_the_same_statements_however_many(
    gql, rt, exchanges, sql_statements
):
    carol = await signed_in(gql)
    await _connect(gql, carol["accessToken"], exchanges["binance"])
    sql_statements.reset()
    await gql.data(MINE, token=carol["accessToken"])
    one = sql_statements.count
    for exchange in ("kraken", "okx", "bybit"):
        await _connect(gql, carol["accessToken"], exchanges[exchange], exchange)
    sql_statements.reset()
    mine = (await gql.data(MINE, token=carol["accessToken"]))["me"]["exchangeAccounts"]
    assert len(mine) == 4 and all(m["mirroredBalances"] for m in mine)
    assert sql_statements.count == one


async def test_the_job_leaves_suspended_and_disconnected_accounts_alone(gql, rt, exchanges):
    carol = await signed_in(gql)
    token = carol["accessToken"]
    await _connect(gql, token, exchanges["binance"])  # suspended below
    _, gone = await _connect(gql, token, exchanges["kraken"], "kraken")
    await gql.data(DISCONNECT, {"id": gone}, token=token)
    async with rt.sessions() as session, session.begin():
        await session.execute(
            update(ExchangeConnection)
            .where(ExchangeConnection.status == "ACTIVE")
            .values(status="SUSPENDED", last_check_code="EXCHANGE_KEY_INVALID")
        )
    now = rt.now()
    rt.clock = lambda: now + timedelta(seconds=rt.settings.exchange_sync_after_seconds + 1)
    assert await sync_due(rt) == 0
    async with rt.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(ExchangeSync)) == 3


async def test_currencies_the_platform_does_not_know_are_recorded_not_mirrored(gql, rt, exchanges):
    carol = await signed_in(gql)
    server = exchanges["binance"]
    account, node_id = await _connect(gql, carol["accessToken"], server)
    server.set_balances(account, {"BTC": (D("0.5"), D("0.25")), "DOGE": (D(10), D(0))})
    result = await _sync(gql, carol["accessToken"], node_id)
    assert [c["currency"] for c in result["sync"]["changes"]] == ["USDT"]  # withdrawn
    node = await _node(gql, carol["accessToken"], node_id)
    assert [b["currency"] for b in node["mirroredBalances"]] == ["BTC"]
    async with rt.sessions() as session:
        last = await session.scalar(select(ExchangeSync).order_by(ExchangeSync.id.desc()).limit(1))
    assert last.unmirrored == {"DOGE": "10"}


async def test_a_connect_whose_balances_the_ledger_cannot_hold_mirrors_nothing(gql, rt, exchanges):
    """The key is fine, so the account connects; its reading is refused whole, in the
    transaction that would have mirrored it: a FAILED sync and no custody account."""
    carol = await signed_in(gql)
    server = exchanges["bybit"]
    account = server.add(
        new_account("bybit", balances={"BTC": (D(1), D(0)), "USDT": (D(-5), D(0))})
    )
    variables = {"input": {"exchange": "bybit", "label": "odd", "apiKey": account.api_key,
                           "secret": account.secret}}  # fmt: skip
    result = await gql.data(CONNECT, variables, token=carol["accessToken"])
    node_id = result["connectExchangeAccount"]["exchangeAccount"]["id"]
    node = await _node(gql, carol["accessToken"], node_id)
    assert node["lastSync"] == {"trigger": "CONNECT", "outcome": "FAILED",
                                "errorCode": "EXCHANGE_REJECTED", "changes": []}  # fmt: skip
    assert (node["mirroredBalances"], node["syncedAt"]) == ([], None)
    assert await _custody(rt) == {}
    assert await _entries(rt, "EXCHANGE_SYNC") == []
