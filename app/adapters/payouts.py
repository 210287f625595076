"""The edge to the blockchains: broadcasting a payout from the hot wallet.

The rest of the code depends on the ``Broadcaster`` protocol only. The contract:

- return the transaction hash; the same ``Payout`` (same withdrawal id) must give the
  same transaction, so broadcasting again after a crash between broadcast and commit
  does not pay twice (a real adapter signs once per withdrawal id and re-sends that
  signed transaction);
- raise ``PayoutRejected`` when the network refuses it for good (the withdrawal fails
  and its hold is released), ``TransientError`` when it may work later (it stays
  APPROVED and is retried).

``SimulatedBroadcaster`` is what runs until real chain adapters exist.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Payout:
    withdrawal_id: int
    currency: str
    amount: Decimal
    destination_address: str


class Broadcaster(Protocol):
    async def broadcast(self, payout: Payout) -> str: ...


class SimulatedBroadcaster:
    """Accepts every payout; the hash is derived from the payout, so it is stable."""

    async def broadcast(self, payout: Payout) -> str:
        text = (
            f"{payout.withdrawal_id}:{payout.currency}:{payout.amount:f}:"
            f"{payout.destination_address}"
        )
        return "0x" + hashlib.sha256(text.encode()).hexdigest()
