"""The market as its engine holds it in memory, and what applying commands does to it.

``MarketState`` keeps the book (``OrderBook``, pure), the live orders and their holds, and
applies one batch of commands to them (``apply``), gathering what they did in a ``Batch``:
fills and their deferred ledger entries, order and hold changes, positions, levels. What
follows from a command rather than from the log (an OCO sibling's cancel after a fill or a
trigger, a stop order that trades triggered, a bracket's exits once its entry has filled,
a GTD expiry) is applied with ``OrderBook.apply_consequence`` under the command's seq. The
trigger engine lives here too: the market's conditional orders, evaluated against every
trade price, each fired exactly once.

Only a hold that may be refused (an amend that needs more, a bracket's exits) touches the
database here (through ``Funds``: the batch's transaction); everything else is written by
``sql.write`` at the end of the batch.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from app.core.errors import InsufficientFunds
from app.ledger import holds
from app.ledger import journal as ledger
from app.ledger.holds import HoldEvent
from app.ledger.rules import AccountKind, move
from app.trading.domain import orders as rules
from app.trading.domain import settlement
from app.trading.domain.lists import OCO_ROLES, ListRole
from app.trading.domain.matching import (
    Accepted,
    Amend,
    Amended,
    AmendRejected,
    BookSnapshot,
    Cancel,
    CancelAll,
    CancelRejected,
    Event,
    ExpireDue,
    Fill,
    OrderBook,
    OrderDone,
    Rejected,
)
from app.trading.domain.orders import (
    OrderEvent,
    OrderStatus,
    Side,
)
from app.trading.engine.funds import Funds
from app.trading.engine.rows import FILLS
from app.trading.engine.settlement import CASH, decimal_amount, hold_need
from app.trading.engine.state import (
    Batch,
    HoldState,
    LiveOrder,
    OrderIndex,
    hold_state,
    live_order,
    place,
)
from app.trading.engine.state import (
    resting as resting_order,
)
from app.trading.engine.triggers import fires
from app.trading.markets import MarketRow

_D = Decimal


class MarketState:
    """The book, the live orders and their holds of one market, as of ``applied``."""

    def __init__(self, market_id: int, market: MarketRow) -> None:
        self.market_id = market_id
        self.market = market
        self.spec = market.spec
        self.orders: dict[int, LiveOrder] = {}
        self.holds: dict[int, HoldState] = {}
        self.index = OrderIndex()
        self.book: OrderBook | None = None
        self.applied = market.applied_seq  # == book.last_seq
        self.book_seq = market.book_seq
        self.last_price = (
            None if market.last_price is None else self.spec.nearest_ticks(market.last_price)
        )
        self.batch = Batch()  # the batch being applied (``apply``)
        self.funds: Funds | None = None  # where it takes a hold that may be refused

    @classmethod
    def restore(cls, market_id: int, market: MarketRow, rows: list[Any]) -> MarketState:
        """The state as PostgreSQL has it: ``market`` and its live orders (``rows``, as
        ``sql.LIVE_ORDERS_SQL`` reads them)."""
        self = cls(market_id, market)
        for row in rows:
            self.remember(row)
        # Orders that share a priority (one command's seq) were queued in the order they
        # were placed: the command's own order first, then what it triggered (by id, as
        # the trigger engine fires them). ``OrderBook.restore`` sorts stably by priority.
        own = {row["id"] for row in rows if row["own_priority"]}
        queued = sorted(
            (
                o
                for o in self.orders.values()
                if o.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)
            ),
            key=lambda o: (o.priority, o.id not in own, o.id),
        )
        snapshot = BookSnapshot(
            market.applied_seq,
            market.last_trade_id,
            tuple(resting_order(o) for o in queued if o.side is Side.BUY),
            tuple(resting_order(o) for o in queued if o.side is Side.SELL),
        )
        self.book = OrderBook.restore(self.spec, snapshot)
        return self

    def remember(self, row: Any) -> LiveOrder:
        order = live_order(self.spec, row)
        self.orders[order.id] = order
        self.index.add(order)
        if row["hold_id"] is not None and row["hold_id"] not in self.holds:
            self.holds[row["hold_id"]] = hold_state(row)
        if order.filled and order.hold_id is not None:
            # fills spent from it: when it ends it is POSTED, not VOIDED
            self.holds[order.hold_id].spent = True
        return order

    async def apply(self, funds: Funds, commands: list[Any], due: int | None) -> Batch:
        """Apply ``commands`` (and the expiries due at ``due``, epoch ms) to the book; what
        they did, to be written (``sql.write``). A hold that may be refused is taken at
        once, from ``funds`` (``SessionFunds``: the batch's transaction)."""
        batch = Batch()
        self.batch, self.funds = batch, funds
        for command in commands:
            await self._command(command)
        if due is not None:
            await self._expire(due)
            await self._hand_over()
        return batch

    def forget_final(self) -> None:
        index = self.index
        final = [self.orders[i] for i in sorted(index.unsettled) if self.orders[i].final]
        index.unsettled.clear()
        for order in final:
            del self.orders[order.id]
            index.remove(order)
        for order in final:
            if order.hold_id is not None and not any(
                self.orders[i].hold_id == order.hold_id for i in index.siblings(order)
            ):
                self.holds.pop(order.hold_id, None)

    def expiry_due(self, now_ms: int) -> bool:
        return any(
            (o := self.orders[i]).expires_ms is not None and o.expires_ms <= now_ms and not o.final
            for i in self.index.expiring
        )

    def _orders_in(self, ids: set[int]) -> list[LiveOrder]:
        """Those orders by id (the order events are handled in, whatever the set's)."""
        return [self.orders[i] for i in sorted(ids)]

    # -- commands ---------------------------------------------------------------------

    async def _command(self, command: Any) -> None:
        assert self.book is not None
        seq, kind, order_id = command["seq"], command["kind"], command["order_id"]
        self.applied = seq
        outcome = "OK"
        order = self.orders.get(order_id) if order_id is not None else None
        if kind == "PLACE":
            assert order is not None
            await self._events(self.book.handle(place(seq, order)))
        elif kind == "ARM":
            assert order is not None
            self.book.skip(seq)
            if order.status is OrderStatus.UNTRIGGERED:
                self._touch(order)
                if self.last_price is not None:
                    await self._observe([self.last_price])
        elif kind == "CANCEL":
            assert order is not None
            outcome = await self._cancel(seq, order)
            if outcome == "OK" and order.list_role in OCO_ROLES:
                await self._cancel_siblings(order)  # canceling one leg cancels the OCO
        elif kind == "CANCEL_ALL":
            # orders off the book first: a bracket's exits canceled before its entry, so
            # the entry's end (partly filled) does not release them into the book
            for other in self._orders_in(self.index.users.get(command["user_id"], set())):
                if other.status in (
                    OrderStatus.UNTRIGGERED,
                    OrderStatus.PENDING,
                ):
                    await self._end(other, OrderEvent.CANCEL, "CANCELED")
            await self._events(self.book.handle(CancelAll(seq, command["user_id"])))
        elif kind == "AMEND":
            assert order is not None
            args = command["args"]
            args = json.loads(args) if isinstance(args, str) else args
            outcome = await self._amend(seq, order, args["price"], args["quantity"])
        else:
            self.book.skip(seq)
            outcome = "UNKNOWN_COMMAND"
        await self._hand_over()
        self.batch.outcomes[seq] = outcome

    async def _cancel(self, seq: int, order: LiveOrder) -> str:
        assert self.book is not None
        if order.id in self.book:
            await self._events(self.book.handle(Cancel(seq, order.id)))
            return "OK"
        self.book.skip(seq)
        if order.final or order.status not in (
            OrderStatus.UNTRIGGERED,
            OrderStatus.PENDING,
            OrderStatus.TRIGGERED,
            OrderStatus.NEW,
        ):
            return "ORDER_NOT_CANCELLABLE"
        await self._end(order, OrderEvent.CANCEL, "CANCELED")
        return "OK"

    async def _amend(self, seq: int, order: LiveOrder, price: int, quantity: int) -> str:
        assert self.book is not None
        resting = self.book.resting(order.id)
        if resting is None or order.list_id is not None:
            self.book.skip(seq)
            return "ORDER_NOT_AMENDABLE"
        remaining = quantity - (resting.quantity - resting.remaining)
        if remaining <= 0 or price <= 0:
            self.book.skip(seq)
            return "INVALID_AMEND"
        hold = self.holds[order.hold_id] if order.hold_id is not None else None
        assert hold is not None
        need = hold_need(self.spec, order.side, price, remaining, resting.fee_numerator)
        delta = need - hold.remaining
        if delta > 0:
            try:
                await self._move_hold(hold, delta)
            except InsufficientFunds:
                self.book.skip(seq)
                return InsufficientFunds.code
        old_price = order.price
        events = self.book.handle(Amend(seq, order.id, price, quantity))
        if any(isinstance(e, AmendRejected) for e in events):
            if delta > 0:
                await self._move_hold(hold, -delta)
            return next(e.reason.value for e in events if isinstance(e, AmendRejected))
        self.batch.levels.add((order.side, old_price))
        await self._events(events)
        if delta < 0 and not order.final:
            await self._move_hold(hold, delta)
        return "OK"

    async def _move_hold(self, hold: HoldState, delta: int) -> None:
        """Hold ``delta`` more (AVAILABLE -> HELD: may be refused), or release ``-delta``."""
        amount = decimal_amount(self.spec, hold.currency, abs(delta))
        available = ledger.user_account(hold.user_id, hold.currency)
        held = ledger.user_account(hold.user_id, hold.currency, AccountKind.HELD)
        if delta > 0:
            await self.funds.hold(
                self.batch.journal, move(amount, available, held), f"hold:{hold.id}"
            )
        else:
            self.batch.journal.defer(
                kind="HOLD_VOID", legs=move(amount, held, available), reference=f"hold:{hold.id}"
            )
        holds.apply(hold, HoldEvent.TOP_UP if delta > 0 else HoldEvent.RELEASE, abs(delta))
        self.batch.holds[hold.id] = hold

    async def _events(self, events: list[Event]) -> None:
        prices: list[int] = []
        for event in events:
            if isinstance(event, Fill):
                await self._fill(event)
                prices.append(event.price)
            elif isinstance(event, Accepted):
                order = self.orders[event.order_id]
                self._transition(order, OrderEvent.ACCEPT)
                order.priority = event.seq
                resting = self.book.resting(order.id) if self.book else None
                if resting is not None:
                    self.batch.levels.add((order.side, order.price))
            elif isinstance(event, Rejected):
                order = self.orders[event.order_id]
                await self._end(order, OrderEvent.REJECT, event.reason.value)
                if order.list_role in OCO_ROLES:
                    # a list refused on arrival (the caller gets the error) leaves nothing
                    await self._cancel_siblings(order)
            elif isinstance(event, OrderDone):
                order = self.orders[event.order_id]
                done = (
                    OrderEvent.CANCEL if event.status is OrderStatus.CANCELED else OrderEvent.EXPIRE
                )
                self.batch.levels.add((order.side, order.price))
                await self._end(order, done, event.reason.value)
            elif isinstance(event, Amended):
                order = self.orders[event.order_id]
                self._transition(order, OrderEvent.AMEND)
                order.price, order.quantity = event.price, event.quantity
                if not event.kept_priority:
                    order.priority = event.seq
                self.batch.levels.add((order.side, order.price))
            elif isinstance(event, AmendRejected | CancelRejected):
                pass
        await self._hand_over()
        if prices:
            await self._observe(prices)

    async def _hand_over(self) -> None:
        entries = self.batch.entries_done
        while entries:
            await self._entry_done(entries.pop(0))

    def _touch(self, order: LiveOrder) -> None:
        self.batch.orders[order.id] = order
        self.index.unsettled.add(order.id)

    def _transition(self, order: LiveOrder, event: OrderEvent) -> None:
        order.status = rules.apply(order.status, event)
        order.changed = True
        self._touch(order)

    async def _end(self, order: LiveOrder, event: OrderEvent, reason: str | None) -> None:
        """The order leaves: release its hold (unless shared with a live order), and a
        bracket's entry hands over to its exits."""
        self._transition(order, event)
        order.reason = reason
        await self._finished(order)

    async def _finished(self, order: LiveOrder) -> None:
        """An order just became final (filled, canceled, expired, rejected)."""
        await self._release(order)
        if order.list_role == ListRole.ENTRY:
            self.batch.entries_done.append(order)

    async def _release(self, order: LiveOrder) -> None:
        if order.hold_id is None:
            return
        hold = self.holds.get(order.hold_id)
        if hold is None or hold.status != "PENDING":
            return
        if any(
            (o := self.orders[i]).hold_id == hold.id and not o.final
            for i in self.index.siblings(order)
        ):
            return
        if hold.remaining:
            await self._move_hold(hold, -hold.remaining)
        holds.apply(hold, HoldEvent.POST if hold.spent else HoldEvent.VOID)
        self.batch.holds[hold.id] = hold

    async def _fill(self, fill: Fill) -> None:
        spec = self.spec
        maker, taker = self.orders[fill.maker_order_id], self.orders[fill.taker_order_id]
        buyer, seller = (taker, maker) if fill.taker_side is Side.BUY else (maker, taker)
        value = fill.notional
        for order, fee, acc_delta in (
            (maker, fill.maker_fee, value * spec.maker_fee_numerator),
            (taker, fill.taker_fee, value * spec.taker_fee_numerator),
        ):
            order.filled += fill.quantity
            order.executed += value
            order.fees += fee
            order.fee_numerator += acc_delta
            done = fill.maker_remaining if order is maker else fill.taker_remaining
            self._transition(order, OrderEvent.FILL_PARTIAL if done else OrderEvent.FILL)
        buyer_hold = self.holds[buyer.hold_id]  # type: ignore[index]
        seller_hold = self.holds[seller.hold_id]  # type: ignore[index]
        settled = settlement.settle(
            spec,
            fill,
            buyer_hold_left=buyer_hold.remaining,
            seller_hold_left=seller_hold.remaining,
        )
        holds.apply(buyer_hold, HoldEvent.DRAW, settled.buyer_draw)
        holds.apply(seller_hold, HoldEvent.DRAW, settled.seller_draw)
        buyer_hold.spent = seller_hold.spent = True
        self.batch.holds[buyer_hold.id] = buyer_hold
        self.batch.holds[seller_hold.id] = seller_hold
        entry = self.batch.journal.defer(
            kind=settlement.TRADE,
            legs=settled.legs,
            reference=f"trade:{spec.symbol}:{fill.trade_id}",
        )
        price = spec.price(fill.price)
        quantity = spec.quantity(fill.quantity)
        for order, liquidity, fee in (
            (maker, "MAKER", settled.maker_fee),
            (taker, "TAKER", settled.taker_fee),
        ):
            self.batch.fills.append(
                FILLS.row(
                    trade_id=fill.trade_id,
                    seq=fill.seq,
                    order_id=order.id,
                    user_id=order.user_id,
                    side=order.side.value,
                    liquidity=liquidity,
                    price=price,
                    quantity=quantity,
                    quote_amount=settled.value,
                    fee=fee,
                    entry=entry,  # its number in the batch's journal, until ``_write``
                )
            )
        self.batch.trades.append(
            {
                "trade_id": fill.trade_id,
                "price": price,
                "quantity": quantity,
                "taker_side": fill.taker_side.value,
                "sequence": fill.seq,
            }
        )
        paid, received, base = settled.buyer_paid, settled.seller_received, settled.base
        self.batch.positions.append((buyer.user_id, spec.base, base, paid, True))
        self.batch.positions.append((seller.user_id, spec.base, base, received, False))
        if spec.quote not in CASH:
            self.batch.positions.append((buyer.user_id, spec.quote, paid, settled.value, False))
            self.batch.positions.append((seller.user_id, spec.quote, received, settled.value, True))
        self.batch.levels.add((maker.side, maker.price))
        self.last_price = fill.price
        for order in (maker, taker):
            if order.list_role in OCO_ROLES:
                await self._cancel_siblings(order)
            if order.status is OrderStatus.FILLED:
                await self._finished(order)  # what a better price left of the hold is free

    async def _cancel_siblings(self, order: LiveOrder) -> None:
        assert self.book is not None
        for other in self._orders_in(self.index.siblings(order)):
            if other.list_role in OCO_ROLES and not other.final:
                if other.id in self.book:
                    await self._events(self.book.apply_consequence(Cancel(self.applied, other.id)))
                    other.reason = "OCO"
                else:
                    await self._end(other, OrderEvent.CANCEL, "OCO")

    async def _entry_done(self, entry: LiveOrder) -> None:
        siblings = self._orders_in(self.index.siblings(entry))
        exits = [o for o in siblings if o.status is OrderStatus.PENDING]
        if not exits:
            return
        if entry.filled == 0:
            for order in exits:
                await self._end(order, OrderEvent.CANCEL, "ENTRY_NOT_FILLED")
            return
        spec = self.spec
        for order in exits:
            order.quantity = entry.filled
        if exits[0].side is Side.SELL:
            currency, need = spec.base, entry.filled * spec.base_units_per_lot
        else:
            currency = spec.quote
            need = max(rules.hold_units(spec, Side.BUY, o.price, o.quantity) for o in exits)
        hold = HoldState(0, entry.user_id, currency, 0, 0)
        try:
            hold.id = await self._new_hold(hold, need)
        except InsufficientFunds:
            for order in exits:
                await self._end(order, OrderEvent.CANCEL, "INSUFFICIENT_FUNDS")
            return
        self.holds[hold.id] = hold
        for order in exits:
            order.hold_id = hold.id
            if order.list_role == ListRole.TAKE_PROFIT:
                self._transition(order, OrderEvent.RELEASE)
                await self._events(self.book.apply_consequence(place(self.applied, order)))  # type: ignore[union-attr]
            else:
                self._transition(order, OrderEvent.ARM)
        if self.last_price is not None:
            await self._observe([self.last_price])

    async def _new_hold(self, hold: HoldState, units: int) -> int:
        request = ledger.HoldRequest(
            hold.user_id,
            hold.currency,
            decimal_amount(self.spec, hold.currency, units),
            reference=f"bracket:{self.market_id}",
        )
        await self.funds.hold(self.batch.journal, holds.hold_legs(request), request.reference)
        hold_id = await self.funds.new_hold(request)
        hold.amount = hold.remaining = units
        return hold_id

    # -- triggers ---------------------------------------------------------------------

    async def _observe(self, prices: list[int]) -> None:
        """Fire the conditional orders these trade prices reach, each once (the trades
        of a fired order are observed in turn, through ``_events``)."""
        assert self.book is not None
        fired = [
            order
            for order in self._orders_in(self.index.conditional)
            if order.status is OrderStatus.UNTRIGGERED and self._fires(order, prices)
        ]
        for order in fired:
            if order.status is not OrderStatus.UNTRIGGERED:
                continue  # an OCO sibling fired first
            self._transition(order, OrderEvent.TRIGGER)
            if order.list_role in OCO_ROLES:
                await self._cancel_siblings(order)
            await self._events(self.book.apply_consequence(place(self.book.last_seq, order)))

    def _fires(self, order: LiveOrder, prices: list[int]) -> bool:
        fired, moved = fires(order, prices)
        if moved:
            self._touch(order)
        return fired

    async def _expire(self, now_ms: int) -> None:
        assert self.book is not None
        await self._events(self.book.apply_consequence(ExpireDue(self.applied, now_ms)))
        for order in self._orders_in(self.index.expiring):
            if (
                order.expires_ms is not None
                and order.expires_ms <= now_ms
                and order.status in (OrderStatus.UNTRIGGERED, OrderStatus.PENDING)
            ):
                await self._end(order, OrderEvent.EXPIRE, "GTD_EXPIRED")

    # -- writing ----------------------------------------------------------------------
