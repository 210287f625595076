"""The transfers every scenario performs: the same random (sender, recipient, amount)
sequence for each, with idempotency keys unique to the scenario."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

MAX_AMOUNT_CENTS = 5000  # amounts 0.01 .. 50.00


@dataclass(frozen=True, slots=True)
class Party:
    """A bench user: verified, funded, signed in."""

    user_id: int
    email: str
    token: str


@dataclass(frozen=True, slots=True)
class Order:
    sender: Party
    recipient: Party
    currency: str
    amount: Decimal
    key: str  # the idempotency key, unique per sender


def make_plan(
    parties: Sequence[Party], *, count: int, currency: str, seed: int, key_prefix: str
) -> list[Order]:
    """``count`` transfers between distinct random parties; the same ``seed`` gives the
    same pairs and amounts, so scenarios differ only in their keys."""
    rng = random.Random(seed)
    candidates = list(parties)
    orders = []
    for n in range(count):
        sender, recipient = rng.sample(candidates, 2)
        amount = Decimal(rng.randint(1, MAX_AMOUNT_CENTS)).scaleb(-2)
        orders.append(Order(sender, recipient, currency, amount, f"{key_prefix}-{n}"))
    return orders
