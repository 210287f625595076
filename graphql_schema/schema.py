"""Schema assembly: Query, Mutation, Subscription."""

from __future__ import annotations

import decimal
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry import relay
from strawberry.extensions import ValidationCache
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from app.accounts.domain.api_keys import Scope
from graphql_schema.accounts.types import User, UserConnection
from graphql_schema.gateway.access import public, requires_scope, session_only
from graphql_schema.gateway.extensions import OperationPolicy, log_errors
from graphql_schema.gateway.limits import DocumentParser, QueryLimits
from graphql_schema.scalars import DecimalScalar
from resolvers import (
    backtesting,
    exchanges,
    marketdata,
    paper,
    queries,
    risk,
    trading,
)
from resolvers import exchange_markets as exchange_market_data
from resolvers import notifications as notification_resolvers
from resolvers import staking as staking_resolvers
from resolvers.accounts import accounts, kyc, partner
from resolvers.bots import bots as bot_resolvers
from resolvers.social import copying, social
from resolvers.social import leaderboard as leaderboard_resolvers
from resolvers.wallets import deposits as deposit_resolvers
from resolvers.wallets import money
from resolvers.wallets import withdrawals as withdrawal_resolvers


def _market_data() -> Any:
    return requires_scope(Scope.READ_MARKET_DATA)


def _account() -> Any:
    return requires_scope(Scope.READ_ACCOUNT)


def _trade_mutation(resolver: Any) -> Any:
    """A mutation a session or an API key with the TRADE scope may run."""
    return strawberry.mutation(resolver=resolver, extensions=requires_scope(Scope.TRADE))


@strawberry.type
class Query:
    node: relay.Node | None = relay.node(
        description="Fetch any object by global ID. Private objects of other users are null.",
        extensions=_account(),
    )
    server_time: datetime = strawberry.field(resolver=queries.server_time, extensions=public())
    me: User | None = strawberry.field(
        resolver=queries.me,
        description="The signed-in user; null when anonymous.",
        extensions=_account(),
    )
    users: UserConnection = strawberry.field(
        resolver=queries.users, description="Admin only.", extensions=session_only()
    )
    currencies = strawberry.field(resolver=money.currencies, extensions=_market_data())
    transactions = strawberry.field(resolver=money.transactions, extensions=_account())
    withdrawals = strawberry.field(
        resolver=withdrawal_resolvers.my_withdrawals, extensions=_account()
    )
    pending_withdrawals = strawberry.field(
        resolver=withdrawal_resolvers.pending_withdrawals, extensions=session_only()
    )
    kyc_queue = strawberry.field(resolver=kyc.kyc_queue, extensions=session_only())
    audit_log = strawberry.field(resolver=kyc.audit_log, extensions=session_only())
    deposit = strawberry.field(resolver=deposit_resolvers.deposit, extensions=_account())
    deposits = strawberry.field(resolver=deposit_resolvers.deposits, extensions=_account())
    deposit_address = strawberry.field(
        resolver=deposit_resolvers.deposit_address, extensions=session_only()
    )
    api_keys = strawberry.field(resolver=partner.my_api_keys, extensions=session_only())
    security_events = strawberry.field(resolver=partner.security_events, extensions=session_only())
    staking_products = strawberry.field(
        resolver=staking_resolvers.staking_products, extensions=_market_data()
    )
    staking_quote = strawberry.field(
        resolver=staking_resolvers.staking_quote, extensions=_market_data()
    )
    markets = strawberry.field(resolver=trading.list_markets, extensions=_market_data())
    market = strawberry.field(resolver=trading.market, extensions=_market_data())
    order_book = strawberry.field(resolver=trading.order_book, extensions=_market_data())
    recent_trades = strawberry.field(resolver=trading.recent_trades, extensions=_market_data())
    ticker = strawberry.field(resolver=exchange_market_data.ticker, extensions=_market_data())
    exchange_markets = strawberry.field(
        resolver=exchange_market_data.exchange_markets, extensions=_market_data()
    )
    exchange_trades = strawberry.field(
        resolver=exchange_market_data.exchange_trades, extensions=_market_data()
    )
    candles = strawberry.field(resolver=marketdata.candles, extensions=_market_data())
    market_data_sources = strawberry.field(
        resolver=marketdata.market_data_sources, extensions=_market_data()
    )
    market_trade_series = strawberry.field(
        resolver=marketdata.market_trade_series, extensions=_market_data()
    )
    market_trades = strawberry.field(resolver=marketdata.market_trades, extensions=_market_data())
    notifications = strawberry.field(
        resolver=notification_resolvers.my_notifications,
        extensions=_account(),
    )
    unread_notification_count = strawberry.field(
        resolver=notification_resolvers.unread_notification_count,
        extensions=_account(),
    )
    notification_preferences = strawberry.field(
        resolver=notification_resolvers.notification_preferences,
        extensions=_account(),
    )
    price_alerts = strawberry.field(
        resolver=notification_resolvers.my_price_alerts,
        extensions=_account(),
    )
    leaderboard = strawberry.field(
        resolver=leaderboard_resolvers.leaderboard_query, extensions=_market_data()
    )
    leader = strawberry.field(resolver=social.leader, extensions=_market_data())
    my_leader_profile = strawberry.field(resolver=social.my_leader_profile, extensions=_account())
    follow = strawberry.field(resolver=social.follow, extensions=_account())
    my_follows = strawberry.field(resolver=social.my_follows, extensions=_account())
    my_followers = strawberry.field(resolver=social.my_followers, extensions=_account())
    copies = strawberry.field(resolver=copying.copies, extensions=_account())
    profit_share_settlements = strawberry.field(
        resolver=copying.profit_share_settlements, extensions=_account()
    )
    backtest = strawberry.field(resolver=backtesting.backtest, extensions=_account())
    backtests = strawberry.field(resolver=backtesting.my_backtests, extensions=_account())
    paper_accounts = strawberry.field(resolver=paper.paper_accounts, extensions=_account())
    paper_account = strawberry.field(resolver=paper.paper_account, extensions=_account())
    bots = strawberry.field(resolver=bot_resolvers.my_bots, extensions=_account())
    bot = strawberry.field(resolver=bot_resolvers.bot, extensions=_account())
    preview_bot = strawberry.field(resolver=bot_resolvers.preview_bot, extensions=_account())
    risk_check = strawberry.field(resolver=risk.risk_check, extensions=_account())
    risk_check_amend = strawberry.field(resolver=risk.risk_check_amend, extensions=_account())


def _session_mutation(resolver: Any) -> Any:
    """A mutation only a signed-in session may run (never an API key)."""
    return strawberry.mutation(resolver=resolver, extensions=session_only())


@strawberry.type
class Mutation:
    register = _session_mutation(accounts.register)
    verify_email = _session_mutation(accounts.verify_email)
    set_handle = _session_mutation(accounts.set_handle)
    resend_verification_email = _session_mutation(accounts.resend_verification_email)
    login = _session_mutation(accounts.login)
    refresh_token = _session_mutation(accounts.refresh_token)
    logout = _session_mutation(accounts.logout)
    request_password_reset = _session_mutation(accounts.request_password_reset)
    reset_password = _session_mutation(accounts.reset_password)
    change_password = _session_mutation(accounts.change_password)
    change_email = _session_mutation(accounts.change_email)
    confirm_email_change = _session_mutation(accounts.confirm_email_change)
    enable_two_factor = _session_mutation(accounts.enable_two_factor)
    confirm_two_factor = _session_mutation(accounts.confirm_two_factor)
    disable_two_factor = _session_mutation(accounts.disable_two_factor)
    transfer = _session_mutation(money.transfer)
    submit_kyc = _session_mutation(kyc.submit_kyc)
    review_kyc = _session_mutation(kyc.review_kyc)
    request_withdrawal = _session_mutation(withdrawal_resolvers.request_withdrawal)
    cancel_withdrawal = _session_mutation(withdrawal_resolvers.cancel_withdrawal)
    approve_withdrawal = _session_mutation(withdrawal_resolvers.approve_withdrawal)
    reject_withdrawal = _session_mutation(withdrawal_resolvers.reject_withdrawal)
    refill_hot_wallet = _session_mutation(withdrawal_resolvers.refill_hot_wallet)
    create_deposit = _session_mutation(deposit_resolvers.create_deposit)
    credit_crypto_deposit = _session_mutation(deposit_resolvers.credit_crypto_deposit)
    create_api_key = _session_mutation(partner.create_api_key)
    revoke_api_key = _session_mutation(partner.revoke_api_key)
    stake = _session_mutation(staking_resolvers.stake)
    unstake = _session_mutation(staking_resolvers.unstake)
    set_stake_auto_renew = _session_mutation(staking_resolvers.set_stake_auto_renew)
    create_staking_product = _session_mutation(staking_resolvers.create_staking_product)
    update_staking_product = _session_mutation(staking_resolvers.update_staking_product)
    place_order = _trade_mutation(trading.place_order)
    place_order_list = _trade_mutation(trading.place_order_list)
    cancel_order = _trade_mutation(trading.cancel_order)
    cancel_all_orders = _trade_mutation(trading.cancel_all_orders)
    amend_order = _trade_mutation(trading.amend_order)
    set_trading_enabled = _session_mutation(trading.set_trading_enabled)
    set_market_status = _session_mutation(trading.set_market_status)
    mark_notifications_read = _session_mutation(notification_resolvers.mark_notifications_read)
    update_notification_preferences = _session_mutation(
        notification_resolvers.update_notification_preferences
    )
    create_price_alert = _session_mutation(notification_resolvers.create_price_alert)
    delete_price_alert = _session_mutation(notification_resolvers.delete_price_alert)
    become_leader = _session_mutation(social.become_leader)
    update_leader_profile = _session_mutation(social.update_leader_profile)
    stop_leading = _session_mutation(social.stop_leading)
    invite_follower = _session_mutation(social.invite_follower)
    follow_leader = _session_mutation(social.follow_leader)
    update_follow = _session_mutation(social.update_follow)
    pause_follow = _session_mutation(social.pause_follow)
    resume_follow = _session_mutation(social.resume_follow)
    unfollow_leader = _session_mutation(social.unfollow_leader)
    run_backtest = _session_mutation(backtesting.run_backtest)
    open_paper_account = _trade_mutation(paper.open_paper_account)
    reset_paper_account = _trade_mutation(paper.reset_paper_account)
    close_paper_account = _trade_mutation(paper.close_paper_account)
    place_paper_order = _trade_mutation(paper.place_paper_order)
    cancel_paper_order = _trade_mutation(paper.cancel_paper_order)
    place_paper_order_list = _trade_mutation(paper.place_paper_order_list)
    cancel_paper_order_list = _trade_mutation(paper.cancel_paper_order_list)
    create_bot = _trade_mutation(bot_resolvers.create_bot)
    pause_bot = _trade_mutation(bot_resolvers.pause_bot)
    resume_bot = _trade_mutation(bot_resolvers.resume_bot)
    stop_bot = _trade_mutation(bot_resolvers.stop_bot)
    rename_bot = _trade_mutation(bot_resolvers.rename_bot)
    connect_exchange_account = _session_mutation(exchanges.connect_exchange_account)
    disconnect_exchange_account = _session_mutation(exchanges.disconnect_exchange_account)
    place_exchange_order = _trade_mutation(exchanges.place_exchange_order)
    cancel_exchange_order = _trade_mutation(exchanges.cancel_exchange_order)
    place_exchange_order_list = _trade_mutation(exchanges.place_exchange_order_list)
    cancel_exchange_order_list = _trade_mutation(exchanges.cancel_exchange_order_list)
    sync_exchange_account = _session_mutation(exchanges.sync_exchange_account)
    set_risk_limit = _session_mutation(risk.set_risk_limit)
    remove_risk_limit = _session_mutation(risk.remove_risk_limit)
    reset_risk = _session_mutation(risk.reset_risk)
    set_risk_state = _session_mutation(risk.set_risk_state)


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

    order_book = strawberry.subscription(
        resolver=trading.order_book_updates,
        description="A SNAPSHOT, then DELTAs with sequence and previousSequence.",
        extensions=_market_data(),
    )
    trades = strawberry.subscription(resolver=trading.trade_updates, extensions=_market_data())
    ticker = strawberry.subscription(resolver=trading.ticker_updates, extensions=_market_data())
    my_orders = strawberry.subscription(resolver=trading.my_order_updates, extensions=_account())
    my_fills = strawberry.subscription(resolver=trading.my_fill_updates, extensions=_account())
    notifications = strawberry.subscription(
        resolver=notification_resolvers.notification_updates,
        description="Your new notifications as they are created (only yours).",
        extensions=_account(),
    )
    paper_updates = strawberry.subscription(
        resolver=paper.paper_updates,
        description="Your paper account's fills and order updates as they happen, each with"
        " the account as it is then (NotFound for an account that is not yours).",
        extensions=_account(),
    )
    exchange_order_updates = strawberry.subscription(
        resolver=exchanges.exchange_order_updates,
        description="Your orders on connected exchange accounts as they change, and their"
        " fills as they are recorded (of one account with accountId).",
        extensions=_account(),
    )
    bot_updates = strawberry.subscription(
        resolver=bot_resolvers.bot_updates,
        description="Each step of your bots as it is stored (of one bot with botId), with"
        " the bot as it is then (BotNotFound for a bot that is not yours).",
        extensions=_account(),
    )
    backtest_progress = strawberry.subscription(
        resolver=backtesting.backtest_progress,
        description="Your backtest's status and progress now, then as it changes, until"
        " DONE or FAILED.",
        extensions=_account(),
    )


# graphql-core's "Variable '$input' has invalid value at .secret: String cannot represent
# a non string value: <the value>": the value may be a secret (an exchange API secret
# sent as a number or a list): it is neither logged nor sent back, only where and why.
_INVALID_VARIABLE = "' has invalid value"


def _without_values(message: str) -> str:
    if not message.startswith("Variable '$") or _INVALID_VARIABLE not in message:
        return message
    where, _, why = message.partition(": ")
    return f"{where}: {why.split(': ', 1)[0].rstrip('.')}."


class CryptoSchema(strawberry.Schema):
    """Errors suggest no names ("Did you mean ...?") of arguments, enum values, types or
    input fields: they would show the schema to a client that may not introspect it; nor
    do they quote an invalid variable's value (it may be a secret)."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        for error in errors:  # disable_field_suggestions covers fields only
            error.message = _without_values(error.message.split(" Did you mean ", 1)[0])
        log_errors(errors)


schema = CryptoSchema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    extensions=[
        OperationPolicy,
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
