"""Withdrawals: the status machine, bad input, the small and large flows, cancel, the
payout worker, hot-wallet sweep and refill, idempotency, concurrency, queries, privacy."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from app.adapters.payouts import Payout
from app.background import PeriodicJobs
from app.core.errors import (
    DailyLimitExceeded,
    InsufficientFunds,
    InvalidAddress,
    PayoutRejected,
    TransientError,
    WithdrawalNotSupported,
    WithdrawalStatusConflict,
)
from app.core.money import usd_value
from app.jobs import add_withdrawal_jobs
from app.wallets import withdrawal_admin, withdrawal_worker
from app.wallets.domain import withdrawals as rules
from app.wallets.domain.withdrawals import WithdrawalEvent as E
from app.wallets.domain.withdrawals import WithdrawalStatus as S
from app.wallets.withdrawals import WithdrawalRequest, place_withdrawal
from db.models import Currency, Hold, JournalEntry, SecurityEvent, User, Withdrawal
from db.queries import lock_user
from db.session import in_transaction
from tests.support.money import balances, fund
from tests.support.withdrawing import (
    APPROVE,
    BTC_ADDRESS,
    CANCEL,
    ETH_ADDRESS,
    MY_WITHDRAWALS,
    NODE,
    PENDING,
    REFILL,
    REJECT,
    REQUEST,
    SOL_ADDRESS,
    admin_token,
    advance_clock,
    custody,
    deposit_on_chain,
    fees_collected,
    make_withdrawer,
    status_events,
)

ZERO = Decimal(0)

# --- pure rules --------------------------------------------------------------------------


def test_transition_table_allows_exactly_the_documented_moves():
    allowed = {(s, e) for s in S for e in E if (s, e) in rules.TRANSITIONS}
    assert allowed == {
        (S.PENDING_REVIEW, E.APPROVE),
        (S.PENDING_REVIEW, E.REJECT),
        (S.PENDING_REVIEW, E.CANCEL),
        (S.APPROVED, E.SEND),
        (S.APPROVED, E.FAIL),
        (S.APPROVED, E.CANCEL),
    }
    assert rules.apply("APPROVED", E.SEND) is S.SENT
    for final in (S.SENT, S.REJECTED, S.CANCELED, S.FAILED):
        for event in E:
            with pytest.raises(WithdrawalStatusConflict):
                rules.apply(final, event)
    with pytest.raises(WithdrawalStatusConflict, match="A SENT withdrawal cannot be canceled"):
        rules.apply(S.SENT, E.CANCEL)


def test_review_threshold_is_strictly_above():
    threshold = Decimal(10000)
    assert rules.initial_status(Decimal("10000.00"), review_above_usd=threshold) is S.APPROVED
    assert rules.initial_status(Decimal("10000.01"), review_above_usd=threshold) is S.PENDING_REVIEW
    flagged = rules.initial_status(Decimal(1), review_above_usd=threshold, flagged=True)
    assert flagged is S.PENDING_REVIEW


@pytest.mark.parametrize(
    ("currency", "address", "ok"),
    [
        ("ETH", ETH_ADDRESS, True),
        ("ETH", ETH_ADDRESS.lower(), True),
        ("USDT", ETH_ADDRESS, True),
        ("ETH", ETH_ADDRESS[:-1], False),
        ("ETH", "0x" + "g" * 40, False),
        ("BTC", BTC_ADDRESS, True),
        ("BTC", BTC_ADDRESS.upper(), True),
        ("BTC", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", True),
        ("BTC", "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", True),
        ("BTC", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdb", False),  # 'b' is not bech32
        ("BTC", ETH_ADDRESS, False),
        ("SOL", SOL_ADDRESS, True),
        ("SOL", SOL_ADDRESS + "0", False),  # 0 is not base58
        ("USDT", "", False),
    ],
)
def test_address_formats_per_chain(currency, address, ok):
    if ok:
        assert rules.check_address(currency, f"  {address} ") == address
    else:
        with pytest.raises(InvalidAddress):
            rules.check_address(currency, address)


def test_a_currency_without_an_address_format_cannot_be_withdrawn():
    with pytest.raises(WithdrawalNotSupported):
        rules.check_address("USD", "anything")


def test_usd_value_rounds_up_to_the_cent_and_limits_include_the_boundary():
    assert usd_value(Decimal("0.00000001"), Decimal(90000)) == Decimal("0.01")
    assert usd_value(Decimal("1.5"), Decimal(3000)) == Decimal("4500.00")
    rules.check_daily_limit(
        used_usd=Decimal(15000), requested_usd=Decimal(5000), limit_usd=Decimal(20000)
    )
    with pytest.raises(DailyLimitExceeded, match=r"5000\.00 USD left"):
        rules.check_daily_limit(
            used_usd=Decimal(15000), requested_usd=Decimal("5000.01"), limit_usd=Decimal(20000)
        )


def test_utc_day_boundaries():
    start, end = rules.utc_day(datetime(2026, 3, 1, 23, 59, tzinfo=UTC))
    assert (start, end) == (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC))


@pytest.mark.parametrize(
    ("holdings", "cap", "reserved", "expected"),
    [
        ("70000", "50000", "0", "20000"),
        ("70000", "50000", "60000", "10000"),  # keep what waiting payouts need
        ("40000", "50000", "0", "0"),
        ("50000.0000009", "50000", "0", "0"),  # below the minor unit
        ("-5", "50000", "0", "0"),
    ],
)
def test_sweep_amount(holdings, cap, reserved, expected):
    amount = rules.sweep_amount(
        holdings=Decimal(holdings),
        cap=Decimal(cap),
        reserved=Decimal(reserved),
        quantum=Decimal("0.000001"),
    )
    assert amount == Decimal(expected)


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def settings_override(rt):
    original = rt.settings

    def apply(**changes):
        rt.settings = original.model_copy(update=changes)

    yield apply
    rt.settings = original


@pytest.fixture
async def walt(gql, rt):
    """KYC level 1, two-factor on, 1,000 USDT deposited on chain (the hot wallet has it)."""
    w = await make_withdrawer(gql, rt)
    await deposit_on_chain(rt, w.uid, "USDT", "1000")
    return w


def _vars(w, **overrides):
    base = {"cur": "USDT", "amount": "100", "to": ETH_ADDRESS, "key": "w-1"}
    merged = {**base, **overrides}
    if "code" not in merged:
        merged["code"] = w.code()
    return merged


async def _request(gql, w, **overrides) -> dict:
    data = await gql.data(REQUEST, _vars(w, **overrides), token=w.token)
    return data["requestWithdrawal"]


async def _withdrawal_rows(rt) -> list[Withdrawal]:
    async with rt.sessions() as session:
        return list((await session.scalars(select(Withdrawal).order_by(Withdrawal.id))).all())


async def _hold_count(rt) -> int:
    async with rt.sessions() as session:
        return await session.scalar(select(func.count()).select_from(Hold))


def _pk(global_id: str) -> int:
    return int(base64.b64decode(global_id).decode().split(":")[1])


# --- the small flow ----------------------------------------------------------------------


async def test_small_withdrawal_is_approved_then_sent_by_the_worker(gql, rt, walt):
    result = await _request(gql, walt)
    assert result["__typename"] == "WithdrawalPayload", result
    w = result["withdrawal"]
    assert (w["status"], w["currency"], w["amount"], w["fee"], w["usdValue"]) == (
        "APPROVED",
        "USDT",
        "100.000000",
        "1.000000",
        "100.00",
    )
    assert w["destinationAddress"] == ETH_ADDRESS and w["txHash"] is None
    assert (await balances(rt, walt.uid))["USDT"] == (Decimal(899), Decimal(101))

    run = await withdrawal_worker.process_approved_withdrawals(rt)
    assert run.sent == [_pk(w["id"])] and run.waiting == run.failed == []

    node = (await gql.data(NODE, {"id": w["id"]}, token=walt.token))["node"]
    assert node["status"] == "SENT"
    assert node["txHash"].startswith("0x") and len(node["txHash"]) == 66
    assert (await balances(rt, walt.uid))["USDT"] == (Decimal(899), ZERO)
    assert await fees_collected(rt, "USDT") == Decimal(1)
    assert (await custody(rt, "USDT")).hot_wallet == Decimal(900)
    wid = _pk(w["id"])
    assert await status_events(rt) == [(wid, None, "APPROVED"), (wid, "APPROVED", "SENT")]
    async with rt.sessions() as session:
        kinds = (
            await session.scalars(
                select(JournalEntry.kind)
                .where(JournalEntry.reference == f"withdrawal:{wid}")
                .order_by(JournalEntry.id)
            )
        ).all()
    assert kinds == ["HOLD", "WITHDRAWAL"]
    # the worker has nothing left to do; running it again changes nothing
    again = await withdrawal_worker.process_approved_withdrawals(rt)
    assert again.sent == [] and (await balances(rt, walt.uid))["USDT"] == (Decimal(899), ZERO)


async def test_other_chains_and_a_recovery_code_as_second_factor(gql, rt, walt):
    await deposit_on_chain(rt, walt.uid, "BTC", "1")
    await deposit_on_chain(rt, walt.uid, "SOL", "10")
    btc = await _request(gql, walt, cur="btc", amount="0.01", to=BTC_ADDRESS, key="b")
    assert btc["withdrawal"]["fee"] == "0.00020000" and btc["withdrawal"]["usdValue"] == "900.00"
    sol = await _request(
        gql, walt, cur="SOL", amount="1.5", to=SOL_ADDRESS, key="s", code=walt.recovery_codes[0]
    )
    assert sol["withdrawal"]["status"] == "APPROVED"
    reused = await _request(
        gql, walt, cur="SOL", amount="1", to=SOL_ADDRESS, key="s2", code=walt.recovery_codes[0]
    )
    assert reused["code"] == "INVALID_TWO_FACTOR_CODE"
    assert (await balances(rt, walt.uid))["BTC"] == (Decimal("0.9898"), Decimal("0.0102"))
    run = await withdrawal_worker.process_approved_withdrawals(rt)
    assert len(run.sent) == 2
    assert (await balances(rt, walt.uid))["SOL"] == (Decimal("8.49"), ZERO)


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"amount": "0"}, "VALIDATION_FAILED", "amount"),
        ({"amount": "-1"}, "VALIDATION_FAILED", "amount"),
        ({"amount": "10.0000001"}, "VALIDATION_FAILED", "amount"),  # USDT has 6 decimals
        ({"cur": "DOGE"}, "UNKNOWN_CURRENCY", "currency"),
        ({"cur": "USD", "amount": "20"}, "WITHDRAWAL_NOT_SUPPORTED", "currency"),  # fiat
        ({"amount": "9.999999"}, "BELOW_MINIMUM_WITHDRAWAL", "amount"),
        ({"amount": "1000"}, "INSUFFICIENT_FUNDS", "amount"),  # 1000 + fee 1 > 1000
        ({"amount": "999.000001"}, "INSUFFICIENT_FUNDS", "amount"),
        ({"cur": "BTC", "amount": "0.001", "to": BTC_ADDRESS}, "INSUFFICIENT_FUNDS", "amount"),
        ({"to": "not-an-address"}, "INVALID_ADDRESS", "destinationAddress"),
        ({"to": BTC_ADDRESS}, "INVALID_ADDRESS", "destinationAddress"),
        ({"key": ""}, "VALIDATION_FAILED", "idempotencyKey"),
        ({"key": "k" * 256}, "VALIDATION_FAILED", "idempotencyKey"),
        ({"code": "12345"}, "INVALID_TWO_FACTOR_CODE", "totpCode"),
        ({"code": "aaaaa-bbbbb"}, "INVALID_TWO_FACTOR_CODE", "totpCode"),  # not a recovery code
    ],
)
async def test_bad_requests_change_nothing(gql, rt, walt, overrides, code, field):
    before = await balances(rt, walt.uid)
    result = await _request(gql, walt, **overrides)
    assert (result.get("code"), result.get("field")) == (code, field), result
    assert await balances(rt, walt.uid) == before
    assert await _withdrawal_rows(rt) == []
    assert await _hold_count(rt) == 0
    assert await status_events(rt) == []


async def test_a_wrong_or_replayed_totp_code_is_refused(gql, rt, walt):
    wrong = await _request(gql, walt, code=walt.stale_code())
    assert wrong["code"] == "INVALID_TWO_FACTOR_CODE"
    code = walt.code()
    assert (await _request(gql, walt, code=code, key="a"))["__typename"] == "WithdrawalPayload"
    replayed = await _request(gql, walt, code=code, key="b")
    assert replayed["code"] == "INVALID_TWO_FACTOR_CODE"
    assert len(await _withdrawal_rows(rt)) == 1


async def test_a_disabled_currency_is_refused(gql, rt, walt):
    async with rt.sessions() as session, session.begin():
        await session.execute(update(Currency).where(Currency.code == "USDT").values(enabled=False))
    assert (await _request(gql, walt))["code"] == "CURRENCY_DISABLED"
    assert await _withdrawal_rows(rt) == [] and await _hold_count(rt) == 0


async def test_two_factor_off_is_refused(gql, rt):
    w = await make_withdrawer(gql, rt, two_factor=False)
    await fund(rt, w.uid, "USDT", "500")
    result = await _request(gql, w, code="123456")
    assert result["code"] == "TWO_FACTOR_NOT_ENABLED"
    assert (await balances(rt, w.uid))["USDT"] == (Decimal(500), ZERO)


async def test_unverified_email_is_refused(gql, rt):
    w = await make_withdrawer(gql, rt, verified=False)
    await fund(rt, w.uid, "USDT", "500")
    assert (await _request(gql, w))["code"] == "EMAIL_NOT_VERIFIED"
    assert (await balances(rt, w.uid))["USDT"] == (Decimal(500), ZERO)


async def test_kyc_level_zero_is_refused(gql, rt):
    w = await make_withdrawer(gql, rt, kyc_level=0)
    await fund(rt, w.uid, "USDT", "500")
    assert (await _request(gql, w))["code"] == "KYC_REQUIRED"
    assert (await balances(rt, w.uid))["USDT"] == (Decimal(500), ZERO)


async def test_anonymous_is_refused(gql, rt, walt):
    data = await gql.data(REQUEST, _vars(walt))
    assert data["requestWithdrawal"]["code"] == "UNAUTHENTICATED"


async def test_float_amounts_are_refused_by_the_schema(gql, rt, walt):
    body = await gql(REQUEST, _vars(walt, amount=100.5), token=walt.token)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_daily_limit_in_usd_per_kyc_level(gql, rt, walt):
    """Level 1: 20,000 USD a UTC day. Rejected, canceled and failed ones do not count."""
    await deposit_on_chain(rt, walt.uid, "USDT", "49000")  # 50,000 in all
    await deposit_on_chain(rt, walt.uid, "BTC", "1")
    first = await _request(gql, walt, amount="9000", key="a")
    await _request(gql, walt, amount="9000", key="b")
    before = await balances(rt, walt.uid)
    over = await _request(gql, walt, amount="2000.000001", key="c")
    assert over["code"] == "DAILY_LIMIT_EXCEEDED" and over["field"] == "amount"
    assert await balances(rt, walt.uid) == before
    assert "2000.00 USD left today" in over["message"]
    btc = await _request(gql, walt, cur="BTC", amount="0.03", to=BTC_ADDRESS, key="d")
    assert btc["code"] == "DAILY_LIMIT_EXCEEDED"  # 2,700 USD at the reference price
    assert (await _request(gql, walt, amount="2000", key="e"))["__typename"] == "WithdrawalPayload"
    assert (await _request(gql, walt, amount="10", key="f"))["code"] == "DAILY_LIMIT_EXCEEDED"

    cancel = await gql.data(CANCEL, {"id": first["withdrawal"]["id"]}, token=walt.token)
    assert cancel["cancelWithdrawal"]["withdrawal"]["status"] == "CANCELED"
    assert (await _request(gql, walt, amount="9000", key="g"))["__typename"] == "WithdrawalPayload"

    advance_clock(rt, timedelta(days=1))  # a new UTC day
    level2 = await _request(gql, walt, amount="9000", key="h")
    assert level2["__typename"] == "WithdrawalPayload"


async def test_level_two_has_the_higher_limit(gql, rt):
    w = await make_withdrawer(gql, rt, kyc_level=2)
    await deposit_on_chain(rt, w.uid, "USDT", "30000")
    result = await _request(gql, w, amount="25000")
    assert result["withdrawal"]["status"] == "PENDING_REVIEW"  # over 10,000 USD


# --- the large flow: review by an admin --------------------------------------------------


async def test_large_withdrawal_waits_for_review_then_is_sent(gql, rt, walt):
    admin, admin_id = await admin_token(gql, rt)
    await deposit_on_chain(rt, walt.uid, "USDT", "14000")  # 15,000
    result = await _request(gql, walt, amount="12000")
    w = result["withdrawal"]
    assert (w["status"], w["usdValue"]) == ("PENDING_REVIEW", "12000.00")
    assert (await balances(rt, walt.uid))["USDT"] == (Decimal(2999), Decimal(12001))
    assert (await withdrawal_worker.process_approved_withdrawals(rt)).sent == []

    queue = (await gql.data(PENDING, {"first": 10}, token=admin))["pendingWithdrawals"]
    assert [(e["node"]["id"], e["node"]["user"]["email"]) for e in queue["edges"]] == [
        (w["id"], "walt@example.com")
    ]
    approved = (await gql.data(APPROVE, {"id": w["id"]}, token=admin))["approveWithdrawal"]
    assert approved["withdrawal"]["status"] == "APPROVED"
    twice = (await gql.data(APPROVE, {"id": w["id"]}, token=admin))["approveWithdrawal"]
    assert twice["code"] == "WITHDRAWAL_STATUS_CONFLICT"
    assert (await gql.data(PENDING, {"first": 10}, token=admin))["pendingWithdrawals"][
        "edges"
    ] == []

    run = await withdrawal_worker.process_approved_withdrawals(rt)
    assert run.sent == [_pk(w["id"])]
    assert (await balances(rt, walt.uid))["USDT"] == (Decimal(2999), ZERO)
    assert await fees_collected(rt, "USDT") == Decimal(1)
    wid = _pk(w["id"])
    assert await status_events(rt) == [
        (wid, None, "PENDING_REVIEW"),
        (wid, "PENDING_REVIEW", "APPROVED"),
        (wid, "APPROVED", "SENT"),
    ]
    async with rt.sessions() as session:
        row = await session.get(Withdrawal, wid)
    assert row.reviewed_by == admin_id


async def test_every_withdrawal_of_a_flagged_account_waits_for_review(gql, rt, walt):
    async with rt.sessions() as session, session.begin():
        await session.execute(
            update(User).where(User.id == walt.uid).values(flagged_at=rt.now(), flag_reason="x")
        )
    assert (await _request(gql, walt, amount="10"))["withdrawal"]["status"] == "PENDING_REVIEW"


async def test_rejection_needs_a_reason_and_releases_the_hold(gql, rt, walt):
    admin, _ = await admin_token(gql, rt)
    await deposit_on_chain(rt, walt.uid, "USDT", "14000")
    w = (await _request(gql, walt, amount="12000"))["withdrawal"]
    blank = await gql.data(REJECT, {"id": w["id"], "reason": "  "}, token=admin)
    assert (blank["rejectWithdrawal"]["code"], blank["rejectWithdrawal"]["field"]) == (
        "VALIDATION_FAILED",
        "reason",
    )
    done = await gql.data(
        REJECT, {"id": w["id"], "reason": "address on a sanctions list"}, token=admin
    )
    rejected = done["rejectWithdrawal"]["withdrawal"]
    assert (rejected["status"], rejected["reviewReason"]) == (
        "REJECTED",
        "address on a sanctions list",
    )
    assert (await balances(rt, walt.uid))["USDT"] == (Decimal(15000), ZERO)
    assert (await withdrawal_worker.process_approved_withdrawals(rt)).sent == []
    cancel = await gql.data(CANCEL, {"id": w["id"]}, token=walt.token)
    assert cancel["cancelWithdrawal"]["code"] == "WITHDRAWAL_STATUS_CONFLICT"


async def test_review_is_admin_only(gql, rt, walt):
    await deposit_on_chain(rt, walt.uid, "USDT", "14000")
    w = (await _request(gql, walt, amount="12000"))["withdrawal"]
    eve = await make_withdrawer(gql, rt, "eve@example.com")
    for token in (walt.token, eve.token):
        approve = await gql.data(APPROVE, {"id": w["id"]}, token=token)
        assert approve["approveWithdrawal"]["code"] == "FORBIDDEN"
        reject = await gql.data(REJECT, {"id": w["id"], "reason": "x"}, token=token)
        assert reject["rejectWithdrawal"]["code"] == "FORBIDDEN"
    anonymous = await gql.data(APPROVE, {"id": w["id"]})
    assert anonymous["approveWithdrawal"]["code"] == "UNAUTHENTICATED"
    body = await gql(PENDING, {"first": 5}, token=walt.token)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert (await _withdrawal_rows(rt))[0].status == "PENDING_REVIEW"
    assert (await balances(rt, walt.uid))["USDT"] == (Decimal(2999), Decimal(12001))


async def test_admins_cannot_review_their_own_withdrawal(gql, rt):
    w = await make_withdrawer(gql, rt, "boss@example.com")
    async with rt.sessions() as session, session.begin():
        await session.execute(update(User).where(User.id == w.uid).values(role="ADMIN"))
    await deposit_on_chain(rt, w.uid, "USDT", "15000")
    mine = (await _request(gql, w, amount="12000"))["withdrawal"]
    result = await gql.data(APPROVE, {"id": mine["id"]}, token=w.token)
    assert result["approveWithdrawal"]["code"] == "FORBIDDEN"


@pytest.mark.parametrize("bad_id", ["", "nonsense", "VXNlcjox", "V2l0aGRyYXdhbDo5OTk="])
async def test_bad_or_unknown_ids_are_typed_errors(gql, rt, walt, bad_id):
    admin, _ = await admin_token(gql, rt)
    result = (await gql.data(APPROVE, {"id": bad_id}, token=admin))["approveWithdrawal"]
    # "VXNlcjox" is User:1 (another type); the last one is Withdrawal:999 (unknown)
    expected = "NOT_FOUND" if bad_id.startswith("V2l0") else "VALIDATION_FAILED"
    assert (result["code"], result["field"]) == (expected, "id")


# --- cancel ------------------------------------------------------------------------------


async def test_cancel_releases_the_hold_until_it_is_sent(gql, rt, walt):
    eve = await make_withdrawer(gql, rt, "eve@example.com")
    a = (await _request(gql, walt, key="a"))["withdrawal"]
    theirs = await gql.data(CANCEL, {"id": a["id"]}, token=eve.token)
    assert theirs["cancelWithdrawal"]["code"] == "NOT_FOUND"
    done = (await gql.data(CANCEL, {"id": a["id"]}, token=walt.token))["cancelWithdrawal"]
    assert done["withdrawal"]["status"] == "CANCELED"
    assert (await balances(rt, walt.uid))["USDT"] == (Decimal(1000), ZERO)
    again = (await gql.data(CANCEL, {"id": a["id"]}, token=walt.token))["cancelWithdrawal"]
    assert again["code"] == "WITHDRAWAL_STATUS_CONFLICT"

    b = (await _request(gql, walt, key="b"))["withdrawal"]
    await withdrawal_worker.process_approved_withdrawals(rt)
    late = (await gql.data(CANCEL, {"id": b["id"]}, token=walt.token))["cancelWithdrawal"]
    assert (late["code"], late["message"]) == (
        "WITHDRAWAL_STATUS_CONFLICT",
        "A SENT withdrawal cannot be canceled",
    )
    assert (await balances(rt, walt.uid))["USDT"] == (Decimal(899), ZERO)
    aid, bid = _pk(a["id"]), _pk(b["id"])
    assert await status_events(rt) == [
        (aid, None, "APPROVED"),
        (aid, "APPROVED", "CANCELED"),
        (bid, None, "APPROVED"),
        (bid, "APPROVED", "SENT"),
    ]


async def test_a_withdrawal_waiting_for_review_can_be_canceled(gql, rt, walt):
    await deposit_on_chain(rt, walt.uid, "USDT", "14000")
    w = (await _request(gql, walt, amount="12000"))["withdrawal"]
    done = (await gql.data(CANCEL, {"id": w["id"]}, token=walt.token))["cancelWithdrawal"]
    assert done["withdrawal"]["status"] == "CANCELED"
    assert (await balances(rt, walt.uid))["USDT"] == (Decimal(15000), ZERO)


# --- hot wallet: shortfall, refill, sweep ------------------------------------------------


async def test_a_payout_the_hot_wallet_cannot_cover_waits_until_an_admin_refills_it(
    gql, rt, walt, settings_override
):
    admin, _ = await admin_token(gql, rt)
    settings_override(hot_wallet_cap_usd=Decimal(50))
    assert (await withdrawal_worker.process_approved_withdrawals(rt)).swept == {
        "USDT": Decimal(950)
    }
    assert await custody(rt, "USDT") == withdrawal_admin.Custody("USDT", Decimal(50), Decimal(950))

    w = (await _request(gql, walt, amount="80"))["withdrawal"]
    run = await withdrawal_worker.process_approved_withdrawals(rt)
    assert (run.sent, run.waiting, run.swept) == ([], [_pk(w["id"])], {})
    node = (await gql.data(NODE, {"id": w["id"]}, token=walt.token))["node"]
    assert node["status"] == "APPROVED"

    too_much = await gql.data(REFILL, {"cur": "USDT", "amount": "951"}, token=admin)
    assert too_much["refillHotWallet"]["code"] == "INSUFFICIENT_FUNDS"
    forbidden = await gql.data(REFILL, {"cur": "USDT", "amount": "30"}, token=walt.token)
    assert forbidden["refillHotWallet"]["code"] == "FORBIDDEN"
    fiat = await gql.data(REFILL, {"cur": "USD", "amount": "30"}, token=admin)
    assert fiat["refillHotWallet"]["code"] == "WITHDRAWAL_NOT_SUPPORTED"
    refill = await gql.data(REFILL, {"cur": "USDT", "amount": "30"}, token=admin)
    assert refill["refillHotWallet"] == {
        "__typename": "CustodyPayload",
        "currency": "USDT",
        "hotWallet": "80.000000",
        "coldStorage": "920.000000",
    }
    run = await withdrawal_worker.process_approved_withdrawals(rt)
    assert run.sent == [_pk(w["id"])]
    assert await custody(rt, "USDT") == withdrawal_admin.Custody("USDT", ZERO, Decimal(920))
    assert (await balances(rt, walt.uid))["USDT"] == (Decimal(919), ZERO)


async def test_the_worker_sweeps_the_hot_wallet_above_its_cap_to_cold_storage(
    gql, rt, walt, settings_override
):
    await deposit_on_chain(rt, walt.uid, "USDT", "69000")  # hot wallet: 70,000 USDT
    await deposit_on_chain(rt, walt.uid, "BTC", "1")  # 90,000 USD
    run = await withdrawal_worker.process_approved_withdrawals(rt)
    # BTC: the cap is 0.555555555... BTC; the sweep rounds down to whole satoshis
    assert run.swept == {"USDT": Decimal(20000), "BTC": Decimal("0.44444444")}
    assert await custody(rt, "USDT") == withdrawal_admin.Custody(
        "USDT", Decimal(50000), Decimal(20000)
    )
    assert await custody(rt, "BTC") == withdrawal_admin.Custody(
        "BTC", Decimal("0.55555556"), Decimal("0.44444444")
    )
    assert (await withdrawal_worker.process_approved_withdrawals(rt)).swept == {}  # nothing above

    settings_override(hot_wallet_caps_usd={"USDT": Decimal(1000)})
    assert (await withdrawal_worker.process_approved_withdrawals(rt)).swept == {
        "USDT": Decimal(49000)
    }
    assert (await custody(rt, "USDT")).hot_wallet == Decimal(1000)
    # users' balances never moved
    assert (await balances(rt, walt.uid))["USDT"] == (Decimal(70000), ZERO)


# --- idempotency -------------------------------------------------------------------------


async def test_same_key_same_request_returns_the_same_withdrawal(gql, rt, walt):
    first = await _request(gql, walt)
    again = await _request(gql, walt)  # a fresh code, same request
    assert again == first
    other = await _request(gql, walt, amount="101")
    assert (other["code"], other["field"]) == ("IDEMPOTENCY_KEY_REUSED", "idempotencyKey")
    other_address = await _request(gql, walt, to=ETH_ADDRESS.lower())
    assert other_address["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert len(await _withdrawal_rows(rt)) == 1
    assert (await balances(rt, walt.uid))["USDT"] == (Decimal(899), Decimal(101))


async def test_five_concurrent_duplicates_make_one_withdrawal_and_identical_answers(gql, rt, walt):
    variables = _vars(walt)  # the same code in all five
    answers = await asyncio.gather(
        *(gql.data(REQUEST, variables, token=walt.token) for _ in range(5))
    )
    assert all(answer == answers[0] for answer in answers)
    assert answers[0]["requestWithdrawal"]["__typename"] == "WithdrawalPayload"
    assert len(await _withdrawal_rows(rt)) == 1
    assert await _hold_count(rt) == 1
    assert (await balances(rt, walt.uid))["USDT"] == (Decimal(899), Decimal(101))


async def test_a_failed_attempt_burns_neither_the_key_nor_the_code(gql, rt, walt):
    code = walt.code()
    poor = await _request(gql, walt, amount="1500", code=code)
    assert poor["code"] == "INSUFFICIENT_FUNDS"
    await deposit_on_chain(rt, walt.uid, "USDT", "1000")
    ok = await _request(gql, walt, amount="1500", code=code)  # rolled back: still unused
    assert ok["withdrawal"]["status"] == "APPROVED"


# --- concurrency -------------------------------------------------------------------------


async def _cheap_usdt(rt) -> None:
    """Minimum 1 and no fee, so "withdrawals of 1" are possible."""
    async with rt.sessions() as session, session.begin():
        await session.execute(
            update(Currency)
            .where(Currency.code == "USDT")
            .values(min_withdrawal=Decimal(1), withdrawal_fee=ZERO)
        )


async def test_200_concurrent_withdrawals_of_1_against_100_exactly_100_succeed(gql, rt):
    """Targets ``place_withdrawal``, the step after the second factor, exactly as
    ``request_withdrawal`` runs it: its own transaction, the user row locked through
    ``lock_user``. A TOTP code works once per 30 s step, so 200 honest
    concurrent codes cannot exist; the second factor is covered by the API tests above
    and by the recovery-code concurrency test below, which runs the whole mutation."""
    w = await make_withdrawer(gql, rt)
    await _cheap_usdt(rt)
    await deposit_on_chain(rt, w.uid, "USDT", "100")
    request = WithdrawalRequest(currency="USDT", amount=Decimal(1), destination_address=ETH_ADDRESS)

    async def one() -> str:
        async def work(session):
            user = await lock_user(session, w.uid)
            return await place_withdrawal(session, rt=rt, user=user, request=request)

        try:
            await in_transaction(rt.sessions, work)
        except InsufficientFunds:
            return "insufficient"
        return "ok"

    outcomes = await asyncio.gather(*(one() for _ in range(200)))
    assert outcomes.count("ok") == 100 and outcomes.count("insufficient") == 100
    assert (await balances(rt, w.uid))["USDT"] == (ZERO, Decimal(100))
    assert len(await _withdrawal_rows(rt)) == 100
    assert await _hold_count(rt) == 100
    run = await withdrawal_worker.process_approved_withdrawals(rt, limit=200)
    assert len(run.sent) == 100
    assert (await balances(rt, w.uid))["USDT"] == (ZERO, ZERO)
    assert (await custody(rt, "USDT")).hot_wallet == ZERO


async def test_concurrent_requests_through_the_api_with_recovery_codes(gql, rt):
    """The whole mutation, second factor included, 10 at once against funds for 5."""
    w = await make_withdrawer(gql, rt)
    await _cheap_usdt(rt)
    await deposit_on_chain(rt, w.uid, "USDT", "5")
    answers = await asyncio.gather(
        *(
            gql.data(REQUEST, _vars(w, amount="1", key=f"r{i}", code=code), token=w.token)
            for i, code in enumerate(w.recovery_codes)
        )
    )
    kinds = sorted(a["requestWithdrawal"].get("code", "OK") for a in answers)
    assert kinds == ["INSUFFICIENT_FUNDS"] * 5 + ["OK"] * 5
    assert (await balances(rt, w.uid))["USDT"] == (ZERO, Decimal(5))


async def test_several_workers_send_each_withdrawal_exactly_once(gql, rt, walt):
    await _cheap_usdt(rt)
    for i in range(12):
        await _request(gql, walt, amount="10", key=f"k{i}")
    runs = await asyncio.gather(
        *(withdrawal_worker.process_approved_withdrawals(rt, limit=5) for _ in range(4))
    )
    sent = [wid for run in runs for wid in run.sent]
    while len(sent) < 12:  # a worker that found nothing unlocked stopped early
        sent += (await withdrawal_worker.process_approved_withdrawals(rt)).sent
    assert sorted(sent) == [w.id for w in await _withdrawal_rows(rt)]
    async with rt.sessions() as session:
        entries = await session.scalar(
            select(func.count()).select_from(JournalEntry).where(JournalEntry.kind == "WITHDRAWAL")
        )
    assert entries == 12
    assert (await balances(rt, walt.uid))["USDT"] == (Decimal(880), ZERO)


# --- the broadcaster edge ----------------------------------------------------------------


class RefusingNetwork:
    async def broadcast(self, payout: Payout) -> str:
        raise PayoutRejected(f"address {payout.destination_address} is blacklisted")


class BusyNetwork:
    async def broadcast(self, payout: Payout) -> str:
        raise TransientError("node unreachable")


async def test_a_payout_refused_by_the_network_fails_and_releases_the_hold(gql, rt, walt):
    w = (await _request(gql, walt))["withdrawal"]
    busy = await withdrawal_worker.process_approved_withdrawals(rt, broadcaster=BusyNetwork())
    assert busy.waiting == [_pk(w["id"])]
    refused = await withdrawal_worker.process_approved_withdrawals(
        rt, broadcaster=RefusingNetwork()
    )
    assert refused.failed == [_pk(w["id"])]
    node = (await gql.data(NODE, {"id": w["id"]}, token=walt.token))["node"]
    assert node["status"] == "FAILED" and "blacklisted" in node["failureReason"]
    assert (await balances(rt, walt.uid))["USDT"] == (Decimal(1000), ZERO)
    assert (await custody(rt, "USDT")).hot_wallet == Decimal(1000)


async def test_the_background_loop_pays_out(gql, rt, walt, settings_override):
    settings_override(withdrawal_worker_interval_seconds=0.05)
    w = (await _request(gql, walt))["withdrawal"]
    jobs = add_withdrawal_jobs(PeriodicJobs(rt))
    jobs.start()
    try:
        for _ in range(200):
            rows = await _withdrawal_rows(rt)
            if rows[0].status == "SENT":
                break
            await asyncio.sleep(0.02)
    finally:
        await jobs.stop()
    assert rows[0].status == "SENT" and rows[0].id == _pk(w["id"])


async def test_the_background_loop_can_be_disabled(rt, settings_override):
    settings_override(withdrawal_worker_interval_seconds=0)
    assert add_withdrawal_jobs(PeriodicJobs(rt)).jobs == []


# --- queries and privacy -----------------------------------------------------------------


async def test_my_withdrawals_page_newest_first_and_filter_by_status(gql, rt, walt):
    eve = await make_withdrawer(gql, rt, "eve@example.com")
    await deposit_on_chain(rt, eve.uid, "USDT", "100")
    await _request(gql, eve, amount="10", key="eve")
    ids = [
        (await _request(gql, walt, amount="10", key=f"k{i}"))["withdrawal"]["id"] for i in range(3)
    ]
    await gql.data(CANCEL, {"id": ids[0]}, token=walt.token)
    page = (await gql.data(MY_WITHDRAWALS, {"first": 2}, token=walt.token))["withdrawals"]
    assert [e["node"]["id"] for e in page["edges"]] == [ids[2], ids[1]]
    assert page["pageInfo"]["hasNextPage"] is True
    rest = await gql.data(
        MY_WITHDRAWALS, {"first": 2, "after": page["pageInfo"]["endCursor"]}, token=walt.token
    )
    assert [e["node"]["id"] for e in rest["withdrawals"]["edges"]] == [ids[0]]
    canceled = await gql.data(MY_WITHDRAWALS, {"first": 5, "status": "CANCELED"}, token=walt.token)
    assert [e["node"]["status"] for e in canceled["withdrawals"]["edges"]] == ["CANCELED"]
    anonymous = await gql(MY_WITHDRAWALS, {"first": 5})
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_withdrawal_node_is_visible_to_its_owner_and_admins_only(gql, rt, walt):
    eve = await make_withdrawer(gql, rt, "eve@example.com")
    admin, _ = await admin_token(gql, rt)
    w = (await _request(gql, walt))["withdrawal"]
    mine = (await gql.data(NODE, {"id": w["id"]}, token=walt.token))["node"]
    assert mine["amount"] == "100.000000" and mine["user"] == {"email": "walt@example.com"}
    assert (await gql.data(NODE, {"id": w["id"]}, token=eve.token))["node"] is None
    assert (await gql.data(NODE, {"id": w["id"]}))["node"] is None
    seen = (await gql.data(NODE, {"id": w["id"]}, token=admin))["node"]
    assert seen["user"] == {"email": "walt@example.com"}


async def test_many_withdrawal_nodes_load_in_one_batch(gql, rt, walt, sql_statements):
    ids = [
        (await _request(gql, walt, amount="10", key=f"k{i}"))["withdrawal"]["id"] for i in range(4)
    ]
    query = "{ " + " ".join(f'n{i}: node(id: "{gid}") {{ id }}' for i, gid in enumerate(ids)) + " }"
    sql_statements.reset()
    data = await gql.data(query, token=walt.token)
    assert [data[f"n{i}"]["id"] for i in range(4)] == ids
    assert sql_statements.count == 2  # authenticate + one batched load


async def test_withdrawal_ids_use_the_reference_of_their_hold(gql, rt, walt):
    w = (await _request(gql, walt))["withdrawal"]
    async with rt.sessions() as session:
        hold = (await session.scalars(select(Hold))).one()
    assert hold.reference == f"withdrawal:{_pk(w['id'])}"
    assert hold.amount == Decimal(101)
    assert datetime.fromisoformat(w["createdAt"]) == rt.now()


HISTORY_OF_WITHDRAWALS = (
    "{ transactions(first: 10, kind: [WITHDRAWAL, RELEASE]) {"
    " edges { node { kind amount fee status reference } } } }"
)


async def test_withdrawals_leave_security_events_and_a_readable_history(gql, rt, walt):
    admin, _ = await admin_token(gql, rt)
    await deposit_on_chain(rt, walt.uid, "USDT", "14000")
    w = (await _request(gql, walt, amount="12000"))["withdrawal"]
    await gql.data(APPROVE, {"id": w["id"]}, token=admin)
    async with rt.sessions() as session:
        events = (
            await session.execute(
                select(SecurityEvent.kind, SecurityEvent.details)
                .where(SecurityEvent.user_id == walt.uid)
                .where(SecurityEvent.kind.like("WITHDRAWAL%"))
                .order_by(SecurityEvent.id)
            )
        ).all()
    wid = _pk(w["id"])
    assert [(kind, details["withdrawalId"]) for kind, details in events] == [
        ("WITHDRAWAL_REQUESTED", wid),
        ("WITHDRAWAL_APPROVED", wid),
    ]

    edges = (await gql.data(HISTORY_OF_WITHDRAWALS, token=walt.token))["transactions"]["edges"]
    (node,) = [e["node"] for e in edges]
    assert node == {
        "kind": "WITHDRAWAL",
        "amount": "-12001.000000",
        "fee": "1.000000",
        "status": "APPROVED",
        "reference": f"withdrawal:{wid}",
    }
