"""Exchange custody's GraphQL types: a connected account's mirrored balances (what the
ledger holds for it, as of its last sync), its sync records, and the portfolio's
exchange-held part (kept apart from the platform's custody, valued at the platform's
reference prices)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import Enum

import strawberry
from strawberry import relay

from app.exchanges.custody import MirroredBalance as MirroredBalanceRow
from db.models import ExchangeSync as ExchangeSyncRow
from graphql_schema.wallets.types import amount_in, usd


@strawberry.type(description="A balance at the exchange as the ledger mirrors it.")
class MirroredBalance:
    currency: str
    free: Decimal
    used: Decimal = strawberry.field(description="In open orders at the exchange.")
    total: Decimal
    usd_value: Decimal | None = strawberry.field(
        description="total at the platform's USD reference price; null without one."
    )
    as_of: datetime | None = strawberry.field(description="When the exchange was read.")

    @classmethod
    def of(cls, row: MirroredBalanceRow, as_of: datetime | None) -> MirroredBalance:
        c = row.currency
        return cls(currency=c, free=amount_in(c, row.free), used=amount_in(c, row.used),
                   total=amount_in(c, row.total), usd_value=usd(row.usd_value),
                   as_of=as_of)  # fmt: skip


@strawberry.enum(
    description="CONNECT: the account was connected. SCHEDULED: the periodic job. MANUAL:"
    " syncExchangeAccount. DISCONNECT: the mirror was closed."
)
class ExchangeSyncTrigger(Enum):
    CONNECT = "CONNECT"
    SCHEDULED = "SCHEDULED"
    MANUAL = "MANUAL"
    DISCONNECT = "DISCONNECT"


@strawberry.enum(description="CHANGED: the differences were posted. UNCHANGED: nothing had"
                 " changed. FAILED: the exchange could not be read (errorCode says why);"
                 " nothing posted. SUPERSEDED: a newer reading was applied meanwhile."
                 " CLOSED: disconnected, the mirror brought to zero.")  # fmt: skip
class ExchangeSyncOutcome(Enum):
    CHANGED = "CHANGED"
    UNCHANGED = "UNCHANGED"
    FAILED = "FAILED"
    SUPERSEDED = "SUPERSEDED"
    CLOSED = "CLOSED"


@strawberry.type(description="One currency's change posted by a sync.")
class ExchangeSyncChange:
    currency: str
    free: Decimal
    used: Decimal
    total: Decimal
    total_after: Decimal


@strawberry.type(description="One run of reconciling the mirror with the exchange.")
class ExchangeSync:
    trigger: ExchangeSyncTrigger
    outcome: ExchangeSyncOutcome
    error_code: str | None = strawberry.field(
        description="Why it failed (EXCHANGE_KEY_INVALID, EXCHANGE_UNAVAILABLE,"
        " EXCHANGE_RATE_LIMITED ...); null unless FAILED."
    )
    changes: list[ExchangeSyncChange]
    unmirrored_currencies: list[str] = strawberry.field(
        description="Held at the exchange in currencies the platform does not know: not mirrored."
    )
    read_at: datetime | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: ExchangeSyncRow) -> ExchangeSync:
        changes = [
            ExchangeSyncChange(
                currency=c["currency"],
                free=Decimal(c["free"]),
                used=Decimal(c["used"]),
                total=Decimal(c["total"]),
                total_after=Decimal(c["totalAfter"]),
            )
            for c in row.changes
        ]
        return cls(trigger=ExchangeSyncTrigger(row.trigger),
                   outcome=ExchangeSyncOutcome(row.outcome), error_code=row.error_code,
                   changes=changes, unmirrored_currencies=sorted(row.unmirrored),
                   read_at=row.read_at, created_at=row.created_at)  # fmt: skip


@strawberry.type
class ExchangeSyncConnection(relay.Connection[ExchangeSync]):
    """A connected account's syncs, newest first, paged by keyset cursor."""


def equity_of(balances: list[MirroredBalanceRow]) -> Decimal:
    """The USD value of mirrored balances (those without a reference price count 0)."""
    return sum((b.usd_value or Decimal(0) for b in balances), Decimal(0))
