"""Amounts of a currency come back at that currency's scale, as exchanges show them:
USDT (6 places) "1000.000000", BTC (8) "0.50000000". Rates and percentages are not
amounts and keep their own digits."""

from __future__ import annotations

import re

from tests.support import gid
from tests.support.money import TRANSFER, WALLETS, fund, user_id, verified_user
from tests.support.staking import product_id
from tests.support.withdrawing import REQUEST, deposit_on_chain, make_withdrawer
from tests.wallets.test_crypto_deposits import ADDRESS, CREDIT, admin  # noqa: F401 (fixture)

HISTORY = "{ transactions(first: 10) { edges { node { kind currency amount fee balanceAfter } } } }"
PORTFOLIO = (
    "{ me { portfolio { equity positions { currency quantity costBasis realizedPnl value } } } }"
)
STAKE = (
    'mutation($p: ID!, $a: Decimal!) { stake(productId: $p, amount: $a, idempotencyKey: "s")'
    " { __typename ... on StakePayload { stake { id currency principal accruedRewards"
    " currentTermRewards forfeitedRewards product { apy } } } } }"
)
UNSTAKE = (
    'mutation($s: ID!, $a: Decimal!) { unstake(stakeId: $s, amount: $a, idempotencyKey: "u")'
    " { __typename ... on UnstakePayload { returned forfeited stake { principal } } } }"
)


async def test_wallets_transfers_and_history_at_currency_scale(gql, rt):
    alice = await verified_user(gql, rt, "alice@example.com", handle="alice")
    await verified_user(gql, rt, "bob@example.com", handle="bob")
    a = await user_id(rt, "alice@example.com")
    await fund(rt, a, "USDT", "1000")
    await fund(rt, a, "BTC", "0.5")
    token = alice["accessToken"]

    wallets = {w["currency"]: w for w in (await gql.data(WALLETS, token=token))["me"]["wallets"]}
    assert wallets["USDT"] == {
        "currency": "USDT",
        "available": "1000.000000",
        "held": "0.000000",
        "staked": "0.000000",
        "total": "1000.000000",
        "usdValue": "1000.00",
    }
    assert (wallets["BTC"]["available"], wallets["BTC"]["total"]) == ("0.50000000", "0.50000000")
    assert wallets["USD"]["available"] == "0.00"
    assert wallets["SOL"]["available"] == "0.000000000"

    variables = {"to": "bob", "cur": "USDT", "amount": "25.5", "key": "k", "memo": None}
    sent = (await gql.data(TRANSFER, variables, token=token))["transfer"]
    assert (sent["balanceAfter"], sent["transfer"]["amount"]) == ("974.500000", "25.500000")

    nodes = [e["node"] for e in (await gql.data(HISTORY, token=token))["transactions"]["edges"]]
    assert nodes[0] == {
        "kind": "TRANSFER_OUT",
        "currency": "USDT",
        "amount": "-25.500000",
        "fee": None,
        "balanceAfter": "974.500000",
    }
    assert [(n["currency"], n["amount"], n["balanceAfter"]) for n in nodes[1:]] == [
        ("BTC", "0.50000000", "0.50000000"),
        ("USDT", "1000.000000", "1000.000000"),
    ]

    portfolio = (await gql.data(PORTFOLIO, token=token))["me"]["portfolio"]
    assert re.fullmatch(r"[0-9]+\.[0-9]{2}", portfolio["equity"]), portfolio  # USD, at the cent
    positions = {p["currency"]: p for p in portfolio["positions"]}
    assert positions["USDT"]["quantity"] == "974.500000"
    assert positions["BTC"]["quantity"] == "0.50000000"
    assert (positions["BTC"]["costBasis"], positions["BTC"]["realizedPnl"]) == ("0.00", "0.00")
    assert re.fullmatch(r"[0-9]+\.[0-9]{2}", positions["BTC"]["value"])


async def test_withdrawal_amount_and_fee_at_currency_scale(gql, rt):
    walt = await make_withdrawer(gql, rt)
    await deposit_on_chain(rt, walt.uid, "USDT", "1000")
    variables = {
        "cur": "USDT",
        "amount": "100",
        "to": "0x52908400098527886E0F7030069857D2E4169EE7",
        "key": "w-1",
        "code": walt.code(),
    }
    payload = (await gql.data(REQUEST, variables, token=walt.token))["requestWithdrawal"]
    withdrawal = payload["withdrawal"]
    assert (withdrawal["amount"], withdrawal["fee"]) == ("100.000000", "1.000000")


async def test_crypto_deposit_amounts_at_currency_scale(gql, rt, admin):  # noqa: F811
    auth = await verified_user(gql, rt, "carol@example.com", handle="carol")
    token = auth["accessToken"]
    address = (await gql.data(ADDRESS, {"cur": "BTC"}, token=token))["depositAddress"]
    variables = {"cur": "BTC", "address": address["address"], "tx": "a1" * 32, "amount": "0.5"}
    credit = (await gql.data(CREDIT, variables, token=admin))["creditCryptoDeposit"]
    deposit = credit["deposit"]
    assert (deposit["amount"], deposit["creditedAmount"]) == ("0.50000000", "0.50000000")


async def test_stake_amounts_at_currency_scale_rates_untouched(gql, rt):
    auth = await verified_user(gql, rt, "stan@example.com")
    uid = await user_id(rt, "stan@example.com")
    await fund(rt, uid, "USDT", "5000")
    flexible = gid("StakingProduct", await product_id(rt, "USDT"))
    made = await gql.data(STAKE, {"p": flexible, "a": "1000"}, token=auth["accessToken"])
    stake = dict(made["stake"]["stake"])
    assert stake.pop("id")
    assert stake == {
        "currency": "USDT",
        "principal": "1000.000000",
        "accruedRewards": "0.000000",
        "currentTermRewards": "0.000000",
        "forfeitedRewards": "0.000000",
        "product": {"apy": "4"},  # a rate, not an amount: as it is
    }
    variables = {"s": made["stake"]["stake"]["id"], "a": "400"}
    out = (await gql.data(UNSTAKE, variables, token=auth["accessToken"]))["unstake"]
    assert out == {
        "__typename": "UnstakePayload",
        "returned": "400.000000",
        "forfeited": "0.000000",
        "stake": {"principal": "600.000000"},
    }
