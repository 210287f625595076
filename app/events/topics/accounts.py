"""Accounts' and notifications' topics: KYC reviews, credential changes, notifications."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

from app.events.topics.base import Event, Topic, Wire


@dataclass(frozen=True, slots=True)
class KycReviewed:
    status: str
    level: int

    def to_wire(self) -> Wire:
        return {"status": self.status, "level": self.level}

    @classmethod
    def from_wire(cls, w: Mapping[str, Any]) -> Self:
        return cls(status=w["status"], level=w["level"])


@dataclass(frozen=True, slots=True)
class CredentialsChanged:
    """Says nothing: the user's sockets re-read their credential's state."""

    def to_wire(self) -> Wire:
        return {}

    @classmethod
    def from_wire(cls, w: Mapping[str, Any]) -> Self:
        return cls()


@dataclass(frozen=True, slots=True)
class NewNotification:
    """What the ``notifications`` subscription receives."""

    id: int
    type: str
    priority: str
    title: str
    body: str
    link: str | None
    created_at: datetime

    def to_wire(self) -> Wire:
        return {
            "id": self.id,
            "type": self.type,
            "priority": self.priority,
            "title": self.title,
            "body": self.body,
            "link": self.link,
            "createdAt": self.created_at.isoformat(),
        }

    @classmethod
    def from_wire(cls, w: Mapping[str, Any]) -> Self:
        return cls(
            id=w["id"],
            type=w["type"],
            priority=w["priority"],
            title=w["title"],
            body=w["body"],
            link=w["link"],
            created_at=datetime.fromisoformat(w["createdAt"]),
        )


KYC_REVIEWED = Topic("kyc.reviewed", KycReviewed)
CREDENTIALS = Topic("credentials", CredentialsChanged)  # pub/sub only, not in the outbox
NOTIFICATIONS = Topic("notifications", NewNotification)


def kyc_reviewed(user_id: int, payload: KycReviewed) -> Event:
    return KYC_REVIEWED.event(user_id, payload)


def credentials_changed(user_id: int) -> Event:
    return CREDENTIALS.event(user_id, CredentialsChanged())


def notification(user_id: int, payload: NewNotification) -> Event:
    return NOTIFICATIONS.event(user_id, payload)
