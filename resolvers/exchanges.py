"""Connected exchange accounts' mutations and the viewer's list: parse, call one
service, map."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from decimal import Decimal
from typing import Annotated

import strawberry
from strawberry.types import Info

from app.core.errors import NotFound
from app.events import topics
from app.exchanges import accounts, disconnecting, order_lists, orders, syncs, triggers
from db.models import ExchangeConnection, ExchangeOrder
from graphql_schema.errors import to_graphql_error
from graphql_schema.exchanges.custody import ExchangeSync
from graphql_schema.exchanges.order_lists import (
    EXCHANGE_ORDER_LIST,
    CancelExchangeOrderListResult,
    ExchangeOrderListPayload,
    PlaceExchangeOrderListInput,
    PlaceExchangeOrderListResult,
)
from graphql_schema.exchanges.orders import (
    EXCHANGE_ORDER,
    CancelExchangeOrderResult,
    ExchangeOrderNode,
    ExchangeOrderPayload,
    ExchangeOrderTypeEnum,
    PlaceExchangeOrderResult,
)
from graphql_schema.exchanges.types import (
    EXCHANGE_ACCOUNT,
    ConnectExchangeAccountInput,
    ConnectExchangeAccountPayload,
    ConnectExchangeAccountResult,
    DisconnectExchangeAccountResult,
    ExchangeAccountNode,
    ExchangeAccountPayload,
    ExchangeBalance,
    SyncExchangeAccountPayload,
    SyncExchangeAccountResult,
)
from graphql_schema.exchanges.updates import (
    ExchangeFillUpdate,
    ExchangeOrderUpdate,
    ExchangeOrderUpdateResult,
)
from graphql_schema.gateway.context import Context
from graphql_schema.ids import node_pk, pk_or_none
from graphql_schema.trading.enums import OrderSide
from resolvers.common import attempt, stream_user_topics

Ctx = Info[Context, None]


def _connected(connected: accounts.Connected) -> ConnectExchangeAccountPayload:
    node = ExchangeAccountNode.from_row(connected.connection)
    return ConnectExchangeAccountPayload(
        exchange_account=node,
        balances=[ExchangeBalance.of(b) for b in connected.balances],
        ip_allowlist_guidance=node.ip_allowlist_guidance,
    )


def _account_payload(row: ExchangeConnection) -> ExchangeAccountPayload:
    return ExchangeAccountPayload(exchange_account=ExchangeAccountNode.from_row(row))


async def connect_exchange_account(
    info: Ctx, input: ConnectExchangeAccountInput
) -> ConnectExchangeAccountResult:
    """Connect your account at an exchange with an API key: the key is checked with the
    exchange first (it must read balances and must not allow withdrawals)."""

    async def call() -> accounts.Connected:
        user = info.context.require_user()
        return await accounts.connect_account(
            info.context.rt, user_id=user.id, exchange=input.exchange, label=input.label,
            api_key=input.api_key, secret=input.secret, passphrase=input.passphrase,
        )  # fmt: skip

    return await attempt(call(), _connected)  # type: ignore[return-value]


async def disconnect_exchange_account(
    info: Ctx,
    id: strawberry.ID,
    cancel_open_orders: Annotated[bool, strawberry.argument(description=(
        "Cancel the orders placed through the platform that are open at the exchange"
        " first (default); if one cannot be canceled, ExchangeOrdersStillOpen and nothing"
        " changes. False: leave them open there, no longer followed."))] = True,
) -> DisconnectExchangeAccountResult:  # fmt: skip
    """Disconnect it: its open orders canceled at the exchange first (unless
    cancelOpenOrders is false), its emulated stops disarmed and its order lists ended,
    its API credentials erased."""

    async def call() -> ExchangeConnection:
        user = info.context.require_user()
        pk = node_pk(str(id), EXCHANGE_ACCOUNT, field="id")
        return await disconnecting.disconnect(info.context.rt, user_id=user.id,
                                              connection_id=pk,
                                              cancel_open_orders=cancel_open_orders)  # fmt: skip

    return await attempt(call(), _account_payload)  # type: ignore[return-value]


def _synced(synced: syncs.Synced) -> SyncExchangeAccountPayload:
    return SyncExchangeAccountPayload(
        exchange_account=ExchangeAccountNode.from_row(synced.connection),
        sync=ExchangeSync.from_row(synced.sync),
    )


async def sync_exchange_account(info: Ctx, id: strawberry.ID) -> SyncExchangeAccountResult:
    """Read the account's balances at the exchange now and bring its mirror up to date
    (a few per minute). A failure is recorded as the account's last sync, and answered
    with its typed error."""

    async def call() -> syncs.Synced:
        user = info.context.require_user()
        pk = node_pk(str(id), EXCHANGE_ACCOUNT, field="id")
        return await syncs.sync_account(info.context.rt, user_id=user.id, connection_id=pk)

    return await attempt(call(), _synced)  # type: ignore[return-value]


def _order_payload(row: ExchangeOrder) -> ExchangeOrderPayload:
    return ExchangeOrderPayload(exchange_order=ExchangeOrderNode.from_row(row))


async def place_exchange_order(
    info: Ctx,
    account_id: strawberry.ID,
    symbol: str,
    side: OrderSide,  # type: ignore[valid-type]
    type: ExchangeOrderTypeEnum,
    quantity: Decimal,
    price: Decimal | None = None,
    stop_price: Decimal | None = None,
) -> PlaceExchangeOrderResult:
    """Place an order on your connected exchange account. Checked against the exchange's market and
    your risk limits first; sent once, with a client order id of ours."""

    async def call() -> ExchangeOrder:
        user = info.context.require_user()
        request = orders.PlaceOrder(
            account_id=node_pk(str(account_id), EXCHANGE_ACCOUNT, field="accountId"),
            symbol=symbol, side=side.value, type=type.value, quantity=quantity, price=price,
            stop_price=stop_price,
        )  # fmt: skip
        return await orders.place_order(info.context.rt, user_id=user.id, request=request)

    return await attempt(call(), _order_payload)  # type: ignore[return-value]


async def cancel_exchange_order(info: Ctx, id: strawberry.ID) -> CancelExchangeOrderResult:
    """Cancel an open order on your connected exchange account."""

    async def call() -> ExchangeOrder:
        user = info.context.require_user()
        pk = node_pk(str(id), EXCHANGE_ORDER, field="id")
        return await triggers.cancel_order(info.context.rt, user_id=user.id, order_id=pk)

    return await attempt(call(), _order_payload)  # type: ignore[return-value]


async def exchange_order_updates(
    info: Ctx, account_id: strawberry.ID | None = None
) -> AsyncGenerator[ExchangeOrderUpdateResult, None]:
    """Your orders on connected accounts as they change, and their fills as they are
    recorded (of one account with ``accountId``: ``NotFound``, and the end, for an
    account that is not yours)."""
    user = info.context.require_user()
    pk = None if account_id is None else pk_or_none(str(account_id), EXCHANGE_ACCOUNT) or 0
    if pk is not None:
        async with info.context.rt.reads() as session:
            found = await accounts.accounts_by_ids(session, user_id=user.id, ids=[pk])
        if pk not in found:
            yield to_graphql_error(NotFound("No such exchange account", field="accountId"))
            return
    converts = {topics.EXCHANGE_ORDERS: ExchangeOrderUpdate.from_event,
                topics.EXCHANGE_FILLS: ExchangeFillUpdate.from_event}  # fmt: skip
    async for update in stream_user_topics(info, converts, user_id=user.id):
        if pk is None or update.account_pk == pk:
            yield update


async def place_exchange_order_list(
    info: Ctx, input: PlaceExchangeOrderListInput
) -> PlaceExchangeOrderListResult:
    """An OCO or a bracket on your connected exchange account, held by the platform (see
    the input)."""

    async def call() -> order_lists.PlacedList:
        user = info.context.require_user()
        request = order_lists.PlaceOrderList(
            account_id=node_pk(str(input.account_id), EXCHANGE_ACCOUNT, field="accountId"),
            symbol=input.symbol, kind=input.kind.value,
            orders=None if input.orders is None else [o.to_leg() for o in input.orders],
            entry=None if input.entry is None else input.entry.to_leg(),
            take_profit_price=input.take_profit_price, stop_loss_price=input.stop_loss_price,
            stop_loss_limit_price=input.stop_loss_limit_price,
        )  # fmt: skip
        return await order_lists.place_order_list(info.context.rt, user_id=user.id,
                                                  request=request)  # fmt: skip

    return await attempt(call(), ExchangeOrderListPayload.of)  # type: ignore[return-value]


async def cancel_exchange_order_list(info: Ctx, id: strawberry.ID) -> CancelExchangeOrderListResult:
    """Cancel every leg of an exchange order list still open or armed."""

    async def call() -> order_lists.PlacedList:
        user = info.context.require_user()
        pk = node_pk(str(id), EXCHANGE_ORDER_LIST, field="id")
        return await order_lists.cancel_order_list(info.context.rt, user_id=user.id,
                                                   list_id=pk)  # fmt: skip

    return await attempt(call(), ExchangeOrderListPayload.of)  # type: ignore[return-value]
