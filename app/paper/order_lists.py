"""OCO and bracket lists of a paper account: place and cancel, through its simulated venue
(``submit_list``, ``cancel_list``: the live venue's planning and checks), in one
transaction with the log (SUBMIT_LIST, CANCEL_LIST), the mirrored list and its legs, and
the paper book (an OCO's legs share one hold, a bracket's exits take theirs once the
entry has filled, as the venue keeps them). A refusal (the venue's code, as the live
venue's typed error; also an OCO leg or a bracket's entry refused on arrival, as the live
``placeOrderList`` reports it) writes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.paper import state
from app.paper.domain.session import cancel_list_entry, submit_list_entry
from app.paper.orders import (
    CANCEL_REFUSALS,
    PLACE_REFUSALS,
    begin_command,
    client_id,
    refusal,
    refused,
)
from app.runtime import Runtime
from app.trading.domain.errors import InvalidOrder, OrderNotCancellable
from app.trading.domain.lists import Bracket, ListKind, ListRole, list_legs
from app.trading.domain.orders import OrderRequest, OrderStatus
from app.venues.domain.venue import OrderEnded
from db.models import PaperOrder, PaperOrderList
from db.session import in_transaction


@dataclass(frozen=True, slots=True)
class PaperList:
    list: PaperOrderList
    orders: list[PaperOrder]  # in leg order


async def place_order_list(
    rt: Runtime,
    *,
    user_id: int,
    paper_account_id: int,
    client_list_id: str | None = None,
    oco: Sequence[OrderRequest] | None = None,
    bracket: Bracket | None = None,
) -> PaperList:
    """An OCO (``oco``: two orders) or a bracket on the paper account's venue (caught up
    with the live market first); idempotent by ``client_list_id``."""
    client_list_id = client_id(client_list_id, field="clientListId")
    # the venue refuses an OCO of any other length
    pair = None if oco is None else cast("tuple[OrderRequest, OrderRequest]", tuple(oco))

    async def work(session: AsyncSession) -> PaperList:
        loaded = await begin_command(session, paper_account_id=paper_account_id, user_id=user_id)
        known = await _list_row(session, loaded, client_list_id)
        ack = loaded.venue.submit_list(
            symbol=loaded.market.symbol, client_list_id=client_list_id, oco=pair, bracket=bracket
        )
        if ack.code is not None:
            raise refusal(ack.code, PLACE_REFUSALS, InvalidOrder)
        legs = list_legs(oco, bracket)
        for (_, role), leg in zip(legs, ack.orders, strict=True):
            code = refused(loaded, leg) if role in (ListRole.ENTRY, ListRole.LEG) else None
            if code is not None:
                raise refusal(code, PLACE_REFUSALS, InvalidOrder)
        if known is None:
            loaded.entries.append(submit_list_entry(client_list_id, oco=pair, bracket=bracket))
            new = []
            for (request, role), leg in zip(legs, ack.orders, strict=True):
                assert leg.order_id is not None
                # a bracket's exits wait (PENDING) for the entry; the rest follow the events
                pending = leg.status is OrderStatus.PENDING
                status = OrderStatus.PENDING if pending else OrderStatus.NEW
                new.append(state.NewOrder(leg.order_id, leg.client_order_id, request, status, role))
            kind = ListKind.OCO if oco is not None else ListKind.BRACKET
            loaded.lists.append(state.NewList(client_list_id, kind, tuple(new)))
        await state.record(session, loaded, kind="PAPER_ORDER")
        return await _paper_list(session, loaded, client_list_id)

    return await in_transaction(rt.sessions, work)


async def cancel_order_list(
    rt: Runtime, *, user_id: int, paper_account_id: int, client_list_id: str
) -> PaperList:
    """Cancel every live order of the list (``OrderNotCancellable`` when none is)."""

    async def work(session: AsyncSession) -> PaperList:
        loaded = await begin_command(session, paper_account_id=paper_account_id, user_id=user_id)
        before = len(loaded.venue.events())
        ack = loaded.venue.cancel_list(client_list_id=client_list_id)
        if ack.code is not None:
            raise refusal(ack.code, CANCEL_REFUSALS, OrderNotCancellable)
        if not any(isinstance(e, OrderEnded) for e in loaded.venue.events(after=before)):
            raise OrderNotCancellable("No order of the list is open", field="clientListId")
        loaded.entries.append(cancel_list_entry(client_list_id))
        await state.record(session, loaded, kind="PAPER_CANCEL")
        return await _paper_list(session, loaded, client_list_id)

    return await in_transaction(rt.sessions, work)


async def _list_row(
    session: AsyncSession, loaded: state.Loaded, client_list_id: str
) -> PaperOrderList | None:
    return await session.scalar(
        select(PaperOrderList).where(
            PaperOrderList.paper_account_id == loaded.account.id,
            PaperOrderList.generation == loaded.account.generation,
            PaperOrderList.client_list_id == client_list_id,
        )
    )


async def _paper_list(
    session: AsyncSession, loaded: state.Loaded, client_list_id: str
) -> PaperList:
    row = await _list_row(session, loaded, client_list_id)
    assert row is not None
    orders = await session.scalars(
        select(PaperOrder)
        .where(PaperOrder.list_id == row.id)
        .order_by(PaperOrder.order_id)
        .execution_options(populate_existing=True)
    )
    return PaperList(row, list(orders))
