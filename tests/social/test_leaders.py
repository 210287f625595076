"""Leaders through GraphQL: eligibility rule by rule, profile checks, stop and lead
again, invitations. Rows are counted before and after every refusal."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import update

from app.social.domain.social import (
    EligibilityFacts,
    EligibilityRule,
    EligibilityRules,
    LeaderIneligible,
    check_eligibility,
)
from db.models import Follow, Leader, User
from tests.support import GraphQLClient, gid
from tests.support.documents import signed_in
from tests.support.money import fund, user_id, verified_user
from tests.support.partner import client_with
from tests.support.trading import funded_user, running_engines, scalar, trade_at, trader

BECOME = """
mutation($name: String!, $share: Decimal!, $min: Decimal! = "0",
         $vis: LeaderVisibility! = PUBLIC, $bio: String! = "") {
  becomeLeader(displayName: $name, profitSharePercent: $share, minimumAllocation: $min,
               visibility: $vis, bio: $bio) {
    __typename
    ... on LeaderPayload { leader { id displayName bio profitSharePercent minimumAllocation
                                    visibility status followerCount assetsUnderCopy } }
    ... on LeaderIneligible { rule }
    ... on Error { code message }
    ... on ValidationFailed { field }
  }
}
"""
UPDATE_PROFILE = """
mutation($name: String!, $share: Decimal!, $min: Decimal! = "0", $vis: LeaderVisibility! = PUBLIC) {
  updateLeaderProfile(displayName: $name, profitSharePercent: $share, minimumAllocation: $min,
                      visibility: $vis) {
    __typename
    ... on LeaderPayload { leader { displayName profitSharePercent minimumAllocation visibility } }
    ... on Error { code }
  }
}
"""
STOP = """
mutation { stopLeading { __typename ... on LeaderPayload { leader { status } }
                         ... on Error { code } } }
"""
INVITE = """
mutation($who: String!) {
  inviteFollower(userHandleOrEmail: $who) {
    __typename ... on InviteFollowerPayload { invited leader { id } } ... on Error { code }
  }
}
"""
LEADER = """
query($id: ID!) { leader(id: $id) { id displayName status visibility followerCount
                                    assetsUnderCopy profitSharePercent } }
"""
MINE = "{ myLeaderProfile { id displayName status } }"
FOLLOW = """
mutation($leader: ID!, $allocation: Decimal!) {
  followLeader(leaderId: $leader, allocation: $allocation, mode: EQUITY_PROPORTIONAL) {
    __typename ... on FollowPayload { follow { id } } ... on Error { code }
  }
}
"""
UNFOLLOW = """
mutation($id: ID!) { unfollowLeader(id: $id) { __typename ... on Error { code } } }
"""


async def counts(rt) -> tuple[int, int, int]:
    return (
        await scalar(rt, "SELECT count(*) FROM leaders"),
        await scalar(rt, "SELECT count(*) FROM leader_invites"),
        await scalar(rt, "SELECT count(*) FROM follows"),
    )


async def set_kyc(rt, uid: int, level: int = 1) -> None:
    async with rt.sessions() as session, session.begin():
        await session.execute(update(User).where(User.id == uid).values(kyc_level=level))


async def insert_leader(rt, uid: int, **values) -> None:
    """A leader row written directly (for tests about following, not eligibility)."""
    async with rt.sessions() as session, session.begin():
        session.add(
            Leader(
                user_id=uid,
                display_name=values.pop("display_name", f"leader{uid}"),
                profit_share_percent=values.pop("profit_share_percent", Decimal(10)),
                minimum_allocation=values.pop("minimum_allocation", Decimal(0)),
                **values,
            )
        )


async def eligible_leader(gql, rt, email: str):
    """A verified, KYC 1 user with 1000 USDT and 0.01 BTC; (uid, token)."""
    uid, token = await trader(gql, rt, email, USDT="1000", BTC="0.01")
    await set_kyc(rt, uid)
    return uid, token


async def become(gql, token: str, **variables) -> dict:
    variables = {"name": "Alice", "share": "10", **variables}
    return (await gql.data(BECOME, variables, token=token))["becomeLeader"]


# --- pure rules ----------------------------------------------------------------------------


def facts(**overrides) -> EligibilityFacts:
    values = dict(
        email_verified=True,
        kyc_level=1,
        equity_usd=Decimal(100),
        closed_trades=5,
        live_follows=0,
    )
    values.update(overrides)
    return EligibilityFacts(**values)


@pytest.mark.parametrize(
    ("overrides", "rule"),
    [
        ({"email_verified": False, "kyc_level": 0}, EligibilityRule.EMAIL_VERIFIED),
        ({"kyc_level": 0, "equity_usd": Decimal(0)}, EligibilityRule.KYC_LEVEL),
        ({"equity_usd": Decimal("99.99"), "closed_trades": 0}, EligibilityRule.MINIMUM_EQUITY),
        ({"closed_trades": 4, "live_follows": 1}, EligibilityRule.CLOSED_TRADES),
        ({"live_follows": 1}, EligibilityRule.NOT_FOLLOWING),
    ],
)
def test_the_first_failing_rule_is_named(overrides, rule) -> None:
    with pytest.raises(LeaderIneligible) as raised:
        check_eligibility(facts(**overrides), EligibilityRules())
    assert raised.value.rule is rule


def test_exactly_the_minimums_are_enough() -> None:
    check_eligibility(facts(), EligibilityRules())


# --- through GraphQL -----------------------------------------------------------------------


async def test_each_eligibility_rule_refuses_until_met_then_leading_starts(gql, rt) -> None:
    auth = await signed_in(gql, "lea@example.com")  # email not verified yet
    token = auth["accessToken"]
    uid = await user_id(rt, "lea@example.com")
    before = await counts(rt)

    async def refused_by() -> str:
        result = await become(gql, token)
        assert result["__typename"] == "LeaderIneligible", result
        assert result["code"] == "LEADER_INELIGIBLE"
        assert await counts(rt) == before
        return result["rule"]

    assert await refused_by() == "EMAIL_VERIFIED"
    async with rt.sessions() as session, session.begin():
        await session.execute(update(User).where(User.id == uid).values(email_verified_at=rt.now()))
    assert await refused_by() == "KYC_LEVEL"
    await set_kyc(rt, uid)
    assert await refused_by() == "MINIMUM_EQUITY"
    await fund(rt, uid, "USDT", "99")
    assert await refused_by() == "MINIMUM_EQUITY"  # 99 USD < 100
    await fund(rt, uid, "BTC", "0.01")  # +900 USD at the reference price
    assert await refused_by() == "CLOSED_TRADES"

    buyer = await funded_user(rt, "buyer", USDT="10000")
    async with running_engines(rt):
        for _ in range(4):
            await trade_at(rt, uid, buyer, "90000", "0.001")  # a SELL fill of lea each
        assert await refused_by() == "CLOSED_TRADES"  # 4 < 5
        await trade_at(rt, uid, buyer, "90000", "0.001")
        await trade_at(rt, buyer, uid, "90000", "0.001")  # lea buys: not a closed trade

    other = await funded_user(rt, "other")
    await insert_leader(rt, other)
    followed = await gql.data(
        FOLLOW, {"leader": gid("Leader", other), "allocation": "10"}, token=token
    )
    follow_id = followed["followLeader"]["follow"]["id"]
    before = await counts(rt)
    assert await refused_by() == "NOT_FOLLOWING"
    await gql.data(UNFOLLOW, {"id": follow_id}, token=token)

    result = await become(gql, token, name="  Lea  ", share="12.5", min="50", bio="Swing")
    assert result["__typename"] == "LeaderPayload", result
    assert result["leader"] == {
        "id": gid("Leader", uid),
        "displayName": "Lea",
        "bio": "Swing",
        "profitSharePercent": "12.5",
        "minimumAllocation": "50",
        "visibility": "PUBLIC",
        "status": "ACTIVE",
        "followerCount": 0,
        "assetsUnderCopy": "0",
    }
    mine = (await gql.data(MINE, token=token))["myLeaderProfile"]
    assert mine == {"id": gid("Leader", uid), "displayName": "Lea", "status": "ACTIVE"}


@pytest.mark.parametrize(
    ("variables", "typename", "code", "field"),
    [
        ({"share": "30.01"}, "ProfitShareOutOfRange", "PROFIT_SHARE_OUT_OF_RANGE", None),
        ({"share": "-1"}, "ProfitShareOutOfRange", "PROFIT_SHARE_OUT_OF_RANGE", None),
        ({"min": "-0.01"}, "ValidationFailed", "VALIDATION_FAILED", "minimumAllocation"),
        ({"name": "   "}, "ValidationFailed", "VALIDATION_FAILED", "displayName"),
    ],
)
async def test_bad_profiles_are_refused_and_change_nothing(
    gql, rt, variables, typename, code, field
) -> None:
    _, token = await eligible_leader(gql, rt, "bad@example.com")
    before = await counts(rt)
    result = await become(gql, token, **variables)
    assert (result["__typename"], result["code"]) == (typename, code), result
    assert result.get("field") == field
    assert await counts(rt) == before


async def _ready_leader(gql, rt, email: str) -> tuple[int, str]:
    """An ACTIVE leader: eligibility is tested above; here the facts are made true
    directly (a leader row), so these tests need no engines."""
    uid, token = await eligible_leader(gql, rt, email)
    await insert_leader(rt, uid, display_name="Ada")
    return uid, token


async def test_already_leader_stop_and_lead_again(gql, rt) -> None:
    uid, token = await _ready_leader(gql, rt, "ada@example.com")
    before = await counts(rt)
    again = await become(gql, token)
    assert (again["__typename"], again["code"]) == ("AlreadyLeader", "ALREADY_LEADER")
    assert await counts(rt) == before

    stopped = (await gql.data(STOP, token=token))["stopLeading"]
    assert stopped == {"__typename": "LeaderPayload", "leader": {"status": "STOPPED"}}
    assert await scalar(rt, "SELECT stopped_at IS NOT NULL FROM leaders WHERE user_id=$1", uid)

    # Leading again needs the rules: ada has no closed trades.
    result = await become(gql, token, name="Ada 2")
    assert result["__typename"] == "LeaderIneligible" and result["rule"] == "CLOSED_TRADES"
    assert await scalar(rt, "SELECT status FROM leaders WHERE user_id=$1", uid) == "STOPPED"

    async with client_with(rt, leader_min_closed_trades=0) as http:
        result = await become(
            GraphQLClient(http), token, name="Ada 2", share="0", vis="INVITE_ONLY"
        )
    assert result["__typename"] == "LeaderPayload", result
    assert result["leader"]["status"] == "ACTIVE"
    assert result["leader"]["displayName"] == "Ada 2"
    assert result["leader"]["visibility"] == "INVITE_ONLY"
    assert await scalar(rt, "SELECT stopped_at FROM leaders WHERE user_id=$1", uid) is None


async def test_update_profile_and_public_leader_query(gql, rt) -> None:
    uid, token = await _ready_leader(gql, rt, "ada@example.com")
    updated = (
        await gql.data(UPDATE_PROFILE, {"name": "Ada L", "share": "7", "min": "25"}, token=token)
    )["updateLeaderProfile"]
    assert updated["leader"] == {
        "displayName": "Ada L",
        "profitSharePercent": "7",
        "minimumAllocation": "25",
        "visibility": "PUBLIC",
    }
    bad = (await gql.data(UPDATE_PROFILE, {"name": "X", "share": "31"}, token=token))[
        "updateLeaderProfile"
    ]
    assert bad["code"] == "PROFIT_SHARE_OUT_OF_RANGE"
    assert await scalar(rt, "SELECT profit_share_percent FROM leaders") == Decimal(7)

    # Anyone (even anonymous) sees the public profile with follower count and AUM.
    f1 = await funded_user(rt, "f1")
    f2 = await funded_user(rt, "f2")
    async with rt.sessions() as session, session.begin():
        for follower, allocation, status in ((f1, "100", "ACTIVE"), (f2, "250.5", "PAUSED")):
            session.add(
                Follow(
                    follower_id=follower,
                    leader_id=uid,
                    mode="EQUITY_PROPORTIONAL",
                    allocation=Decimal(allocation),
                    status=status,
                )
            )
        session.add(
            Follow(
                follower_id=f1,
                leader_id=uid,
                mode="EQUITY_PROPORTIONAL",
                allocation=Decimal(1000),
                status="STOPPED",
            )
        )
    shown = (await gql.data(LEADER, {"id": gid("Leader", uid)}))["leader"]
    assert shown["followerCount"] == 2
    assert shown["assetsUnderCopy"] == "350.5"
    assert (await gql.data(LEADER, {"id": gid("Leader", f1)}))["leader"] is None
    assert (await gql.data(LEADER, {"id": "nonsense"}))["leader"] is None

    plain = await signed_in(gql, "nobody@example.com")
    assert (await gql.data(MINE, token=plain["accessToken"]))["myLeaderProfile"] is None
    refused = await gql.data(
        UPDATE_PROFILE, {"name": "N", "share": "1"}, token=plain["accessToken"]
    )
    assert refused["updateLeaderProfile"]["code"] == "NOT_A_LEADER"
    assert (await gql.data(STOP, token=plain["accessToken"]))["stopLeading"]["code"] == (
        "NOT_A_LEADER"
    )


async def test_invite_only_flow(gql, rt) -> None:
    leader, token = await _ready_leader(gql, rt, "ada@example.com")
    bob_token = (await verified_user(gql, rt, "bob@example.com", handle="bob"))["accessToken"]
    await fund(rt, await user_id(rt, "bob@example.com"), "USDT", "500")

    # A PUBLIC leader does not invite.
    before = await counts(rt)
    public = (await gql.data(INVITE, {"who": "@bob"}, token=token))["inviteFollower"]
    assert public["code"] == "LEADER_NOT_INVITE_ONLY"
    assert await counts(rt) == before

    await gql.data(
        UPDATE_PROFILE, {"name": "Ada", "share": "10", "vis": "INVITE_ONLY"}, token=token
    )
    follow = {"leader": gid("Leader", leader), "allocation": "100"}
    refused = (await gql.data(FOLLOW, follow, token=bob_token))["followLeader"]
    assert (refused["__typename"], refused["code"]) == ("InviteRequired", "INVITE_REQUIRED")
    assert await counts(rt) == before

    unknown = (await gql.data(INVITE, {"who": "nobody"}, token=token))["inviteFollower"]
    assert unknown["code"] == "RECIPIENT_NOT_FOUND"
    self_invite = await gql.data(INVITE, {"who": "ada@example.com"}, token=token)
    assert self_invite["inviteFollower"]["code"] == "VALIDATION_FAILED"
    assert await counts(rt) == before

    invited = (await gql.data(INVITE, {"who": "@Bob"}, token=token))["inviteFollower"]
    assert invited == {
        "__typename": "InviteFollowerPayload",
        "invited": "@Bob",
        "leader": {"id": gid("Leader", leader)},
    }
    again = (await gql.data(INVITE, {"who": "bob@example.com"}, token=token))["inviteFollower"]
    assert again["__typename"] == "InviteFollowerPayload"
    assert await scalar(rt, "SELECT count(*) FROM leader_invites") == 1

    followed = (await gql.data(FOLLOW, follow, token=bob_token))["followLeader"]
    assert followed["__typename"] == "FollowPayload", followed
