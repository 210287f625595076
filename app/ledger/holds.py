"""Holds: funds reserved for an open order or a pending withdrawal, in two phases
(TigerBeetle's pending transfers). Phase one moves the amount AVAILABLE -> HELD and records
a PENDING hold; phase two POSTs it (spent) or VOIDs it (released). Orders draw on their hold
fill by fill, so ``remaining`` shrinks until the hold ends; an amend may top it up or
release part of it. What is left when it ends goes back to AVAILABLE.

Every change of a hold, wherever it is made (withdrawals, order placement and order
lists, the matching engine), goes through ``apply`` and its one table, ``TRANSITIONS``:

    (new)    PLACE     -> PENDING
    PENDING  TOP_UP    -> PENDING   amount and remaining grow
    PENDING  DRAW      -> PENDING   remaining shrinks by what is spent (never below 0)
    PENDING  RELEASE   -> PENDING   remaining shrinks by what goes back to AVAILABLE
    PENDING  POST      -> POSTED    ended, something was spent; the rest is released
    PENDING  VOID      -> VOIDED    ended, released

POSTED and VOIDED are final (the holds table's CHECK: PENDING, POSTED, VOIDED; amount > 0,
0 <= remaining <= amount). The pending holds' ``remaining`` add up to the HELD balances
(``journal.check_invariants``).

``apply`` works on any object with ``status``, ``amount`` and ``remaining`` (a ``Hold``
row in Decimal, the engine's ``HoldState`` in minor units). The rest of the module writes
holds: ``place_hold``, ``insert_holds``, ``lock_hold``, ``void_hold``, ``spend_hold``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import InvariantViolation
from app.ledger.journal import HoldRequest, post, user_account
from app.ledger.rules import AccountKind, AccountRef, Leg, move
from db.models import Hold
from db.raw import driver


class HoldStatus(StrEnum):
    PENDING = "PENDING"
    POSTED = "POSTED"
    VOIDED = "VOIDED"


class HoldEvent(StrEnum):
    PLACE = "PLACE"
    TOP_UP = "TOP_UP"
    DRAW = "DRAW"
    RELEASE = "RELEASE"
    POST = "POST"
    VOID = "VOID"


TRANSITIONS: dict[tuple[HoldStatus | None, HoldEvent], HoldStatus] = {
    (None, HoldEvent.PLACE): HoldStatus.PENDING,
    (HoldStatus.PENDING, HoldEvent.TOP_UP): HoldStatus.PENDING,
    (HoldStatus.PENDING, HoldEvent.DRAW): HoldStatus.PENDING,
    (HoldStatus.PENDING, HoldEvent.RELEASE): HoldStatus.PENDING,
    (HoldStatus.PENDING, HoldEvent.POST): HoldStatus.POSTED,
    (HoldStatus.PENDING, HoldEvent.VOID): HoldStatus.VOIDED,
}
_BY_NAME = {status.value: status for status in HoldStatus}


class HoldLike(Protocol):
    """A hold as ``apply`` changes it (amounts in Decimal or in minor units)."""

    status: Any
    amount: Any
    remaining: Any


def next_status(status: str | None, event: HoldEvent) -> HoldStatus:
    """The status ``event`` leads to from ``status``; ``InvariantViolation`` when the table
    has no such transition."""
    current = None if status is None else _BY_NAME.get(status)
    after = TRANSITIONS.get((current, event))
    if after is None or (status is not None and current is None):
        raise InvariantViolation(f"a {status} hold cannot {event.value}")
    return after


def apply(hold: HoldLike, event: HoldEvent, amount: Any = 0) -> Any:
    """Change ``hold`` by ``event`` (``amount``: what TOP_UP adds, DRAW spends, RELEASE
    gives back; positive). POST and VOID end the hold and return what was left of it (the
    caller releases it to AVAILABLE); the others return the hold's ``remaining`` after.
    Refuses (``InvariantViolation``, the hold unchanged) a transition the table lacks, a
    DRAW or RELEASE of more than is left, an amount that is not positive."""
    status = next_status(hold.status, event)
    if event is HoldEvent.POST or event is HoldEvent.VOID:
        left = hold.remaining
        hold.remaining = left - left  # zero, of the hold's own type
        hold.status = status.value
        return left
    if amount <= 0:
        raise InvariantViolation(f"a hold's {event.value} of {amount}")
    if event is HoldEvent.TOP_UP:
        hold.amount += amount
        hold.remaining += amount
    elif amount > hold.remaining:
        raise InvariantViolation(f"a hold's {event.value} of {amount} > {hold.remaining} left")
    else:
        hold.remaining -= amount
    return hold.remaining


# --- legs -----------------------------------------------------------------------------


def hold_legs(request: HoldRequest) -> list[Leg]:
    """AVAILABLE -> HELD of ``request.amount`` (a HOLD entry)."""
    return move(
        request.amount,
        user_account(request.user_id, request.currency),
        user_account(request.user_id, request.currency, AccountKind.HELD),
    )


def release_legs(user_id: int, currency: str, amount: Decimal) -> list[Leg]:
    """HELD -> AVAILABLE of ``amount`` (a HOLD_VOID entry)."""
    return move(
        amount,
        user_account(user_id, currency, AccountKind.HELD),
        user_account(user_id, currency),
    )


# --- rows -----------------------------------------------------------------------------


async def place_hold(
    session: AsyncSession, *, user_id: int, currency: str, amount: Decimal, reference: str
) -> Hold:
    """Phase one: move ``amount`` from AVAILABLE to HELD and record a PENDING hold."""
    request = HoldRequest(user_id, currency, amount, reference)
    await post(session, kind="HOLD", legs=hold_legs(request), reference=reference)
    hold = Hold(
        user_id=user_id,
        currency=currency,
        amount=amount,
        remaining=amount,
        reference=reference,
        status=next_status(None, HoldEvent.PLACE).value,
    )
    session.add(hold)
    await session.flush()
    return hold


_INSERT_HOLDS_SQL = """
    INSERT INTO holds (user_id, currency, amount, remaining, reference, status)
    SELECT h.user_id, h.currency, h.amount, h.amount, h.reference, $5
    FROM unnest($1::bigint[], $2::text[], $3::numeric[], $4::text[])
         WITH ORDINALITY AS h(user_id, currency, amount, reference, n)
    ORDER BY h.n
    RETURNING id, reference
"""


async def insert_holds(session: AsyncSession, requests: Sequence[HoldRequest]) -> list[int]:
    """PENDING hold rows for ``requests`` (whose HOLD entries the caller posts); their
    ids, in order."""
    connection = await driver(session)
    rows = await connection.fetch(
        _INSERT_HOLDS_SQL,
        [r.user_id for r in requests],
        [r.currency for r in requests],
        [r.amount for r in requests],
        [r.reference for r in requests],
        next_status(None, HoldEvent.PLACE).value,
    )
    by_reference = {row["reference"]: row["id"] for row in rows}
    if len(by_reference) != len(requests):
        raise InvariantViolation("holds were not written exactly once")
    return [by_reference[r.reference] for r in requests]


async def lock_hold(session: AsyncSession, hold_id: int) -> Hold:
    hold = await session.scalar(
        select(Hold)
        .where(Hold.id == hold_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if hold is None:
        raise InvariantViolation(f"hold {hold_id} does not exist")
    return hold


async def void_hold(session: AsyncSession, hold: Hold, *, now: datetime) -> None:
    """Release what is left of a pending hold back to AVAILABLE."""
    left = hold.remaining
    next_status(hold.status, HoldEvent.VOID)  # refused before anything is posted
    if left > 0:
        await post(
            session,
            kind="HOLD_VOID",
            legs=release_legs(hold.user_id, hold.currency, left),
            reference=hold.reference,
        )
    apply(hold, HoldEvent.VOID)
    hold.resolved_at = now


async def spend_hold(
    session: AsyncSession,
    hold: Hold,
    *,
    kind: str,
    destinations: Sequence[tuple[AccountRef, Decimal]],
    now: datetime,
    final: bool,
) -> int:
    """Phase two: pay ``destinations`` out of the hold (all of it, or part of it for
    orders). With ``final`` the rest is released and the hold is POSTED."""
    next_status(hold.status, HoldEvent.POST if final else HoldEvent.DRAW)
    total = sum((amount for _, amount in destinations), Decimal(0))
    if total > hold.remaining:
        raise InvariantViolation(f"hold {hold.id} spends {total} > {hold.remaining}")
    held = user_account(hold.user_id, hold.currency, AccountKind.HELD)
    legs = [Leg(held, -total), *(Leg(ref, amount) for ref, amount in destinations)]
    rest = hold.remaining - total
    if final and rest > 0:
        legs += move(rest, held, user_account(hold.user_id, hold.currency))
    posted = await post(session, kind=kind, legs=legs, reference=hold.reference)
    if total > 0:
        apply(hold, HoldEvent.DRAW, total)
    if final:
        apply(hold, HoldEvent.POST)
        hold.resolved_at = now
    return posted.entry_id
