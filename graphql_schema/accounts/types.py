"""Object types: the User node and mutation payloads."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

import strawberry
from strawberry import relay
from strawberry.types import Info

from app.risk.status import risk_status
from db.models import User as UserRow
from graphql_schema.exchanges.types import ExchangeAccountNode, exchange_accounts_of
from graphql_schema.ids import node_keys
from graphql_schema.risk.types import RiskStatus
from graphql_schema.staking.types import StakeNode, StakingRewardConnection, rewards_of, stakes_of
from graphql_schema.trading.enums import OrderStatus
from graphql_schema.trading.fields import fills_of, orders_of, portfolio_of
from graphql_schema.trading.portfolio import Portfolio
from graphql_schema.trading.types import FillConnection, OrderConnection
from graphql_schema.wallets.types import Wallet

N = TypeVar("N")
R = TypeVar("R")


@strawberry.enum
class Role(Enum):
    USER = "USER"
    ADMIN = "ADMIN"


@strawberry.type(name="User")
class User(relay.Node):
    """An account. Only the account itself (and admins) can load it."""

    id: relay.NodeID[int]
    email: str
    display_name: str
    role: Role
    email_verified: bool
    two_factor_enabled: bool
    created_at: datetime

    handle: str | None
    kyc_level: int

    @strawberry.field(description="A balance per enabled currency.")
    async def wallets(self, info: Info) -> list[Wallet]:
        rows = await info.context.loaders.wallets_by_user_id.load(self.id)
        return [Wallet.from_row(w) for w in rows]

    @strawberry.field(description="Your active stakes, oldest first.")
    async def stakes(self, info: Info) -> list[StakeNode]:
        return await stakes_of(info, self.id)

    @strawberry.field(description="Staking rewards paid to you, newest first.")
    async def staking_rewards(
        self, info: Info, first: int = 20, after: str | None = None
    ) -> StakingRewardConnection:
        return await rewards_of(info, self.id, first, after)

    @strawberry.field(description="Your orders, newest first.")
    async def orders(
        self,
        info: Info,
        status: list[OrderStatus] | None = None,
        symbol: str | None = None,
        first: int = 20,
        after: str | None = None,
    ) -> OrderConnection:
        return await orders_of(info, self.id, status, symbol, first, after)

    @strawberry.field(description="Your fills, newest first.")
    async def fills(self, info: Info, first: int = 20, after: str | None = None) -> FillConnection:
        return await fills_of(info, self.id, first, after)

    @strawberry.field(description="Positions, equity and its history.")
    async def portfolio(self, info: Info) -> Portfolio:
        return await portfolio_of(info, self.id)

    @strawberry.field(description="Your connected exchange accounts, oldest first (only yours).")
    async def exchange_accounts(self, info: Info) -> list[ExchangeAccountNode]:
        return await exchange_accounts_of(info, self.id)

    @strawberry.field(
        description="Your risk limits and the states of the scopes your orders belong to,"
        " each limit's figure now (null on another user)."
    )
    async def risk_status(self, info: Info) -> RiskStatus | None:
        if info.context.user_id != self.id:
            return None
        return RiskStatus.from_status(await risk_status(info.context.rt, user_id=self.id))

    @classmethod
    def from_row(cls, row: UserRow) -> User:
        return cls(
            id=row.id,
            email=row.email,
            display_name=row.display_name,
            role=Role(row.role),
            email_verified=row.email_verified_at is not None,
            two_factor_enabled=row.totp_secret is not None,
            created_at=row.created_at,
            handle=row.handle,
            kyc_level=row.kyc_level,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[User | None]:
        ctx = info.context
        ids = node_keys(node_ids)
        rows = await ctx.loaders.user_by_id.load_many(ids)
        return [
            cls.from_row(row) if row is not None and ctx.can_see_user(row.id) else None
            for row in rows
        ]


@strawberry.type
class UserConnection(relay.Connection[User]):
    """Users, newest first, paged by keyset cursor."""


@strawberry.type
class UserPayload:
    user: User


@strawberry.type
class AuthPayload:
    access_token: str
    access_token_expires_at: datetime
    refresh_token: str
    refresh_token_expires_at: datetime
    user: User

    @classmethod
    def from_signed_in(cls, s: Any) -> AuthPayload:
        return cls(
            access_token=s.access_token,
            access_token_expires_at=s.access_token_expires_at,
            refresh_token=s.refresh_token,
            refresh_token_expires_at=s.refresh_token_expires_at,
            user=User.from_row(s.user),
        )


@strawberry.type
class LogoutPayload:
    revoked: bool


@strawberry.type(
    description="The answer to every accepted registration, whether or not the address "
    "already had an account: a new address gets a verification link, an address with an "
    "account a notice (no enumeration). Sign in once the address is verified."
)
class RegisterPayload:
    accepted: bool = strawberry.field(description="Always true: check your email.")
    email: str = strawberry.field(description="The address, normalised.")


@strawberry.type
class RequestPasswordResetPayload:
    accepted: bool = strawberry.field(
        description="Always true: a reset link is sent if the address has an account, "
        "otherwise a mail saying it has none."
    )


@strawberry.type
class ChangeEmailPayload:
    accepted: bool = strawberry.field(
        description="Always true: the new address gets a confirmation link "
        "(confirmEmailChange), the current one a notice."
    )
    new_email: str


@strawberry.type
class EnableTwoFactorPayload:
    secret: str
    otpauth_uri: str


@strawberry.type
class ConfirmTwoFactorPayload:
    recovery_codes: list[str] = strawberry.field(description="Shown once. Each works once.")
    user: User
