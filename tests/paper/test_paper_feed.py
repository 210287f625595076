"""Paper events on the outbox: every paper step that changes an order or makes a fill writes
``topics.PAPER_ORDERS`` / ``topics.PAPER_FILLS`` for the account's owner, in the step's own
transaction (the rows and the events carry the same transaction id), for the user's
commands and for the live-price consumer alike; each event is the row as written; a
refusal writes none. On PostgreSQL, the matching engines running."""

from __future__ import annotations

import dataclasses
from decimal import Decimal as D
from typing import Any

import pytest

from app.core.errors import InsufficientFunds
from app.events import topics
from app.paper import accounts, live, order_lists, orders
from app.trading.domain.lists import Bracket
from app.trading.domain.orders import OrderRequest, OrderType, Side
from tests.support.trading import BTC, funded_user, rows, scalar, trade_at

pytestmark = pytest.mark.usefixtures("engines")

ORDER_ROWS = """
    SELECT id, generation, order_id, client_order_id, side, type, status, quantity,
           filled_quantity, price, stop_price, reason, list_id, list_role, created_at,
           updated_at, xmin::text AS tx
    FROM paper_orders WHERE paper_account_id = $1"""
FILL_ROWS = """
    SELECT id, generation, number, order_id, client_order_id, side, liquidity, price,
           quantity, quote_amount, fee, filled_at, xmin::text AS tx
    FROM paper_fills WHERE paper_account_id = $1"""


def limit(side: Side, price: str, quantity: str = "0.0100") -> OrderRequest:
    return OrderRequest(side, OrderType.LIMIT, D(quantity), price=D(price))


async def setup(rt, **start: str) -> tuple[int, int, int, int]:
    """A live market at 90000 and a paper account; (maker, taker, user id, account id)."""
    maker = await funded_user(rt, "maker", BTC="5")
    taker = await funded_user(rt, "taker", USDT="1000000")
    await trade_at(rt, maker, taker, "90000")
    uid = await funded_user(rt, "paper")
    balances = {c: D(a) for c, a in (start or {"USDT": "10000"}).items()}
    account = await accounts.open_account(rt, user_id=uid, name="Feed", symbol=BTC,
                                          balances=balances)  # fmt: skip
    return maker, taker, uid, account.id


async def paper_events(rt, after: int = 0) -> list[dict[str, Any]]:
    """The paper events on the outbox after id ``after``, in order: topic, owner, the
    payload read back through its topic, the writing transaction."""
    found = await rows(
        rt,
        "SELECT id, topic, user_id, payload, xmin::text AS tx FROM outbox"
        " WHERE id > $1 AND topic = ANY($2::text[]) ORDER BY id",
        after,
        [topics.PAPER_FILLS.named(), topics.PAPER_ORDERS.named()],
    )
    by_name = {t.named(): t for t in (topics.PAPER_FILLS, topics.PAPER_ORDERS)}
    return [
        {"id": r["id"], "topic": by_name[r["topic"]], "user_id": r["user_id"], "tx": r["tx"],
         "payload": by_name[r["topic"]].parse(r["payload"])}
        for r in found
    ]  # fmt: skip


async def last_outbox_id(rt) -> int:
    return await scalar(rt, "SELECT coalesce(max(id), 0) FROM outbox")


def as_row(payload: topics.PaperFilled | topics.PaperOrderUpdated) -> dict[str, Any]:
    """The payload as its row: the row's columns under their names, the run as generation."""
    row = {
        k: v
        for k, v in dataclasses.asdict(payload).items()
        if k not in ("paper_account_id", "resets", "symbol", "fee_currency", "sequence")
    }
    return {**row, "generation": payload.resets}  # fmt: skip


async def check_events_are_the_rows(rt, account_id: int, events: list[dict[str, Any]]) -> None:
    """Each event of the step just taken is its row as that step wrote it, from the
    transaction that wrote the row."""
    orders_by_id = {r["id"]: dict(r) for r in await rows(rt, ORDER_ROWS, account_id)}
    fills_by_id = {r["id"]: dict(r) for r in await rows(rt, FILL_ROWS, account_id)}
    for event in events:
        payload = event["payload"]
        assert payload.paper_account_id == account_id and payload.symbol == BTC
        if event["topic"] is topics.PAPER_FILLS:
            row = fills_by_id[payload.id]
            assert payload.fee_currency == "USDT"
        else:
            row = orders_by_id[payload.id]
        assert as_row(payload) == {k: v for k, v in row.items() if k != "tx"}
        assert event["tx"] == row["tx"]


async def test_commands_write_their_order_updates_and_fills_in_their_transaction(rt):
    _, _, uid, account_id = await setup(rt)
    place = {"user_id": uid, "paper_account_id": account_id}
    start = await last_outbox_id(rt)
    await orders.place_order(rt, **place, request=limit(Side.BUY, "89000"), client_order_id="dip")
    (opened,) = await paper_events(rt, start)
    assert opened["topic"] is topics.PAPER_ORDERS and opened["user_id"] == uid
    assert (opened["payload"].client_order_id, opened["payload"].status) == ("dip", "OPEN")
    await check_events_are_the_rows(rt, account_id, [opened])

    middle = await last_outbox_id(rt)
    await orders.place_order(rt, **place, request=limit(Side.BUY, "91000"), client_order_id="now")
    fill, filled = await paper_events(rt, middle)  # marketable: fills at the last price
    assert fill["topic"] is topics.PAPER_FILLS and filled["topic"] is topics.PAPER_ORDERS
    assert fill["user_id"] == filled["user_id"] == uid
    assert (fill["payload"].client_order_id, fill["payload"].liquidity) == ("now", "TAKER")
    assert fill["payload"].price == D("90000")
    assert (filled["payload"].status, filled["payload"].filled_quantity) == ("FILLED", D("0.01"))
    assert fill["tx"] == filled["tx"] != opened["tx"]
    await check_events_are_the_rows(rt, account_id, [fill, filled])

    assert filled["payload"].sequence == fill["payload"].number  # the fill that filled it

    before = await last_outbox_id(rt)
    await orders.cancel_order(rt, **place, client_order_id="dip")
    (canceled,) = await paper_events(rt, before)
    assert (canceled["payload"].status, canceled["payload"].reason) == ("CANCELED", "CANCELED")
    await check_events_are_the_rows(rt, account_id, [canceled])
    sequences = [e["payload"].number if e["topic"] is topics.PAPER_FILLS
                 else e["payload"].sequence for e in await paper_events(rt, start)]  # fmt: skip
    assert sequences == sorted(sequences) and sequences[0] < sequences[-1]

    before = await last_outbox_id(rt)
    with pytest.raises(InsufficientFunds):
        await orders.place_order(rt, **place, request=limit(Side.BUY, "89000", "5"))
    assert await last_outbox_id(rt) == before  # a refusal writes no event


async def test_the_live_consumer_writes_the_fills_it_makes(rt):
    maker, taker, uid, account_id = await setup(rt)
    place = {"user_id": uid, "paper_account_id": account_id}
    await orders.place_order(rt, **place, request=limit(Side.BUY, "89000"), client_order_id="dip")
    start = await last_outbox_id(rt)
    await trade_at(rt, maker, taker, "89500")  # above the limit: the step changes nothing
    await live.run_once(rt)
    assert await paper_events(rt, start) == []
    await trade_at(rt, maker, taker, "88900")  # through it
    assert await live.run_once(rt) >= 1
    fill, filled = await paper_events(rt, start)
    assert (fill["payload"].client_order_id, fill["payload"].liquidity) == ("dip", "MAKER")
    assert fill["payload"].price == D("89000")
    assert (filled["payload"].client_order_id, filled["payload"].status) == ("dip", "FILLED")
    assert fill["user_id"] == filled["user_id"] == uid and fill["tx"] == filled["tx"]
    assert filled["payload"].sequence == fill["payload"].number
    await check_events_are_the_rows(rt, account_id, [fill, filled])


async def test_a_lists_legs_are_reported_with_their_list_and_role(rt):
    maker, taker, uid, account_id = await setup(rt)
    place = {"user_id": uid, "paper_account_id": account_id}
    start = await last_outbox_id(rt)
    bracket = Bracket(limit(Side.BUY, "89000"), take_profit_price=D("91000"),
                      stop_loss_price=D("88000"))  # fmt: skip
    await order_lists.place_order_list(rt, **place, client_list_id="b", bracket=bracket)
    placed = await paper_events(rt, start)
    assert [(e["payload"].client_order_id, e["payload"].status, e["payload"].list_role)
            for e in placed] == [("b:0", "OPEN", "ENTRY"), ("b:1", "PENDING", "TAKE_PROFIT"),
                                 ("b:2", "PENDING", "STOP_LOSS")]  # fmt: skip
    assert len({e["payload"].list_id for e in placed}) == 1 and placed[0]["payload"].list_id
    await check_events_are_the_rows(rt, account_id, placed)
    armed_from = await last_outbox_id(rt)
    await trade_at(rt, maker, taker, "88900")  # the entry fills, its exits go live
    await live.run_once(rt)
    armed = await paper_events(rt, armed_from)
    assert [(e["topic"].name, e["payload"].client_order_id) for e in armed][:2] == [
        (topics.PAPER_FILLS.name, "b:0"), (topics.PAPER_ORDERS.name, "b:0")
    ]  # fmt: skip
    statuses = {e["payload"].client_order_id: e["payload"].status for e in armed[1:]}
    assert statuses == {"b:0": "FILLED", "b:1": "OPEN", "b:2": "UNTRIGGERED"}
    await check_events_are_the_rows(rt, account_id, armed)
