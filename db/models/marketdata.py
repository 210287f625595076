"""Tables of market data: candles per source (imported files, later exchanges). The
platform's own venue's candles are built from its fills, not stored here."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Text
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base
from db.models.columns import AMOUNT


class MarketCandle(Base):
    """One candle of ``symbol`` at ``interval`` from ``source`` (``file:<name>``,
    ``exchange:<name>``); ``open_time`` is on the interval's grid."""

    __tablename__ = "market_candles"
    __table_args__ = (
        CheckConstraint("source ~ '^(file|exchange):[a-z0-9][a-z0-9._-]{0,39}$'", name="source"),
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
