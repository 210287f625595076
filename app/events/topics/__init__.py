"""The event catalogue: every topic named once, with its payload type and its builder.

An event is (topic, owner, payload). A producer builds one with its topic's builder
(``topics.fill(user_id, topics.Fill(...))``) and writes it with
``app.events.outbox.write`` (the matching engine puts ``Event.row()`` in its batched
statement); the relay publishes it on ``channel(...)``; subscriptions and event-log
consumers name the same ``Topic`` (``topics.FILLS``) and read the payload with its
``parse``. Following a fill from the engine to ``myFills`` is following ``FILLS``.

A payload is a frozen dataclass (Decimals, ints, strs, datetimes); ``to_wire()`` is its
JSON object (camelCase keys, amounts as strings) as stored in the outbox and published,
``from_wire`` reads it back. ``from_wire`` tolerates a missing key only where readers
always did (an order's side and reason, a trade's sequence).

One module per producing domain: ``trading`` (the matching engine's), ``wallets``,
``social``, ``accounts`` (KYC, credentials, notifications), ``staking``, ``backtesting``,
``paper`` (paper accounts' fills and orders), ``bots`` (a bot's steps), ``exchanges``
(a connected account's orders changed at its exchange).
``BUILDERS`` maps every topic to its builder; ``CATALOGUE`` lists them all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.events.topics.accounts import (
    CREDENTIALS,
    KYC_REVIEWED,
    NOTIFICATIONS,
    CredentialsChanged,
    KycReviewed,
    NewNotification,
    credentials_changed,
    kyc_reviewed,
    notification,
)
from app.events.topics.backtesting import (
    BACKTEST_PROGRESS,
    BacktestProgress,
    backtest_progress,
)
from app.events.topics.base import Event, Payload, Topic, Wire, channel
from app.events.topics.bots import BOTS, BotDecided, bot_decided
from app.events.topics.exchanges import (
    EXCHANGE_ORDERS,
    ExchangeOrdersChanged,
    exchange_orders_changed,
)
from app.events.topics.paper import (
    PAPER_FILLS,
    PAPER_ORDERS,
    PaperFilled,
    PaperOrderUpdated,
    paper_filled,
    paper_order_updated,
)
from app.events.topics.social import (
    COPY_SKIPPED,
    FOLLOW_PAUSED,
    NEW_FOLLOWER,
    PROFIT_SHARE,
    CopySkipped,
    FollowPaused,
    NewFollower,
    ProfitShared,
    copy_skipped,
    follow_paused,
    new_follower,
    profit_shared,
)
from app.events.topics.staking import (
    REWARD_PAID,
    STAKE_MATURED,
    STAKE_RENEWED,
    Reward,
    RewardsPaid,
    StakeEnded,
    reward_paid,
    stake_matured,
    stake_renewed,
)
from app.events.topics.trading import (
    BOOK,
    FILLS,
    ORDERS,
    TICKER,
    TRADES,
    BookLevels,
    Fill,
    Level,
    OrderUpdated,
    Ticker,
    Trade,
    book_levels,
    fill,
    order_updated,
    ticker,
    trade,
)
from app.events.topics.wallets import (
    DEPOSIT_CREDITED,
    DEPOSIT_FAILED,
    DEPOSIT_HELD,
    DEPOSIT_REVERSED,
    TRANSFER_RECEIVED,
    WITHDRAWAL_STATUS_CHANGED,
    DepositCredited,
    DepositHalted,
    DepositReversed,
    TransferReceived,
    WithdrawalStatusChanged,
    deposit_credited,
    deposit_failed,
    deposit_held,
    deposit_reversed,
    transfer_received,
    withdrawal_status_changed,
)

BUILDERS: dict[Topic[Any], Callable[..., Event]] = {
    FILLS: fill,
    ORDERS: order_updated,
    BOOK: book_levels,
    TRADES: trade,
    TICKER: ticker,
    TRANSFER_RECEIVED: transfer_received,
    DEPOSIT_CREDITED: deposit_credited,
    DEPOSIT_FAILED: deposit_failed,
    DEPOSIT_HELD: deposit_held,
    DEPOSIT_REVERSED: deposit_reversed,
    WITHDRAWAL_STATUS_CHANGED: withdrawal_status_changed,
    COPY_SKIPPED: copy_skipped,
    FOLLOW_PAUSED: follow_paused,
    NEW_FOLLOWER: new_follower,
    PROFIT_SHARE: profit_shared,
    KYC_REVIEWED: kyc_reviewed,
    CREDENTIALS: credentials_changed,
    NOTIFICATIONS: notification,
    REWARD_PAID: reward_paid,
    STAKE_RENEWED: stake_renewed,
    STAKE_MATURED: stake_matured,
    BACKTEST_PROGRESS: backtest_progress,
    PAPER_FILLS: paper_filled,
    PAPER_ORDERS: paper_order_updated,
    BOTS: bot_decided,
    EXCHANGE_ORDERS: exchange_orders_changed,
}
CATALOGUE: tuple[Topic[Any], ...] = tuple(BUILDERS)

__all__ = [
    "BACKTEST_PROGRESS",
    "BOOK",
    "BOTS",
    "BUILDERS",
    "CATALOGUE",
    "COPY_SKIPPED",
    "CREDENTIALS",
    "DEPOSIT_CREDITED",
    "DEPOSIT_FAILED",
    "DEPOSIT_HELD",
    "DEPOSIT_REVERSED",
    "EXCHANGE_ORDERS",
    "FILLS",
    "FOLLOW_PAUSED",
    "KYC_REVIEWED",
    "NEW_FOLLOWER",
    "NOTIFICATIONS",
    "ORDERS",
    "PAPER_FILLS",
    "PAPER_ORDERS",
    "PROFIT_SHARE",
    "REWARD_PAID",
    "STAKE_MATURED",
    "STAKE_RENEWED",
    "TICKER",
    "TRADES",
    "TRANSFER_RECEIVED",
    "WITHDRAWAL_STATUS_CHANGED",
    "BacktestProgress",
    "BookLevels",
    "BotDecided",
    "CopySkipped",
    "CredentialsChanged",
    "DepositCredited",
    "DepositHalted",
    "DepositReversed",
    "Event",
    "ExchangeOrdersChanged",
    "Fill",
    "FollowPaused",
    "KycReviewed",
    "Level",
    "NewFollower",
    "NewNotification",
    "OrderUpdated",
    "PaperFilled",
    "PaperOrderUpdated",
    "Payload",
    "ProfitShared",
    "Reward",
    "RewardsPaid",
    "StakeEnded",
    "Ticker",
    "Topic",
    "Trade",
    "TransferReceived",
    "Wire",
    "WithdrawalStatusChanged",
    "backtest_progress",
    "book_levels",
    "bot_decided",
    "channel",
    "copy_skipped",
    "credentials_changed",
    "deposit_credited",
    "deposit_failed",
    "deposit_held",
    "deposit_reversed",
    "fill",
    "follow_paused",
    "kyc_reviewed",
    "new_follower",
    "notification",
    "order_updated",
    "paper_filled",
    "paper_order_updated",
    "profit_shared",
    "reward_paid",
    "stake_matured",
    "stake_renewed",
    "ticker",
    "trade",
    "transfer_received",
    "withdrawal_status_changed",
]
