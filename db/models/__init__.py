"""Tables, one module per domain. Alembic migrations create them; a test fails when the
two disagree. Every table is re-exported here (Alembic and ``from db.models import X``)."""

from __future__ import annotations

from db.models.accounts import (
    ApiKey,
    AuditLog,
    KycLimit,
    KycSubmission,
    RecoveryCode,
    RefreshToken,
    SecurityEvent,
    User,
)
from db.models.backtesting import (
    Backtest,
    BacktestDecision,
    BacktestEquityPoint,
    BacktestRiskEvent,
    BacktestTrade,
)
from db.models.bots import Bot, BotAlert, BotCommand, BotDecision
from db.models.columns import AMOUNT, BIG_INT, FEE_RATE, LIVE_ORDER, _created_at, _pk
from db.models.events import EventConsumer, OutboxEvent
from db.models.exchanges import (
    ExchangeConnection,
    ExchangeFill,
    ExchangeOrder,
    ExchangeOrderList,
    ExchangeSync,
)
from db.models.ledger import Hold, IdempotencyKey, JournalEntry, LedgerAccount, Posting
from db.models.marketdata import MarketCandle, MarketTrade
from db.models.notifications import Notification, NotificationPreference, PriceAlert
from db.models.paper import (
    PaperAccount,
    PaperFill,
    PaperJournalEntry,
    PaperLedgerAccount,
    PaperLogEntry,
    PaperOrder,
    PaperOrderList,
    PaperPosting,
)
from db.models.risk import RiskLimit, RiskState, RiskTransition
from db.models.social import (
    Copy,
    Follow,
    FollowPosition,
    Leader,
    LeaderInvite,
    LeaderStat,
    ProfitShareSettlement,
)
from db.models.staking import Stake, StakingProduct, StakingProductRate, StakingReward
from db.models.trading import EquitySnapshot, Fill, Market, Order, OrderCommand, OrderList, Position
from db.models.wallets import (
    Currency,
    Deposit,
    DepositAddress,
    ProcessedWebhookEvent,
    ReferencePrice,
    Transfer,
    Withdrawal,
)

__all__ = [
    "AMOUNT",
    "BIG_INT",
    "FEE_RATE",
    "LIVE_ORDER",
    "ApiKey",
    "AuditLog",
    "Backtest",
    "BacktestDecision",
    "BacktestEquityPoint",
    "BacktestRiskEvent",
    "BacktestTrade",
    "Bot",
    "BotAlert",
    "BotCommand",
    "BotDecision",
    "Copy",
    "Currency",
    "Deposit",
    "DepositAddress",
    "EquitySnapshot",
    "EventConsumer",
    "ExchangeConnection",
    "ExchangeFill",
    "ExchangeOrder",
    "ExchangeOrderList",
    "ExchangeSync",
    "Fill",
    "Follow",
    "FollowPosition",
    "Hold",
    "IdempotencyKey",
    "JournalEntry",
    "KycLimit",
    "KycSubmission",
    "Leader",
    "LeaderInvite",
    "LeaderStat",
    "LedgerAccount",
    "Market",
    "MarketCandle",
    "MarketTrade",
    "Notification",
    "NotificationPreference",
    "Order",
    "OrderCommand",
    "OrderList",
    "OutboxEvent",
    "PaperAccount",
    "PaperFill",
    "PaperJournalEntry",
    "PaperLedgerAccount",
    "PaperLogEntry",
    "PaperOrder",
    "PaperOrderList",
    "PaperPosting",
    "Position",
    "Posting",
    "PriceAlert",
    "ProcessedWebhookEvent",
    "ProfitShareSettlement",
    "RecoveryCode",
    "ReferencePrice",
    "RefreshToken",
    "RiskLimit",
    "RiskState",
    "RiskTransition",
    "SecurityEvent",
    "Stake",
    "StakingProduct",
    "StakingProductRate",
    "StakingReward",
    "Transfer",
    "User",
    "Withdrawal",
    "_created_at",
    "_pk",
]
