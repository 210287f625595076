"""Paper trading's queries and mutations: parse, call one service, map."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from app.paper import accounts, order_lists, orders
from db.models import PaperAccount, PaperOrder
from graphql_schema.gateway.context import Context
from graphql_schema.ids import node_pk, pk_or_none
from graphql_schema.paper.types import (
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
from resolvers.common import attempt

Ctx = Info[Context, None]
PAPER_ACCOUNT = "PaperAccount"


async def _node(info: Ctx, row: PaperAccount) -> PaperAccountNode:
    async with info.context.rt.sessions() as session:
        symbols = await accounts.symbols_of(session, [row])
    return PaperAccountNode.from_row(row, symbols[row.market_id])


def _account_payload(info: Ctx):  # type: ignore[no-untyped-def]
    async def payload(row: PaperAccount) -> PaperAccountPayload:
        return PaperAccountPayload(paper_account=await _node(info, row))

    return payload


def _order_payload(row: PaperOrder) -> PaperOrderPayload:
    return PaperOrderPayload(order=PaperOrderNode.from_row(row))


def _balances(items: list[PaperBalanceInput] | None) -> dict | None:  # type: ignore[type-arg]
    return None if items is None else {b.currency.upper(): b.amount for b in items}


async def paper_accounts(info: Ctx) -> list[PaperAccountNode]:
    """Your paper accounts (open and closed), oldest first."""
    user = info.context.require_user()
    async with info.context.rt.sessions() as session:
        rows = await accounts.list_accounts(session, user_id=user.id)
        symbols = await accounts.symbols_of(session, rows)
    return [PaperAccountNode.from_row(r, symbols[r.market_id]) for r in rows]


async def paper_account(info: Ctx, id: strawberry.ID) -> PaperAccountNode | None:
    """One of your paper accounts; null when there is none of yours with that id."""
    pk = pk_or_none(str(id), PAPER_ACCOUNT)
    if pk is None:
        return None
    (node,) = await PaperAccountNode.resolve_nodes(info=info, node_ids=[str(pk)])
    return node


async def open_paper_account(info: Ctx, input: OpenPaperAccountInput) -> OpenPaperAccountResult:
    async def call() -> PaperAccount:
        user = info.context.require_user()
        return await accounts.open_account(
            info.context.rt, user_id=user.id, name=input.name, symbol=input.symbol,
            balances=_balances(input.balances) or {},
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
