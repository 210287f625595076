"""Orders of a paper account: place and cancel, through its simulated venue, in one
transaction with the log, the mirrored rows and the paper book. A refusal (the venue's
code, as the live venue's typed error) writes nothing."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import errors as core_errors
from app.core.errors import UserError, ValidationFailed
from app.paper import state
from app.paper.domain.session import cancel_entry, submit_entry
from app.runtime import Runtime
from app.trading.domain import errors as trading_errors
from app.trading.domain.orders import OrderRequest, OrderStatus
from app.venues.domain.venue import OrderAck, OrderEnded
from db.models import PaperOrder
from db.session import in_transaction

MAX_CLIENT_ORDER_ID = 64


def _error_classes() -> dict[str, type[UserError]]:
    found: dict[str, type[UserError]] = {}
    for module in (core_errors, trading_errors):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, UserError):
                found.setdefault(value.code, value)
    return found


_BY_CODE = _error_classes()
# What placing and cancelling may refuse with: the members of their GraphQL unions
# (graphql_schema/paper/types.py); any other refusal code is the fallback.
PLACE_REFUSALS: tuple[type[UserError], ...] = (
    trading_errors.InvalidOrder,
    trading_errors.PriceOffTick,
    trading_errors.QuantityOffLotSize,
    trading_errors.BelowMinimumNotional,
    trading_errors.PriceOutsideBand,
    trading_errors.StopPriceWrongSide,
    trading_errors.PostOnlyWouldTake,
    trading_errors.FokNotFillable,
    core_errors.InsufficientFunds,
    trading_errors.ClientOrderIdReused,
)
CANCEL_REFUSALS: tuple[type[UserError], ...] = (
    trading_errors.OrderNotFound,
    trading_errors.OrderNotCancellable,
)


def refusal(
    code: str, allowed: tuple[type[UserError], ...], fallback: type[UserError]
) -> UserError:
    """The typed error of a venue's refusal code (the live venue's), when it is one of
    ``allowed``; ``fallback`` otherwise (never an error the mutation's union lacks)."""
    found = _BY_CODE.get(code)
    return (found if found in allowed else fallback)(field=None)


def refused(loaded: state.Loaded, ack: OrderAck) -> str | None:
    """The code of a refusal: the ack's, or the reason the order was rejected on arrival
    (POST_ONLY_WOULD_TAKE, FOK_NOT_FILLABLE ...)."""
    if ack.code is not None:
        return ack.code
    if ack.status is OrderStatus.REJECTED:
        ended = [
            e
            for e in loaded.venue.events(after=loaded.events_before)
            if isinstance(e, OrderEnded) and e.order_id == ack.order_id
        ]
        return ended[-1].reason if ended else trading_errors.InvalidOrder.code
    return None


async def _order(session: AsyncSession, loaded: state.Loaded, order_id: int) -> PaperOrder:
    row = await session.scalar(
        select(PaperOrder)
        .where(
            PaperOrder.paper_account_id == loaded.account.id,
            PaperOrder.generation == loaded.account.generation,
            PaperOrder.order_id == order_id,
        )
        .execution_options(populate_existing=True)
    )
    assert row is not None
    return row


def client_id(value: str | None, *, field: str) -> str:
    """A client order (or list) id: the caller's, printable, 64 characters at most; a
    fresh one when not given."""
    value = value or uuid.uuid4().hex
    if not value.isprintable() or len(value) > MAX_CLIENT_ORDER_ID:
        raise ValidationFailed(
            f"A client id is printable, {MAX_CLIENT_ORDER_ID} characters at most", field=field
        )
    return value


async def begin_command(
    session: AsyncSession, *, paper_account_id: int, user_id: int
) -> state.Loaded:
    """The user's open paper account, locked, its venue rebuilt and caught up with the
    live market (so a marketable order trades at the last trade's price)."""
    loaded = await state.load(session, paper_account_id=paper_account_id, user_id=user_id)
    if loaded.account.status != state.OPEN:
        raise ValidationFailed("The paper account is closed", field="paperAccountId")
    await state.catch_up(session, loaded)
    return loaded


async def place_order(
    rt: Runtime,
    *,
    user_id: int,
    paper_account_id: int,
    request: OrderRequest,
    client_order_id: str | None = None,
) -> PaperOrder:
    """Place an order on the paper account's venue, after catching it up with the live
    market (so a marketable order trades at the last trade's price)."""
    client_order_id = client_id(client_order_id, field="clientOrderId")

    async def work(session: AsyncSession) -> PaperOrder:
        loaded = await begin_command(session, paper_account_id=paper_account_id, user_id=user_id)
        entry = submit_entry(client_order_id, request)
        known = await _orders_by_client(session, loaded, client_order_id)
        ack = loaded.venue.submit(
            symbol=loaded.market.symbol, client_order_id=client_order_id, request=request
        )
        code = refused(loaded, ack)
        if code is not None:
            raise refusal(code, PLACE_REFUSALS, trading_errors.InvalidOrder)
        assert ack.order_id is not None
        if not known:
            loaded.entries.append(entry)
            loaded.submitted.append(state.NewOrder(ack.order_id, client_order_id, request))
        await state.record(session, loaded, kind="PAPER_ORDER")
        return await _order(session, loaded, ack.order_id)

    return await in_transaction(rt.sessions, work)


async def _orders_by_client(
    session: AsyncSession, loaded: state.Loaded, client_order_id: str
) -> list[int]:
    rows = await session.scalars(
        select(PaperOrder.order_id).where(
            PaperOrder.paper_account_id == loaded.account.id,
            PaperOrder.generation == loaded.account.generation,
            PaperOrder.client_order_id == client_order_id,
        )
    )
    return list(rows)


async def cancel_order(
    rt: Runtime, *, user_id: int, paper_account_id: int, client_order_id: str
) -> PaperOrder:
    """Cancel a paper order by its client order id."""

    async def work(session: AsyncSession) -> PaperOrder:
        loaded = await begin_command(session, paper_account_id=paper_account_id, user_id=user_id)
        ack = loaded.venue.cancel(client_order_id=client_order_id)
        if ack.code is not None:
            raise refusal(ack.code, CANCEL_REFUSALS, trading_errors.OrderNotCancellable)
        assert ack.order_id is not None
        loaded.entries.append(cancel_entry(client_order_id))
        await state.record(session, loaded, kind="PAPER_CANCEL")
        return await _order(session, loaded, ack.order_id)

    return await in_transaction(rt.sessions, work)
