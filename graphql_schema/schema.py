"""Schema assembly: Query, Mutation, Subscription."""

from __future__ import annotations

import decimal
from collections.abc import AsyncGenerator
from datetime import datetime

import strawberry
from graphql import GraphQLError
from strawberry import relay
from strawberry.extensions import ValidationCache
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from app.domain.api_keys import Scope
from graphql_schema.access import public, requires_scope, session_only
from graphql_schema.extensions import (
    ErrorPolicy,
    FreshLoadersPerOperation,
    OperationMetrics,
    log_errors,
)
from graphql_schema.limits import DocumentParser, QueryLimits
from graphql_schema.scalars import DecimalScalar
from graphql_schema.types import User, UserConnection
from resolvers import accounts, kyc, money, partner, queries
from resolvers import deposits as deposit_resolvers
from resolvers import staking as staking_resolvers
from resolvers import withdrawals as withdrawal_resolvers


@strawberry.type
class Query:
    node: relay.Node | None = relay.node(
        description="Fetch any object by global ID. Private objects of other users are null.",
        extensions=requires_scope(Scope.READ_ACCOUNT),
    )
    server_time: datetime = strawberry.field(resolver=queries.server_time, extensions=public())
    me: User | None = strawberry.field(
        resolver=queries.me,
        description="The signed-in user; null when anonymous.",
        extensions=requires_scope(Scope.READ_ACCOUNT),
    )
    users: UserConnection = strawberry.field(
        resolver=queries.users, description="Admin only.", extensions=session_only()
    )
    currencies = strawberry.field(
        resolver=money.currencies, extensions=requires_scope(Scope.READ_MARKET_DATA)
    )
    transactions = strawberry.field(
        resolver=money.transactions, extensions=requires_scope(Scope.READ_ACCOUNT)
    )
    withdrawals = strawberry.field(
        resolver=withdrawal_resolvers.my_withdrawals, extensions=requires_scope(Scope.READ_ACCOUNT)
    )
    pending_withdrawals = strawberry.field(
        resolver=withdrawal_resolvers.pending_withdrawals, extensions=session_only()
    )
    kyc_queue = strawberry.field(resolver=kyc.kyc_queue, extensions=session_only())
    audit_log = strawberry.field(resolver=kyc.audit_log, extensions=session_only())
    deposit = strawberry.field(
        resolver=deposit_resolvers.deposit, extensions=requires_scope(Scope.READ_ACCOUNT)
    )
    deposits = strawberry.field(
        resolver=deposit_resolvers.deposits, extensions=requires_scope(Scope.READ_ACCOUNT)
    )
    deposit_address = strawberry.field(
        resolver=deposit_resolvers.deposit_address, extensions=session_only()
    )
    api_keys = strawberry.field(resolver=partner.my_api_keys, extensions=session_only())
    security_events = strawberry.field(resolver=partner.security_events, extensions=session_only())
    staking_products = strawberry.field(
        resolver=staking_resolvers.staking_products,
        extensions=requires_scope(Scope.READ_MARKET_DATA),
    )
    staking_quote = strawberry.field(
        resolver=staking_resolvers.staking_quote, extensions=requires_scope(Scope.READ_MARKET_DATA)
    )


@strawberry.type
class Mutation:
    register = strawberry.mutation(resolver=accounts.register, extensions=session_only())
    verify_email = strawberry.mutation(resolver=accounts.verify_email, extensions=session_only())
    resend_verification_email = strawberry.mutation(
        resolver=accounts.resend_verification_email, extensions=session_only()
    )
    login = strawberry.mutation(resolver=accounts.login, extensions=session_only())
    refresh_token = strawberry.mutation(resolver=accounts.refresh_token, extensions=session_only())
    logout = strawberry.mutation(resolver=accounts.logout, extensions=session_only())
    request_password_reset = strawberry.mutation(
        resolver=accounts.request_password_reset, extensions=session_only()
    )
    reset_password = strawberry.mutation(
        resolver=accounts.reset_password, extensions=session_only()
    )
    enable_two_factor = strawberry.mutation(
        resolver=accounts.enable_two_factor, extensions=session_only()
    )
    confirm_two_factor = strawberry.mutation(
        resolver=accounts.confirm_two_factor, extensions=session_only()
    )
    disable_two_factor = strawberry.mutation(
        resolver=accounts.disable_two_factor, extensions=session_only()
    )
    transfer = strawberry.mutation(resolver=money.transfer, extensions=session_only())
    submit_kyc = strawberry.mutation(resolver=kyc.submit_kyc, extensions=session_only())
    review_kyc = strawberry.mutation(resolver=kyc.review_kyc, extensions=session_only())
    request_withdrawal = strawberry.mutation(
        resolver=withdrawal_resolvers.request_withdrawal, extensions=session_only()
    )
    cancel_withdrawal = strawberry.mutation(
        resolver=withdrawal_resolvers.cancel_withdrawal, extensions=session_only()
    )
    approve_withdrawal = strawberry.mutation(
        resolver=withdrawal_resolvers.approve_withdrawal, extensions=session_only()
    )
    reject_withdrawal = strawberry.mutation(
        resolver=withdrawal_resolvers.reject_withdrawal, extensions=session_only()
    )
    refill_hot_wallet = strawberry.mutation(
        resolver=withdrawal_resolvers.refill_hot_wallet, extensions=session_only()
    )
    create_deposit = strawberry.mutation(
        resolver=deposit_resolvers.create_deposit, extensions=session_only()
    )
    credit_crypto_deposit = strawberry.mutation(
        resolver=deposit_resolvers.credit_crypto_deposit, extensions=session_only()
    )
    create_api_key = strawberry.mutation(resolver=partner.create_api_key, extensions=session_only())
    revoke_api_key = strawberry.mutation(resolver=partner.revoke_api_key, extensions=session_only())
    stake = strawberry.mutation(resolver=staking_resolvers.stake, extensions=session_only())
    unstake = strawberry.mutation(resolver=staking_resolvers.unstake, extensions=session_only())
    set_stake_auto_renew = strawberry.mutation(
        resolver=staking_resolvers.set_stake_auto_renew, extensions=session_only()
    )
    create_staking_product = strawberry.mutation(
        resolver=staking_resolvers.create_staking_product, extensions=session_only()
    )
    update_staking_product = strawberry.mutation(
        resolver=staking_resolvers.update_staking_product, extensions=session_only()
    )


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="The server clock, every `everySeconds` seconds.", extensions=public()
    )
    async def server_time(
        self, info: strawberry.Info, every_seconds: int = 1, count: int | None = None
    ) -> AsyncGenerator[datetime, None]:
        async for tick in queries.server_time_ticks(info, every_seconds, count):
            yield tick


class CryptoSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        log_errors(errors)


schema = CryptoSchema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    extensions=[
        OperationMetrics,
        ErrorPolicy,
        FreshLoadersPerOperation,
        # Parsing and validating the same documents again is most of the CPU of a small
        # query; cache both (keyed by the document text). DocumentParser is the parser
        # cache admission uses too (with the token limit); QueryLimits adds the depth,
        # alias and introspection rules (built once) and the execution timeout.
        DocumentParser,
        QueryLimits,
        lambda: ValidationCache(maxsize=512),
    ],
    scalar_overrides={decimal.Decimal: DecimalScalar},
    config=StrawberryConfig(disable_field_suggestions=True),
)
