"""Tables of backtests: one row per backtest (what was asked, its status and progress, the
lease of the process running it, its metrics as JSON of exact Decimal strings), its equity
points, its round-trip trades and its decisions (every intent with its reason and outcome).
Amounts are unconstrained NUMERIC: a run's values are stored exactly as computed."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base
from db.models.columns import _created_at, _pk

EXACT = Numeric()


class Backtest(Base):
    __tablename__ = "backtests"
    __table_args__ = (
        CheckConstraint("status IN ('QUEUED', 'RUNNING', 'DONE', 'FAILED')", name="status"),
        CheckConstraint("candles_done >= 0 AND candles_done <= candles_total", name="progress"),
        CheckConstraint("status <> 'RUNNING' OR lease_owner IS NOT NULL", name="leased"),
        CheckConstraint("attempts >= 0", name="attempts"),
        Index(None, "user_id", "id"),
        # what the resume job looks for: queued, or running (under a lease that may lapse)
        Index(None, "id", postgresql_where="status IN ('QUEUED', 'RUNNING')"),
    )

    id: Mapped[int] = _pk()
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"), nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False, default="QUEUED")
    reason: Mapped[str | None] = mapped_column(Text)
    strategy: Mapped[str] = mapped_column(Text, nullable=False)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    symbol: Mapped[str] = mapped_column(Text, nullable=False)
    source: Mapped[str] = mapped_column(Text, nullable=False)
    interval: Mapped[str] = mapped_column(Text, nullable=False)
    start: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    end: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    balances: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    fees: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    market: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # the risk limits it ran under (``specs.limits_json``), as setRiskLimit takes them
    risk_limits: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, nullable=False, server_default="[]"
    )
    candles_total: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    candles_done: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # the run's claim: who runs it (a process and a claim token) and until when, unless
    # renewed; then another process may run it again from the start
    lease_owner: Mapped[str | None] = mapped_column(Text)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    created_at: Mapped[datetime] = _created_at()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class BacktestEquityPoint(Base):
    __tablename__ = "backtest_equity_points"
    __table_args__ = (Index(None, "backtest_id", "id"),)

    id: Mapped[int] = _pk()
    backtest_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("backtests.id", ondelete="CASCADE"), nullable=False
    )
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    price: Mapped[Decimal] = mapped_column(EXACT, nullable=False)
    cash: Mapped[Decimal] = mapped_column(EXACT, nullable=False)
    position: Mapped[Decimal] = mapped_column(EXACT, nullable=False)
    equity: Mapped[Decimal] = mapped_column(EXACT, nullable=False)


class BacktestTrade(Base):
    __tablename__ = "backtest_trades"
    __table_args__ = (Index(None, "backtest_id", "id"),)

    id: Mapped[int] = _pk()
    backtest_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("backtests.id", ondelete="CASCADE"), nullable=False
    )
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    closed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    quantity: Mapped[Decimal] = mapped_column(EXACT, nullable=False)
    entry_value: Mapped[Decimal] = mapped_column(EXACT, nullable=False)
    exit_value: Mapped[Decimal] = mapped_column(EXACT, nullable=False)
    fees: Mapped[Decimal] = mapped_column(EXACT, nullable=False)
    pnl: Mapped[Decimal] = mapped_column(EXACT, nullable=False)


class BacktestDecision(Base):
    """An intent of the strategy at a candle's close and the venue's answer."""

    __tablename__ = "backtest_decisions"
    __table_args__ = (
        CheckConstraint("action IN ('SUBMIT', 'CANCEL')", name="action"),
        Index(None, "backtest_id", "id"),
    )

    id: Mapped[int] = _pk()
    backtest_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("backtests.id", ondelete="CASCADE"), nullable=False
    )
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    candle: Mapped[int] = mapped_column(Integer, nullable=False)  # its index in the run
    action: Mapped[str] = mapped_column(Text, nullable=False)
    client_order_id: Mapped[str] = mapped_column(Text, nullable=False)
    side: Mapped[str | None] = mapped_column(Text)  # a SUBMIT's
    type: Mapped[str | None] = mapped_column(Text)
    quantity: Mapped[Decimal | None] = mapped_column(EXACT)
    price: Mapped[Decimal | None] = mapped_column(EXACT)  # a limit price
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    outcome: Mapped[str] = mapped_column(Text, nullable=False)  # OK or the refusal's code


class BacktestRiskEvent(Base):
    """A refusal of an order by the backtest's risk limits, or a transition of its state,
    at its simulated time (``protections.RiskEvent``)."""

    __tablename__ = "backtest_risk_events"
    __table_args__ = (Index(None, "backtest_id", "id"),)

    id: Mapped[int] = _pk()
    backtest_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("backtests.id", ondelete="CASCADE"), nullable=False
    )
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    candle: Mapped[int] = mapped_column(Integer, nullable=False)  # its index in the run
    action: Mapped[str] = mapped_column(Text, nullable=False)  # REFUSED or a state event
    state: Mapped[str] = mapped_column(Text, nullable=False)  # after it
    limit_kind: Mapped[str | None] = mapped_column(Text)  # the kind of the limit
    value: Mapped[Decimal | None] = mapped_column(EXACT)  # its figure
    client_order_id: Mapped[str | None] = mapped_column(Text)  # a refusal's order
    reason: Mapped[str] = mapped_column(Text, nullable=False)
