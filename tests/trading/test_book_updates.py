"""What an order-book subscriber is sent (``trading_reads.book_updates``): a snapshot from
PostgreSQL, the deltas that follow on from it, a new snapshot after any gap."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from app.core.errors import TransientError
from app.events.pubsub import Dropped, Event, Gap, Message, Reason
from app.runtime import Runtime
from app.trading import reads as trading_reads
from app.trading.reads import BookDelta, BookLevel, BookSnapshot
from db.raw import driver
from tests.support.trading import BTC, market_id

CHANNEL = "book:BTC/USDT"


def delta(sequence: int, previous: int, *asks: list) -> Message:
    payload = {
        "symbol": BTC,
        "sequence": sequence,
        "previousSequence": previous,
        "bids": [],
        "asks": list(asks),
    }
    return Message(CHANNEL, {"payload": payload})


async def set_book_seq(rt: Runtime, market: int, sequence: int) -> None:
    """As an engine batch that changed the book leaves it (committed)."""
    async with rt.sessions() as session, session.begin():
        pg = await driver(session)
        await pg.execute(
            "UPDATE markets SET next_seq = $2, applied_seq = $2, book_seq = $2 WHERE id = $1",
            market,
            sequence,
        )


async def test_snapshot_then_deltas_in_sequence_and_a_new_snapshot_after_any_gap(rt):
    market = await market_id(rt)
    await set_book_seq(rt, market, 10)

    async def events() -> AsyncIterator[Event]:
        yield delta(11, 10, ["91000.00", "0.010", 1])  # follows the snapshot
        yield delta(11, 10, ["91000.00", "0.010", 1])  # a duplicate
        yield delta(9, 8)  # covered by the snapshot
        await set_book_seq(rt, market, 14)
        yield delta(13, 12)  # 12 was missed: a gap
        yield delta(14, 13)  # covered by the new snapshot
        yield delta(15, 14, ["91000", "0", 0])  # follows it
        yield Gap(CHANNEL, Reason.RECONNECTED)  # Redis was away: anything may be missing
        yield Dropped(CHANNEL, Reason.SLOW_CONSUMER)

    sent: list[BookSnapshot | BookDelta] = []
    with pytest.raises(TransientError):
        async for update in trading_reads.book_updates(
            rt, events(), market_id=market, symbol=BTC, depth=5
        ):
            sent.append(update)

    assert sent == [
        BookSnapshot(BTC, 10, [], []),
        BookDelta(BTC, 11, 10, [], [BookLevel(Decimal("91000"), Decimal("0.01"), 1)]),
        BookSnapshot(BTC, 14, [], []),
        BookDelta(BTC, 15, 14, [], [BookLevel(Decimal("91000"), Decimal("0"), 0)]),
        BookSnapshot(BTC, 14, [], []),
    ]
