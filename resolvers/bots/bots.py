"""Bots' queries, mutations and the ``botUpdates`` subscription: parse, call one
service, map."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from strawberry.types import Info

from app.bots import bots, preview
from app.bots.domain.errors import BotNotFound
from app.events import topics
from db.models import Bot
from graphql_schema.bots.inputs import CreateBotInput
from graphql_schema.bots.results import (
    BotPayload,
    BotPreflight,
    BotResult,
    CreateBotPayload,
    CreateBotResult,
    PreviewBotResult,
)
from graphql_schema.bots.types import BOT, BotConnection, BotNode, webhook_url
from graphql_schema.bots.updates import BotUpdate, BotUpdateResult
from graphql_schema.errors import to_graphql_error
from graphql_schema.gateway.context import Context
from graphql_schema.ids import node_pk, pk_or_none
from graphql_schema.paging import to_connection
from resolvers.common import attempt, stream_events

Ctx = Info[Context, None]


def _bot_payload(row: Bot) -> BotPayload:
    return BotPayload(bot=BotNode.from_row(row))


async def bot(info: Ctx, id: strawberry.ID) -> BotNode | None:
    """One of your bots; null when there is none of yours with that id."""
    pk = pk_or_none(str(id), BOT)
    return None if pk is None else await BotNode.load(info, pk)


async def my_bots(info: Ctx, first: int = 20, after: str | None = None) -> BotConnection:
    """Your bots, newest first."""
    user = info.context.require_user()
    async with info.context.rt.reads() as session:
        page = await bots.list_bots(session, user_id=user.id, first=first, after=after)
    for _, row in page.items:
        info.context.loaders.bots.bot_by_id.prime(row.id, row)
    return to_connection(BotConnection, page, BotNode.from_row)  # type: ignore[return-value]


async def preview_bot(info: Ctx, input: CreateBotInput) -> PreviewBotResult:
    """What createBot would make of this input, making nothing: the checks, the
    pre-flight at the market's last price and a quick backtest on stored candles."""

    async def call() -> preview.Preview:
        return await preview.preview_bot(
            info.context.rt, user_id=info.context.user_id, request=input.to_request()
        )

    return await attempt(call(), BotPreflight.of)  # type: ignore[return-value]


async def create_bot(info: Ctx, input: CreateBotInput) -> CreateBotResult:
    """A new RUNNING bot, funded from your wallet (the most it can spend), with its
    pre-flight; an alert-driven bot's webhook secret is shown here, once."""

    async def call() -> preview.Made:
        return await preview.create_bot(
            info.context.rt, user_id=info.context.user_id, request=input.to_request()
        )

    def payload(made: preview.Made) -> CreateBotPayload:
        return CreateBotPayload(
            bot=BotNode.from_row(made.bot),
            preflight=BotPreflight.of(made.preview),
            webhook_url=webhook_url(info, made.bot.webhook_token),
            webhook_secret=made.webhook_secret,
        )

    return await attempt(call(), payload)  # type: ignore[return-value]


async def pause_bot(info: Ctx, id: strawberry.ID) -> BotResult:
    """Stop stepping the bot; its resting orders stay at the venue."""

    async def call() -> Bot:
        return await bots.set_paused(
            info.context.rt, user_id=info.context.user_id,
            bot_id=node_pk(id, BOT, field="id"), paused=True,
        )  # fmt: skip

    return await attempt(call(), _bot_payload)  # type: ignore[return-value]


async def resume_bot(info: Ctx, id: strawberry.ID) -> BotResult:
    """Step the bot again, at once on what happened while it was paused."""

    async def call() -> Bot:
        return await bots.set_paused(
            info.context.rt, user_id=info.context.user_id,
            bot_id=node_pk(id, BOT, field="id"), paused=False,
        )  # fmt: skip

    return await attempt(call(), _bot_payload)  # type: ignore[return-value]


async def stop_bot(info: Ctx, id: strawberry.ID, close_position: bool = False) -> BotResult:
    """Cancel the bot's orders (and, with closePosition, sell what it holds at market);
    once they have all ended, its money goes back to your wallet (STOPPED)."""

    async def call() -> Bot:
        return await bots.stop_bot(
            info.context.rt, user_id=info.context.user_id,
            bot_id=node_pk(id, BOT, field="id"), close_position=close_position,
        )  # fmt: skip

    return await attempt(call(), _bot_payload)  # type: ignore[return-value]


async def rename_bot(info: Ctx, id: strawberry.ID, name: str) -> BotResult:
    async def call() -> Bot:
        return await bots.rename_bot(
            info.context.rt, user_id=info.context.user_id,
            bot_id=node_pk(id, BOT, field="id"), name=name,
        )  # fmt: skip

    return await attempt(call(), _bot_payload)  # type: ignore[return-value]


async def bot_updates(
    info: Ctx, bot_id: strawberry.ID | None = None
) -> AsyncGenerator[BotUpdateResult, None]:
    """Each step of your bots (of ``bot_id`` only, when given) as it is stored;
    ``BotNotFound``, and the end, for a bot that is not yours."""
    user = info.context.require_user()
    pk = None
    if bot_id is not None:
        pk = pk_or_none(str(bot_id), BOT) or 0  # 0: no bot has it
        try:
            await bots.get_bot(info.context.rt, user_id=user.id, bot_id=pk)
        except BotNotFound as error:
            yield to_graphql_error(error)  # type: ignore[misc]
            return
    async for update in stream_events(info, topics.BOTS, BotUpdate.from_event, user_id=user.id):
        if pk is None or update.bot_pk == pk:
            yield update
