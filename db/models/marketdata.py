"""Tables of market data: candles and trades per source (imported files, later
exchanges). The platform's own venue's candles are built from its fills, not stored here."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Index, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base
from db.models.columns import AMOUNT, _pk

SOURCE = "source ~ '^(file|exchange):[a-z0-9][a-z0-9._-]{0,39}$'"


class MarketCandle(Base):
    """One candle of ``symbol`` at ``interval`` from ``source`` (``file:<name>``,
    ``exchange:<name>``); ``open_time`` is on the interval's grid."""

    __tablename__ = "market_candles"
    __table_args__ = (
        CheckConstraint(SOURCE, name="source"),
        CheckConstraint("low > 0 AND high >= GREATEST(open, close)", name="high"),
        CheckConstraint("low <= LEAST(open, close)", name="low"),
        CheckConstraint(
            "volume >= 0 AND COALESCE(quote_volume, 0) >= 0 AND COALESCE(trades, 0) >= 0",
            name="volumes",
        ),
    )

    source: Mapped[str] = mapped_column(Text, primary_key=True)
    symbol: Mapped[str] = mapped_column(Text, primary_key=True)
    interval: Mapped[str] = mapped_column(Text, primary_key=True)
    open_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    open: Mapped[Decimal] = mapped_column(AMOUNT)
    high: Mapped[Decimal] = mapped_column(AMOUNT)
    low: Mapped[Decimal] = mapped_column(AMOUNT)
    close: Mapped[Decimal] = mapped_column(AMOUNT)
    volume: Mapped[Decimal] = mapped_column(AMOUNT)
    quote_volume: Mapped[Decimal | None] = mapped_column(AMOUNT)
    trades: Mapped[int | None] = mapped_column(BigInteger)


class MarketTrade(Base):
    """One trade of ``symbol`` from ``source``: ``trade_id`` is the source's (made from the
    time, price, amount and a count when a file has none), ``side`` the taker's (None:
    unknown). ``id`` orders trades of the same time as they were imported, and pages."""

    __tablename__ = "market_trades"
    __table_args__ = (
        CheckConstraint(SOURCE, name="source"),
        CheckConstraint("length(trade_id) BETWEEN 1 AND 128", name="trade_id"),
        CheckConstraint("price > 0 AND amount > 0", name="positive"),
        CheckConstraint("side IN ('BUY', 'SELL')", name="side"),
        UniqueConstraint("source", "symbol", "trade_id"),
        Index(None, "source", "symbol", "time", "id"),
    )

    id: Mapped[int] = _pk()
    source: Mapped[str] = mapped_column(Text)
    symbol: Mapped[str] = mapped_column(Text)
    trade_id: Mapped[str] = mapped_column(Text)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    price: Mapped[Decimal] = mapped_column(AMOUNT)
    amount: Mapped[Decimal] = mapped_column(AMOUNT)
    side: Mapped[str | None] = mapped_column(Text)
