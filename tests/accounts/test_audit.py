"""The audit log: every admin action writes one row in its own transaction (actor,
action, target, details, request id); ``auditLog`` is admin only."""

from __future__ import annotations

import base64
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from app.accounts import audit
from app.ledger import journal as ledger
from app.ledger.rules import AccountKind, move
from db.models import AuditLog
from db.session import in_transaction
from tests.accounts.test_kyc import GOOD, REVIEW, SUBMIT
from tests.support.documents import signed_in
from tests.support.money import user_id
from tests.support.withdrawing import (
    APPROVE,
    ETH_ADDRESS,
    REFILL,
    REJECT,
    REQUEST,
    admin_token,
    deposit_on_chain,
    make_withdrawer,
    real_clock,
)

AUDIT_LOG = (
    "query($first: Int!, $after: String) { auditLog(first: $first, after: $after) {"
    " edges { cursor node { id action target details requestId createdAt actor { email } } }"
    " pageInfo { hasNextPage endCursor } } }"
)


async def _rows(rt) -> list[AuditLog]:
    async with rt.sessions() as session:
        return list((await session.scalars(select(AuditLog).order_by(AuditLog.id))).all())


def _request_vars(w, amount: str, key: str) -> dict:
    return {"cur": "USDT", "amount": amount, "to": ETH_ADDRESS, "key": key, "code": w.code()}


@pytest.fixture
async def setting(gql, rt):
    """An admin, and a user with two large withdrawals waiting for review."""
    admin, admin_id = await admin_token(gql, rt)
    w = await make_withdrawer(gql, rt, kyc_level=2)  # 22,000 USD is over level 1's limit
    await deposit_on_chain(rt, w.uid, "USDT", "40000")
    ids = []
    for key in ("a", "b"):
        data = await gql.data(REQUEST, _request_vars(w, "11000", key), token=w.token)
        ids.append(data["requestWithdrawal"]["withdrawal"]["id"])
    return admin, admin_id, w, ids


async def test_each_admin_action_writes_one_audit_row_with_the_request_id(gql, rt, setting):
    admin, admin_id, w, (first, second) = setting
    await gql.data(APPROVE, {"id": first}, token=admin, headers={"x-request-id": "req-approve"})
    await gql.data(
        REJECT,
        {"id": second, "reason": "unusual pattern"},
        token=admin,
        headers={"x-request-id": "req-reject"},
    )
    with real_clock(rt):
        ada = await signed_in(gql, "ada@example.com")
    await gql.data(SUBMIT, GOOD, token=ada["accessToken"])
    await gql.data(
        REVIEW,
        {"user": ada["user"]["id"], "approve": True, "level": 2},
        token=admin,
        headers={"x-request-id": "req-kyc"},
    )

    rows = await _rows(rt)
    first_pk = int(base64.b64decode(first).decode().split(":")[1])
    second_pk = int(base64.b64decode(second).decode().split(":")[1])
    assert [(r.actor_user_id, r.action, r.target, r.request_id) for r in rows] == [
        (admin_id, "withdrawal.approve", f"withdrawal:{first_pk}", "req-approve"),
        (admin_id, "withdrawal.reject", f"withdrawal:{second_pk}", "req-reject"),
        (admin_id, "kyc.approve", f"user:{await user_id(rt, 'ada@example.com')}", "req-kyc"),
    ]
    assert rows[0].details == {
        "userId": w.uid,
        "currency": "USDT",
        "amount": "11000",
        "usdValue": "11000",
        "reason": None,
    }
    assert rows[1].details["reason"] == "unusual pattern"
    assert rows[2].details["level"] == 2


async def test_refilling_the_hot_wallet_is_audited(gql, rt, setting):
    admin, admin_id, *_ = setting

    async def to_cold(session):  # what a sweep does: HOT_WALLET +y, COLD_STORAGE -y
        await ledger.post(
            session,
            kind="HOT_TO_COLD",
            legs=move(
                Decimal(100),
                ledger.system_account("USDT", AccountKind.COLD_STORAGE),
                ledger.system_account("USDT", AccountKind.HOT_WALLET),
            ),
        )

    await in_transaction(rt.sessions, to_cold)
    result = await gql.data(REFILL, {"cur": "USDT", "amount": "60"}, token=admin)
    assert result["refillHotWallet"]["coldStorage"] == "40.000000"
    (row,) = await _rows(rt)
    assert (row.actor_user_id, row.action, row.target) == (
        admin_id,
        "custody.refill_hot_wallet",
        "currency:USDT",
    )
    assert row.details["amount"] == "60"


async def test_a_refused_admin_action_leaves_no_audit_row(gql, rt, setting):
    admin, _, w, (first, _) = setting
    await gql.data(APPROVE, {"id": first}, token=admin)
    twice = await gql.data(APPROVE, {"id": first}, token=admin)
    assert twice["approveWithdrawal"]["code"] == "WITHDRAWAL_STATUS_CONFLICT"
    forbidden = await gql.data(APPROVE, {"id": first}, token=w.token)
    assert forbidden["approveWithdrawal"]["code"] == "FORBIDDEN"
    assert [r.action for r in await _rows(rt)] == ["withdrawal.approve"]


async def test_audit_rows_roll_back_with_their_transaction(rt, gql):
    _, admin_id = await admin_token(gql, rt)

    async def work(session):
        await audit.record(
            session, actor_id=admin_id, action="test.action", target="thing:1", details={"a": 1}
        )
        raise RuntimeError("the action failed after the audit row was written")

    with pytest.raises(RuntimeError):
        await in_transaction(rt.sessions, work)
    assert await _rows(rt) == []


async def test_the_audit_log_query_pages_newest_first(gql, rt, setting):
    admin, _, _, (first, second) = setting
    await gql.data(APPROVE, {"id": first}, token=admin)
    await gql.data(REJECT, {"id": second, "reason": "no"}, token=admin)
    page = (await gql.data(AUDIT_LOG, {"first": 1}, token=admin))["auditLog"]
    (edge,) = page["edges"]
    assert edge["node"]["action"] == "withdrawal.reject"
    assert edge["node"]["actor"] == {"email": "root@example.com"}
    assert edge["node"]["details"]["reason"] == "no"
    assert edge["node"]["requestId"]
    assert page["pageInfo"]["hasNextPage"] is True
    rest = await gql.data(
        AUDIT_LOG, {"first": 5, "after": page["pageInfo"]["endCursor"]}, token=admin
    )
    assert [e["node"]["action"] for e in rest["auditLog"]["edges"]] == ["withdrawal.approve"]
    assert rest["auditLog"]["pageInfo"]["hasNextPage"] is False


async def test_the_audit_log_is_admin_only(gql, rt, setting):
    _, _, w, _ = setting
    body = await gql(AUDIT_LOG, {"first": 5}, token=w.token)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    anonymous = await gql(AUDIT_LOG, {"first": 5})
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    async with rt.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(AuditLog)) == 0
