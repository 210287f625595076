"""Schema assembly: Query, Mutation, Subscription."""

from __future__ import annotations

import decimal
from collections.abc import AsyncGenerator
from datetime import datetime

import strawberry
from graphql import GraphQLError
from strawberry import relay
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from graphql_schema.extensions import (
    ErrorPolicy,
    FreshLoadersPerOperation,
    OperationMetrics,
    log_errors,
)
from graphql_schema.scalars import DecimalScalar
from graphql_schema.types import User, UserConnection
from resolvers import accounts, money, queries


@strawberry.type
class Query:
    node: relay.Node | None = relay.node(
        description="Fetch any object by global ID. Private objects of other users are null."
    )
    server_time: datetime = strawberry.field(resolver=queries.server_time)
    me: User | None = strawberry.field(
        resolver=queries.me, description="The signed-in user; null when anonymous."
    )
    users: UserConnection = strawberry.field(resolver=queries.users, description="Admin only.")
    currencies = strawberry.field(resolver=money.currencies)
    transactions = strawberry.field(resolver=money.transactions)


@strawberry.type
class Mutation:
    register = strawberry.mutation(resolver=accounts.register)
    verify_email = strawberry.mutation(resolver=accounts.verify_email)
    resend_verification_email = strawberry.mutation(resolver=accounts.resend_verification_email)
    login = strawberry.mutation(resolver=accounts.login)
    refresh_token = strawberry.mutation(resolver=accounts.refresh_token)
    logout = strawberry.mutation(resolver=accounts.logout)
    request_password_reset = strawberry.mutation(resolver=accounts.request_password_reset)
    reset_password = strawberry.mutation(resolver=accounts.reset_password)
    enable_two_factor = strawberry.mutation(resolver=accounts.enable_two_factor)
    confirm_two_factor = strawberry.mutation(resolver=accounts.confirm_two_factor)
    disable_two_factor = strawberry.mutation(resolver=accounts.disable_two_factor)
    transfer = strawberry.mutation(resolver=money.transfer)


@strawberry.type
class Subscription:
    @strawberry.subscription(description="The server clock, every `everySeconds` seconds.")
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
        # query; cache both (keyed by the document text).
        lambda: ParserCache(maxsize=512),
        lambda: ValidationCache(maxsize=512),
    ],
    scalar_overrides={decimal.Decimal: DecimalScalar},
    config=StrawberryConfig(disable_field_suggestions=True),
)
