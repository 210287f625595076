"""Column types and defaults the tables share."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Identity,
    Numeric,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column


def _pk() -> Mapped[int]:
    return mapped_column(BigInteger, Identity(always=True), primary_key=True)


AMOUNT = Numeric(38, 18)


def _created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


FEE_RATE = Numeric(10, 8)


BIG_INT = Numeric(78, 0)  # exact integers beyond 64 bits (fee accumulators)


LIVE_ORDER = "status IN ('NEW', 'OPEN', 'PARTIALLY_FILLED', 'UNTRIGGERED', 'TRIGGERED', 'PENDING')"
