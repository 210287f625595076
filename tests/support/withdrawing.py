"""Helpers for withdrawal, KYC and audit tests: users who may withdraw, a TOTP code
generator that walks the runtime clock forward, admins, custody reads."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pyotp
from sqlalchemy import select, update

from app.ledger import journal as ledger
from app.ledger.rules import AccountKind, move
from app.runtime import Runtime, utcnow
from app.wallets.withdrawal_admin import Custody, get_custody
from db.models import LedgerAccount, OutboxEvent, User
from db.session import in_transaction
from tests.support.documents import CONFIRM_2FA, ENABLE_2FA, login, register, signed_in
from tests.support.money import user_id, verified_user

ETH_ADDRESS = "0x52908400098527886E0F7030069857D2E4169EE7"
BTC_ADDRESS = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
SOL_ADDRESS = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM"

WITHDRAWAL_FIELDS = (
    "id currency amount fee usdValue destinationAddress status txHash createdAt"
    " reviewReason failureReason"
)


def error_fields(*names: str) -> str:
    """``field`` of the error types a union has (fragments on others do not validate)."""
    return " ".join(f"... on {name} {{ field }}" for name in names)


REQUEST = (
    "mutation($cur: String!, $amount: Decimal!, $to: String!, $code: String!, $key: String!) {"
    " requestWithdrawal(currency: $cur, amount: $amount, destinationAddress: $to,"
    " totpCode: $code, idempotencyKey: $key) { __typename"
    f" ... on WithdrawalPayload {{ withdrawal {{ {WITHDRAWAL_FIELDS} }} }}"
    " ... on Error { code message }"
    + error_fields(
        "ValidationFailed",
        "InsufficientFunds",
        "InvalidAddress",
        "BelowMinimumWithdrawal",
        "DailyLimitExceeded",
        "InvalidTwoFactorCode",
        "WithdrawalNotSupported",
        "UnknownCurrency",
        "CurrencyDisabled",
        "IdempotencyKeyReused",
    )
    + " } }"
)


def _review_document(name: str, extra_args: str = "", extra_vars: str = "") -> str:
    return (
        f"mutation($id: ID!{extra_vars}) {{ {name}(id: $id{extra_args}) {{ __typename"
        f" ... on WithdrawalPayload {{ withdrawal {{ {WITHDRAWAL_FIELDS} }} }}"
        f" ... on Error {{ code message }} {error_fields('ValidationFailed', 'NotFound')} }} }}"
    )


CANCEL = _review_document("cancelWithdrawal")
APPROVE = _review_document("approveWithdrawal")
REJECT = _review_document("rejectWithdrawal", ", reason: $reason", ", $reason: String!")
REFILL = (
    "mutation($cur: String!, $amount: Decimal!) { refillHotWallet(currency: $cur, amount: $amount)"
    " { __typename ... on CustodyPayload { currency hotWallet coldStorage }"
    " ... on Error { code message }"
    + error_fields("ValidationFailed", "InsufficientFunds", "WithdrawalNotSupported")
    + " } }"
)
MY_WITHDRAWALS = (
    "query($first: Int!, $after: String, $status: WithdrawalStatus) {"
    " withdrawals(first: $first, after: $after, status: $status) {"
    f" edges {{ cursor node {{ {WITHDRAWAL_FIELDS} }} }}"
    " pageInfo { hasNextPage hasPreviousPage endCursor } } }"
)
PENDING = (
    "query($first: Int!, $after: String) { pendingWithdrawals(first: $first, after: $after) {"
    " edges { node { id amount status user { email } } } pageInfo { hasNextPage endCursor } } }"
)
NODE = (
    "query($id: ID!) { node(id: $id) { __typename"
    f" ... on Withdrawal {{ {WITHDRAWAL_FIELDS} user {{ email }} }} }} }}"
)


def noon_today() -> datetime:
    """A fixed moment well inside the current UTC day (daily limits are per UTC day)."""
    return datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)


class Pinned:
    """A fixed clock for ``rt.clock`` (conftest puts the real one back after each test)."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


def pin_clock(rt: Runtime) -> None:
    """Pin the clock at noon UTC today, unless a test already pinned it."""
    if rt.clock is utcnow:
        rt.clock = Pinned(noon_today())


@contextmanager
def real_clock(rt: Runtime) -> Iterator[None]:
    """Sign-ins issue access tokens at ``rt.now()`` and PyJWT checks them against real
    time, so tokens are issued on the real clock."""
    pinned = rt.clock
    rt.clock = utcnow
    try:
        yield
    finally:
        rt.clock = pinned


def advance_clock(rt: Runtime, delta: timedelta) -> datetime:
    moment = rt.now() + delta
    rt.clock = Pinned(moment)
    return moment


@dataclass
class Withdrawer:
    """A signed-in user; ``code()`` gives a fresh TOTP code each call (moving the clock
    one 30 s step forward, because a code's step can only be used once)."""

    rt: Runtime
    email: str
    token: str
    uid: int
    secret: str | None
    recovery_codes: list[str]

    def code(self) -> str:
        assert self.secret is not None
        moment = advance_clock(self.rt, timedelta(seconds=30))
        return pyotp.TOTP(self.secret).at(moment)

    def stale_code(self) -> str:
        """A well-formed code of a step far away: wrong."""
        assert self.secret is not None
        return pyotp.TOTP(self.secret).at(self.rt.now() + timedelta(days=3))


async def make_withdrawer(
    gql,
    rt: Runtime,
    email: str = "walt@example.com",
    *,
    kyc_level: int = 1,
    two_factor: bool = True,
    verified: bool = True,
) -> Withdrawer:
    """Sign in, pin the clock at noon UTC today (if not pinned yet), set the KYC level
    and turn two-factor on through the API."""
    with real_clock(rt):
        auth = await verified_user(gql, rt, email) if verified else await signed_in(gql, email)
    uid = await user_id(rt, email)
    async with rt.sessions() as session, session.begin():
        await session.execute(update(User).where(User.id == uid).values(kyc_level=kyc_level))
    pin_clock(rt)
    secret, codes = None, []
    if two_factor:
        setup = (await gql.data(ENABLE_2FA, token=auth["accessToken"]))["enableTwoFactor"]
        secret = setup["secret"]
        confirm_code = pyotp.TOTP(secret).at(rt.now())
        confirmed = await gql.data(CONFIRM_2FA, {"code": confirm_code}, token=auth["accessToken"])
        codes = confirmed["confirmTwoFactor"]["recoveryCodes"]
    return Withdrawer(rt, email, auth["accessToken"], uid, secret, codes)


async def admin_token(gql, rt: Runtime, email: str = "root@example.com") -> tuple[str, int]:
    with real_clock(rt):
        await register(gql, email)
        async with rt.sessions() as session, session.begin():
            await session.execute(update(User).where(User.email == email).values(role="ADMIN"))
        token = (await login(gql, email))["accessToken"]
    return token, await user_id(rt, email)


async def deposit_on_chain(rt: Runtime, uid: int, currency: str, amount: str) -> None:
    """A crypto deposit by the ledger's convention: HOT_WALLET -x, user AVAILABLE +x (so
    the hot wallet really holds what the user can withdraw)."""

    async def work(session):
        await ledger.post(
            session,
            kind="CRYPTO_DEPOSIT",
            legs=move(
                Decimal(amount),
                ledger.system_account(currency, AccountKind.HOT_WALLET),
                ledger.user_account(uid, currency),
            ),
            memo="test deposit",
        )

    await in_transaction(rt.sessions, work)


async def custody(rt: Runtime, currency: str) -> Custody:
    async with rt.sessions() as session:
        return await get_custody(session, currency)


async def fees_collected(rt: Runtime, currency: str) -> Decimal:
    async with rt.sessions() as session:
        balance = await session.scalar(
            select(LedgerAccount.balance).where(
                LedgerAccount.user_id.is_(None),
                LedgerAccount.currency == currency,
                LedgerAccount.kind == AccountKind.FEES.value,
            )
        )
    return balance or Decimal(0)


async def status_events(rt: Runtime) -> list[tuple[int, str | None, str]]:
    """(withdrawal id, previous status, status) of every withdrawal.status_changed event."""
    async with rt.sessions() as session:
        rows = (
            await session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.topic == "withdrawal.status_changed")
                .order_by(OutboxEvent.id)
            )
        ).all()
    return [
        (r.payload["withdrawalId"], r.payload["previousStatus"], r.payload["status"]) for r in rows
    ]
