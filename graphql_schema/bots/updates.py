"""The ``botUpdates`` subscription's type: a step of one of your bots (or a pause, a
resume, its creation), with the bot as it is when the update is sent (read through the
loaders, fresh for each event)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, TypeAlias

import strawberry
from strawberry.types import Info

from app.events.topics import BotDecided
from db.models import BotDecision
from db.queries import cursor_kind, encode_cursor
from graphql_schema.bots.types import BotNode, BotStatus, api_status, bot_gid
from graphql_schema.errors import BotNotFound

DECISIONS = cursor_kind(BotDecision.id)  # the kind of the decisions' cursors


@strawberry.type
class BotUpdate:
    """What one step of a bot did."""

    bot_id: strawberry.ID = strawberry.field(description="The Bot's global ID.")
    status: BotStatus
    steps: int = strawberry.field(description="The steps it has taken, this one included.")
    decisions: int = strawberry.field(description="How many decisions this step made.")
    decisions_after: str | None = strawberry.field(
        description="With `decisions` > 0: `bot { decisions(first: decisions, after:"
        " decisionsAfter) }` are this step's decisions (newest first)."
    )
    at: datetime
    bot_pk: strawberry.Private[int]

    @strawberry.field(description="The bot now (figures, orders ...), as the update is sent.")
    async def bot(self, info: Info) -> BotNode | None:
        return await BotNode.load(info, self.bot_pk)

    @classmethod
    def from_event(cls, p: BotDecided) -> BotUpdate:
        cursor = (
            encode_cursor(p.last_decision_id + 1, kind=DECISIONS) if p.last_decision_id else None
        )
        return cls(
            bot_id=bot_gid(p.bot_id), status=api_status(p.status, p.paused), steps=p.steps,
            decisions=p.decisions, decisions_after=cursor, at=p.at, bot_pk=p.bot_id,
        )  # fmt: skip


BotUpdateResult: TypeAlias = Annotated[BotUpdate | BotNotFound, strawberry.union("BotUpdateResult")]
