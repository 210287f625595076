"""Halting a market (``setMarketStatus``) is an admin action like the others: the admin is
read in its transaction (``audit.require_admin``) and it writes one audit row with it."""

from __future__ import annotations

from sqlalchemy import update

from db.models import User
from tests.support.trading import BTC, trader
from tests.support.withdrawing import admin_token

SET_STATUS = (
    "mutation($symbol: String!, $status: MarketStatus!) {"
    " setMarketStatus(symbol: $symbol, status: $status) { __typename"
    " ... on MarketPayload { market { symbol status } } ... on Error { code } } }"
)
AUDIT_LOG = (
    "query { auditLog(first: 10) { edges { node { action target details actor { email } } } } }"
)
MARKET = "query($symbol: String!) { market(symbol: $symbol) { status } }"


async def _status(gql, token: str, status: str, **headers: str) -> dict:
    variables = {"symbol": BTC, "status": status}
    return (await gql.data(SET_STATUS, variables, token=token, headers=headers))["setMarketStatus"]


async def _audit(gql, token: str) -> list[dict]:
    return [e["node"] for e in (await gql.data(AUDIT_LOG, token=token))["auditLog"]["edges"]]


async def test_halting_a_market_writes_an_audit_row(gql, rt):
    admin, _ = await admin_token(gql, rt)
    halted = await _status(gql, admin, "HALTED")
    assert halted["market"] == {"symbol": BTC, "status": "HALTED"}
    await _status(gql, admin, "OPEN")
    assert await _audit(gql, admin) == [
        {
            "action": "market.status",
            "target": f"market:{BTC}",
            "details": {"from": "HALTED", "to": "OPEN"},
            "actor": {"email": "root@example.com"},
        },
        {
            "action": "market.status",
            "target": f"market:{BTC}",
            "details": {"from": "OPEN", "to": "HALTED"},
            "actor": {"email": "root@example.com"},
        },
    ]


async def test_a_non_admin_cannot_halt_a_market_and_nothing_is_recorded(gql, rt):
    admin, _ = await admin_token(gql, rt)
    _, user = await trader(gql, rt, "user@example.com")
    refused = await _status(gql, user, "HALTED")
    assert refused == {"__typename": "Forbidden", "code": "FORBIDDEN"}
    assert (await gql.data(MARKET, {"symbol": BTC}))["market"]["status"] == "OPEN"
    assert await _audit(gql, admin) == []


async def test_a_demoted_admin_is_refused_with_a_still_valid_token(gql, rt):
    admin, admin_id = await admin_token(gql, rt)
    async with rt.sessions() as session, session.begin():
        await session.execute(update(User).where(User.id == admin_id).values(role="USER"))
    refused = await _status(gql, admin, "HALTED")
    assert refused == {"__typename": "Forbidden", "code": "FORBIDDEN"}
    assert (await gql.data(MARKET, {"symbol": BTC}))["market"]["status"] == "OPEN"
