"""Paper trading's queries, mutations and subscription: parse, call one service, map."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import strawberry
from strawberry.types import Info

from app.core.errors import NotFound
from app.events import topics
from app.paper import accounts, order_lists, orders
from db.models import PaperAccount, PaperOrder
from graphql_schema.errors import to_graphql_error
from graphql_schema.gateway.context import Context
from graphql_schema.ids import node_pk, pk_or_none
from graphql_schema.paper.types import (
    PAPER_ACCOUNT,
    CancelPaperOrderListResult,
    CancelPaperOrderResult,
    OpenPaperAccountInput,
    OpenPaperAccountResult,
    PaperAccountNode,
    PaperAccountPayload,
    PaperAccountResult,
    PaperBalanceInput,
    PaperOrderListPayload,
    PaperOrderNode,
    PaperOrderPayload,
    PlacePaperOrderInput,
    PlacePaperOrderListInput,
    PlacePaperOrderListResult,
    PlacePaperOrderResult,
)
from graphql_schema.paper.updates import PaperFillUpdate, PaperOrderUpdate, PaperUpdate
from resolvers.common import attempt, stream_user_topics

Ctx = Info[Context, None]


def _account_payload(info: Ctx):  # type: ignore[no-untyped-def]
    async def payload(row: PaperAccount) -> PaperAccountPayload:
        return PaperAccountPayload(paper_account=await PaperAccountNode.of(info, row))

    return payload


def _order_payload(row: PaperOrder) -> PaperOrderPayload:
    return PaperOrderPayload(order=PaperOrderNode.from_row(row))


def _balances(items: list[PaperBalanceInput] | None) -> dict | None:  # type: ignore[type-arg]
    return None if items is None else {b.currency.upper(): b.amount for b in items}


async def paper_accounts(info: Ctx) -> list[PaperAccountNode]:
    """Your paper accounts (open and closed), oldest first."""
    user = info.context.require_user()
    async with info.context.rt.reads() as session:
        rows = await accounts.list_accounts(session, user_id=user.id)
    return list(await asyncio.gather(*(PaperAccountNode.of(info, r) for r in rows)))


async def paper_account(info: Ctx, id: strawberry.ID) -> PaperAccountNode | None:
    """One of your paper accounts; null when there is none of yours with that id."""
    pk = pk_or_none(str(id), PAPER_ACCOUNT)
    return None if pk is None else await PaperAccountNode.load(info, pk)


async def paper_updates(
    info: Ctx, paper_account_id: strawberry.ID
) -> AsyncGenerator[PaperUpdate, None]:
    """Your paper account's fills and order changes as they happen (the commands' and
    the live market's); ``NotFound``, and the end, for an account that is not yours."""
    user = info.context.require_user()
    pk = pk_or_none(str(paper_account_id), PAPER_ACCOUNT) or 0  # 0: no account has it
    try:
        async with info.context.rt.reads() as session:
            await accounts.get_account(session, user_id=user.id, paper_account_id=pk)
    except NotFound as error:
        yield to_graphql_error(error)
        return
    converts = {topics.PAPER_FILLS: PaperFillUpdate.from_event,
                topics.PAPER_ORDERS: PaperOrderUpdate.from_event}  # fmt: skip
    async for update in stream_user_topics(info, converts, user_id=user.id):
        if update.account_pk == pk:
            yield update


async def open_paper_account(info: Ctx, input: OpenPaperAccountInput) -> OpenPaperAccountResult:
    async def call() -> PaperAccount:
        user = info.context.require_user()
        return await accounts.open_account(
            info.context.rt, user_id=user.id, name=input.name, symbol=input.symbol,
            balances=_balances(input.balances) or {}, exchange=input.exchange,
        )  # fmt: skip

    return await attempt(call(), _account_payload(info))  # type: ignore[return-value]


async def reset_paper_account(
    info: Ctx, paper_account_id: strawberry.ID, balances: list[PaperBalanceInput] | None = None
) -> PaperAccountResult:
    async def call() -> PaperAccount:
        user = info.context.require_user()
        pk = node_pk(paper_account_id, PAPER_ACCOUNT, field="paperAccountId")
        return await accounts.reset_account(
            info.context.rt, user_id=user.id, paper_account_id=pk, balances=_balances(balances)
        )

    return await attempt(call(), _account_payload(info))  # type: ignore[return-value]


async def close_paper_account(info: Ctx, paper_account_id: strawberry.ID) -> PaperAccountResult:
    async def call() -> PaperAccount:
        user = info.context.require_user()
        pk = node_pk(paper_account_id, PAPER_ACCOUNT, field="paperAccountId")
        return await accounts.close_account(info.context.rt, user_id=user.id, paper_account_id=pk)

    return await attempt(call(), _account_payload(info))  # type: ignore[return-value]


async def place_paper_order(info: Ctx, input: PlacePaperOrderInput) -> PlacePaperOrderResult:
    async def call() -> PaperOrder:
        user = info.context.require_user()
        pk = node_pk(str(input.paper_account_id), PAPER_ACCOUNT, field="paperAccountId")
        return await orders.place_order(
            info.context.rt, user_id=user.id, paper_account_id=pk,
            request=input.to_request(), client_order_id=input.client_order_id,
        )  # fmt: skip

    return await attempt(call(), _order_payload)  # type: ignore[return-value]


async def cancel_paper_order(
    info: Ctx, paper_account_id: strawberry.ID, client_order_id: str
) -> CancelPaperOrderResult:
    async def call() -> PaperOrder:
        user = info.context.require_user()
        pk = node_pk(paper_account_id, PAPER_ACCOUNT, field="paperAccountId")
        return await orders.cancel_order(
            info.context.rt, user_id=user.id, paper_account_id=pk, client_order_id=client_order_id
        )

    return await attempt(call(), _order_payload)  # type: ignore[return-value]


def _list_payload(placed: order_lists.PaperList) -> PaperOrderListPayload:
    return PaperOrderListPayload.from_rows(placed.list, placed.orders)


async def place_paper_order_list(
    info: Ctx, input: PlacePaperOrderListInput
) -> PlacePaperOrderListResult:
    """An OCO or a BRACKET on a paper account (the input of ``placeOrderList``)."""

    async def call() -> order_lists.PaperList:
        user = info.context.require_user()
        pk = node_pk(str(input.paper_account_id), PAPER_ACCOUNT, field="paperAccountId")
        oco, bracket = input.to_list()
        return await order_lists.place_order_list(
            info.context.rt, user_id=user.id, paper_account_id=pk,
            client_list_id=input.client_list_id, oco=oco, bracket=bracket,
        )  # fmt: skip

    return await attempt(call(), _list_payload)  # type: ignore[return-value]


async def cancel_paper_order_list(
    info: Ctx, paper_account_id: strawberry.ID, client_list_id: str
) -> CancelPaperOrderListResult:
    """Cancel every open leg of a paper account's list."""

    async def call() -> order_lists.PaperList:
        user = info.context.require_user()
        pk = node_pk(paper_account_id, PAPER_ACCOUNT, field="paperAccountId")
        return await order_lists.cancel_order_list(
            info.context.rt, user_id=user.id, paper_account_id=pk, client_list_id=client_list_id
        )

    return await attempt(call(), _list_payload)  # type: ignore[return-value]
