"""Tables of events: the outbox and the event consumers' checkpoints."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base
from db.models.columns import _created_at, _pk


class OutboxEvent(Base):
    """Events for subscribers, written in the transaction of the change they describe and
    relayed to Redis afterwards. Redis is delivery, this table is the record."""

    __tablename__ = "outbox"
    __table_args__ = (Index(None, "published_at", "id"), Index(None, "txid", "id"))

    id: Mapped[int] = _pk()
    # the writing transaction's id: consumers with a checkpoint read in (txid, id) order
    # below the oldest running transaction (app/events/event_log.py)
    txid: Mapped[int] = mapped_column(
        BigInteger, server_default=text("(pg_current_xact_id())::text::bigint")
    )
    topic: Mapped[str] = mapped_column(Text)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    payload: Mapped[dict] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _created_at()
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class EventConsumer(Base):
    """A consumer's checkpoint in the outbox, as (txid, id): events are read in that order
    and only below the oldest running transaction, so none committed late is skipped."""

    __tablename__ = "event_consumers"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    last_txid: Mapped[int] = mapped_column(BigInteger, server_default="0")
    last_id: Mapped[int] = mapped_column(BigInteger, server_default="0")
    updated_at: Mapped[datetime] = _created_at()
