"""Where the engine takes a hold that may be refused (an amend that needs more, a bracket's
exits) at once, rather than deferring it to the batch's write: ``MarketState`` is given a
``Funds``. ``SessionFunds`` posts to the ledger in the batch's transaction; a simulation
can give its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from app.ledger import holds
from app.ledger import journal as ledger
from app.ledger.rules import Leg


class Funds(Protocol):
    async def hold(self, journal: ledger.JournalBatch, legs: list[Leg], reference: str) -> None:
        """Post a HOLD entry now (AVAILABLE -> HELD); raises ``InsufficientFunds``."""
        ...

    async def new_hold(self, request: ledger.HoldRequest) -> int:
        """Store a new hold (its HOLD entry posted by ``hold``); its id."""
        ...


@dataclass(frozen=True, slots=True)
class SessionFunds:
    """The ledger, in the batch's transaction."""

    session: AsyncSession

    async def hold(self, journal: ledger.JournalBatch, legs: list[Leg], reference: str) -> None:
        await journal.post(self.session, kind="HOLD", legs=legs, reference=reference)

    async def new_hold(self, request: ledger.HoldRequest) -> int:
        (hold_id,) = await holds.insert_holds(self.session, [request])
        return hold_id
