"""BOT limits over GraphQL: a bot's owner sets, reads, removes and resets them (the reset
with two-factor); anyone else gets NOT_FOUND as for a bot that does not exist; hostile
ids are typed errors that change nothing."""

from __future__ import annotations

import pytest

from app.risk.domain.states import RiskState, Scope, ScopeRef
from tests.risk.support import force_state, paper_bot, trading_bot
from tests.support import gid
from tests.support.trading import BTC, scalar, trader
from tests.support.withdrawing import make_withdrawer

SET = """
mutation($input: SetRiskLimitInput!) {
  setRiskLimit(input: $input) {
    __typename
    ... on RiskLimitPayload { limit { id scope kind threshold bot follow } }
    ... on Error { code message field }
  }
}
"""
REMOVE = """
mutation($id: ID!) { removeRiskLimit(id: $id) {
  __typename ... on RiskLimitRemovedPayload { removedId } ... on Error { code field } } }
"""
RESET = """
mutation($scope: RiskScopeInput!, $code: String) { resetRisk(scope: $scope, totpCode: $code) {
  __typename ... on RiskStatePayload { scope bot state reason } ... on Error { code field } } }
"""
STATUS = """
{ me { riskStatus { state scopes { scope bot state reason
  limits { value reached limit { kind threshold } } } } } }
"""
NODE = "query($id: ID!) { node(id: $id) { __typename ... on RiskLimit { bot } } }"
CHECK = """
query($input: PlaceOrderInput!) { riskCheck(input: $input) {
  __typename ... on RiskCheck { allowed binding { scope bot code } } ... on Error { code } } }
"""


def bot_limit(bot: str | None, kind: str = "TRADES_PER_DAY", threshold: str = "5") -> dict:
    scope = {"scope": "BOT"} | ({"botId": bot} if bot is not None else {})
    return {"input": {"scope": scope, "kind": kind, "threshold": threshold}}


async def test_an_owner_sets_reads_and_removes_a_bots_limit_and_no_one_else(gql, rt):
    owner, token = await trader(gql, rt, "ann@example.com", USDT="1000")
    bot = await trading_bot(rt, owner, "one", USDT="1000")
    bot_gid = gid("Bot", bot.id)
    got = (await gql.data(SET, bot_limit(bot_gid), token=token))["setRiskLimit"]
    assert got["__typename"] == "RiskLimitPayload", got
    assert got["limit"] | {"id": None} == {
        "id": None, "scope": "BOT", "kind": "TRADES_PER_DAY", "threshold": "5",
        "bot": bot_gid, "follow": None,
    }  # fmt: skip
    limit_id = got["limit"]["id"]
    assert (await gql.data(NODE, {"id": limit_id}, token=token))["node"] == {
        "__typename": "RiskLimit",
        "bot": bot_gid,
    }

    _, mallory = await trader(gql, rt, "mallory@example.com", USDT="1000")
    theirs = await gql.data(SET, bot_limit(bot_gid, threshold="500"), token=mallory)
    assert theirs["setRiskLimit"] == {
        "__typename": "NotFound", "code": "NOT_FOUND", "message": "You have no such bot",
        "field": "botId",
    }  # fmt: skip
    missing = await gql.data(SET, bot_limit(gid("Bot", bot.id + 1000)), token=mallory)
    assert missing["setRiskLimit"] == theirs["setRiskLimit"]  # no difference to see
    assert (await gql.data(NODE, {"id": limit_id}, token=mallory))["node"] is None
    removed = await gql.data(REMOVE, {"id": limit_id}, token=mallory)
    assert removed["removeRiskLimit"] == {
        "__typename": "RiskLimitNotFound", "code": "RISK_LIMIT_NOT_FOUND", "field": "id",
    }  # fmt: skip
    reset = await gql.data(RESET, {"scope": {"scope": "BOT", "botId": bot_gid}}, token=mallory)
    assert (reset["resetRisk"]["code"], reset["resetRisk"]["field"]) == ("NOT_FOUND", "botId")
    assert await scalar(rt, "SELECT threshold FROM risk_limits") == 5

    status = (await gql.data(STATUS, token=token))["me"]["riskStatus"]
    (scope,) = [s for s in status["scopes"] if s["scope"] == "BOT"]
    assert scope["bot"] == bot_gid
    assert scope["limits"] == [
        {"value": "0", "reached": False, "limit": {"kind": "TRADES_PER_DAY", "threshold": "5"}}
    ]
    gone = await gql.data(REMOVE, {"id": limit_id}, token=token)
    assert gone["removeRiskLimit"]["__typename"] == "RiskLimitRemovedPayload"
    assert await scalar(rt, "SELECT count(*) FROM risk_limits") == 0


@pytest.mark.parametrize(
    ("bot", "code"),
    [
        (None, "VALIDATION_FAILED"),
        ("", "VALIDATION_FAILED"),
        ("bm9wZQ==", "VALIDATION_FAILED"),
        (gid("Follow", 1), "VALIDATION_FAILED"),
        ("Qm90Oi0x", "VALIDATION_FAILED"),  # Bot:-1
        ("Qm90OjA=", "VALIDATION_FAILED"),  # Bot:0
        (gid("Bot", 10**30), "VALIDATION_FAILED"),
        ("Qm90OjEA", "VALIDATION_FAILED"),  # Bot:1\x00
        ("Bot:1\u0000", "VALIDATION_FAILED"),
        ("x" * 5000, "VALIDATION_FAILED"),
        (gid("Bot", 2**63 - 1), "NOT_FOUND"),
    ],
)
async def test_hostile_bot_ids_are_typed_errors_that_change_nothing(gql, rt, bot, code):
    owner, token = await trader(gql, rt, "ann@example.com")
    await trading_bot(rt, owner, "one")
    body = await gql(SET, bot_limit(bot), token=token)
    if "errors" in body:  # refused before the resolver (a NUL byte): still typed
        (error,) = body["errors"]
        assert (error["extensions"]["code"], error["extensions"]["field"]) == (
            code,
            "input.scope.botId",
        ), body
    else:
        got = body["data"]["setRiskLimit"]
        assert (got["code"], got["field"]) == (code, "botId"), got
    assert await scalar(rt, "SELECT count(*) FROM risk_limits") == 0


async def test_a_bots_halt_is_reset_by_its_owner_with_two_factor(gql, rt):
    walt = await make_withdrawer(gql, rt)
    bot = await trading_bot(rt, walt.uid, "one", USDT="1000")
    ref = ScopeRef(Scope.BOT, bot.id)
    await force_state(rt, ref, RiskState.HALTED, "DAILY_LOSS of 5 USD (BOT) reached")
    scope = {"scope": "BOT", "botId": gid("Bot", bot.id)}
    check = await gql.data(
        CHECK, {"input": {"symbol": BTC, "side": "BUY", "type": "LIMIT", "quantity": "0.1",
                          "price": "100"}}, token=walt.token,
    )  # fmt: skip
    assert check["riskCheck"]["allowed"] is True  # the owner's own orders are not the bot's
    got = await gql.data(RESET, {"scope": scope}, token=walt.token)
    assert got["resetRisk"]["code"] == "TWO_FACTOR_REQUIRED"
    got = await gql.data(RESET, {"scope": scope, "code": walt.code()}, token=walt.token)
    assert got["resetRisk"] == {
        "__typename": "RiskStatePayload",
        "scope": "BOT",
        "bot": gid("Bot", bot.id),
        "state": "ACTIVE",
        "reason": "reset by hand",
    }
    trail = await scalar(
        rt, "SELECT array_agg(to_state || ':' || coalesce(actor_id, 0) ORDER BY id)"
        " FROM risk_transitions WHERE scope = 'BOT' AND scope_id = $1", bot.id,
    )  # fmt: skip
    assert trail == ["HALTED:0", f"ACTIVE:{walt.uid}"]


async def test_a_paper_bot_has_no_limits(gql, rt):
    owner, token = await trader(gql, rt, "ann@example.com")
    bot = await paper_bot(rt, owner)
    got = (await gql.data(SET, bot_limit(gid("Bot", bot)), token=token))["setRiskLimit"]
    assert (got["code"], got["field"]) == ("INVALID_RISK_LIMIT", "botId")
    _, mallory = await trader(gql, rt, "mallory@example.com")
    theirs = (await gql.data(SET, bot_limit(gid("Bot", bot)), token=mallory))["setRiskLimit"]
    assert (theirs["code"], theirs["field"]) == ("NOT_FOUND", "botId")  # nothing to learn
    assert await scalar(rt, "SELECT count(*) FROM risk_limits") == 0
