"""A paper session, pure: the log a paper account keeps and the simulated venue rebuilt
from it.

A paper account trades one market on a ``SimulatedVenue`` (its own book, its own
balances). Everything the venue is given goes to an append-only log, in order:

    TICK     one trade of the live market: a candle with open = high = low = close =
             the trade's price, volume = its quantity, no duration (``tick_candle``)
    SUBMIT   an order (``client_order_id``, the request as ``request_json``)
    CANCEL   a cancel (``client_order_id``)
    SUBMIT_LIST  an OCO (``oco``: its two requests) or a bracket (``bracket``: the entry's
             request and the exits' prices), by ``client_list_id`` (``list_json``)
    CANCEL_LIST  a list's cancel (``client_list_id``)

The venue is deterministic, so ``replay`` of the starting balances and the log rebuilds
it exactly: after a restart, and in the backtester (the parity: the same ticks and
commands give the same fills, ``PAPER_SETTINGS`` included).

``PAPER_SETTINGS``: an order arrives at once (latency 0: a marketable order trades at
the last trade's price), the live market's liquidity is not capped (volume_share None:
an order the market trades through fills in full, at its own price), no random slippage.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from app.core.errors import ValidationFailed
from app.ledger.rules import AccountKind, AccountRef, Leg
from app.trading.domain.lists import Bracket
from app.trading.domain.orders import (
    MarketSpec,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    TrailingOffsetType,
)
from app.venues.domain.paths import Candle
from app.venues.domain.simulated import SimulatedVenue, SimulationSettings
from app.venues.domain.venue import (
    Balance,
    OrderAccepted,
    OrderEnded,
    OrderFilled,
    OrderTriggered,
    VenueEvent,
)

PAPER_SETTINGS = SimulationSettings(volume_share=None, latency=0, slippage_bps=0, seed=0)
TICK, SUBMIT, CANCEL = "TICK", "SUBMIT", "CANCEL"
SUBMIT_LIST, CANCEL_LIST = "SUBMIT_LIST", "CANCEL_LIST"
# Caps of a paper account (documented in docs/paper-trading.md)
MAX_OPEN_ACCOUNTS = 10  # per user
MAX_STARTING_BALANCE = Decimal(10_000_000)  # per currency, in that currency
MAX_NAME_LENGTH = 64


@dataclass(frozen=True, slots=True)
class LogEntry:
    kind: str  # TICK, SUBMIT, CANCEL, SUBMIT_LIST or CANCEL_LIST
    payload: Mapping[str, Any]  # JSON


def tick_candle(*, price: Decimal, quantity: Decimal, at: datetime) -> Candle:
    """One live trade as the venue's candle."""
    return Candle(at, price, price, price, price, quantity, interval=timedelta(0))


def tick_entry(*, trade_id: int, price: Decimal, quantity: Decimal, at: datetime) -> LogEntry:
    payload = {"tradeId": trade_id, "price": str(price), "quantity": str(quantity)}
    return LogEntry(TICK, {**payload, "at": at.isoformat()})


def submit_entry(client_order_id: str, request: OrderRequest) -> LogEntry:
    return LogEntry(SUBMIT, {"clientOrderId": client_order_id, "request": request_json(request)})


def cancel_entry(client_order_id: str) -> LogEntry:
    return LogEntry(CANCEL, {"clientOrderId": client_order_id})


def submit_list_entry(
    client_list_id: str,
    *,
    oco: tuple[OrderRequest, OrderRequest] | None = None,
    bracket: Bracket | None = None,
) -> LogEntry:
    return LogEntry(SUBMIT_LIST, {"clientListId": client_list_id, **list_json(oco, bracket)})


def cancel_list_entry(client_list_id: str) -> LogEntry:
    return LogEntry(CANCEL_LIST, {"clientListId": client_list_id})


def list_json(
    oco: tuple[OrderRequest, OrderRequest] | None, bracket: Bracket | None
) -> dict[str, Any]:
    """An OCO's or a bracket's request as JSON (the other one null), exactly."""
    limit = None if bracket is None else bracket.stop_loss_limit_price
    return {
        "oco": None if oco is None else [request_json(r) for r in oco],
        "bracket": None
        if bracket is None
        else {
            "entry": request_json(bracket.entry),
            "takeProfitPrice": str(bracket.take_profit_price),
            "stopLossPrice": str(bracket.stop_loss_price),
            "stopLossLimitPrice": None if limit is None else str(limit),
        },
    }


def list_from_json(
    data: Mapping[str, Any],
) -> tuple[tuple[OrderRequest, OrderRequest] | None, Bracket | None]:
    """(oco, bracket) of a SUBMIT_LIST entry's payload (a logged OCO has two orders)."""
    if data.get("oco") is not None:
        first, second = (request_from_json(r) for r in data["oco"])
        return (first, second), None
    b = data["bracket"]
    limit = b.get("stopLossLimitPrice")
    return None, Bracket(
        entry=request_from_json(b["entry"]),
        take_profit_price=Decimal(b["takeProfitPrice"]),
        stop_loss_price=Decimal(b["stopLossPrice"]),
        stop_loss_limit_price=None if limit is None else Decimal(limit),
    )


def request_json(request: OrderRequest) -> dict[str, Any]:
    """An ``OrderRequest`` as JSON (Decimals as strings, enums by value), exactly."""
    return {
        name: None if value is None else _json_value(value)
        for name, value in ((n, getattr(request, n)) for n in OrderRequest.__dataclass_fields__)
    }


def _json_value(value: Any) -> Any:
    if isinstance(value, bool | int | str):
        return value.value if hasattr(value, "value") else value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)  # Decimal


def request_from_json(data: Mapping[str, Any]) -> OrderRequest:
    def dec(name: str) -> Decimal | None:
        return None if data.get(name) is None else Decimal(data[name])

    expires = data.get("expires_at")
    tif = data.get("time_in_force")
    return OrderRequest(
        side=Side(data["side"]),
        type=OrderType(data["type"]),
        quantity=Decimal(data["quantity"]),
        price=dec("price"),
        stop_price=dec("stop_price"),
        time_in_force=None if tif is None else TimeInForce(tif),
        expires_at=None if expires is None else datetime.fromisoformat(expires),
        post_only=bool(data.get("post_only")),
        worst_price=dec("worst_price"),
        max_slippage_bps=data.get("max_slippage_bps"),
        trailing_offset=dec("trailing_offset"),
        trailing_offset_type=TrailingOffsetType(data.get("trailing_offset_type", "AMOUNT")),
        activation_price=dec("activation_price"),
    )


def new_venue(
    market: MarketSpec, balances: Mapping[str, Decimal], start: datetime
) -> SimulatedVenue:
    return SimulatedVenue(market, balances=balances, settings=PAPER_SETTINGS, start=start)


def apply_entry(venue: SimulatedVenue, entry: LogEntry) -> None:
    """Give ``venue`` one log entry."""
    p = entry.payload
    if entry.kind == TICK:
        at = max(datetime.fromisoformat(p["at"]), venue.now)
        venue.advance(
            tick_candle(price=Decimal(p["price"]), quantity=Decimal(p["quantity"]), at=at)
        )
    elif entry.kind == SUBMIT:
        venue.submit(
            symbol=venue.market.symbol,
            client_order_id=p["clientOrderId"],
            request=request_from_json(p["request"]),
        )
    elif entry.kind == CANCEL:
        venue.cancel(client_order_id=p["clientOrderId"])
    elif entry.kind == SUBMIT_LIST:
        oco, bracket = list_from_json(p)
        venue.submit_list(
            symbol=venue.market.symbol, client_list_id=p["clientListId"], oco=oco, bracket=bracket
        )
    elif entry.kind == CANCEL_LIST:
        venue.cancel_list(client_list_id=p["clientListId"])
    else:
        raise ValueError(f"unknown paper log entry {entry.kind}")


def replay(
    market: MarketSpec,
    balances: Mapping[str, Decimal],
    start: datetime,
    entries: Iterable[LogEntry],
) -> SimulatedVenue:
    """The venue a paper session's log leaves: start it, give it every entry in order."""
    venue = new_venue(market, balances, start)
    for entry in entries:
        apply_entry(venue, entry)
    return venue


def check_starting_balances(
    market: MarketSpec, balances: Mapping[str, Decimal]
) -> dict[str, Decimal]:
    """The starting balances if allowed: the market's currencies only, each at most
    ``MAX_STARTING_BALANCE`` and at its scale, something to trade with; else
    ``ValidationFailed`` (field ``balances``)."""
    scales = {market.base: market.base_scale, market.quote: market.quote_scale}
    checked: dict[str, Decimal] = {}
    for currency, amount in balances.items():
        if currency not in scales:
            raise ValidationFailed(f"{currency} is not traded on {market.symbol}", field="balances")
        if amount < 0 or amount > MAX_STARTING_BALANCE:
            raise ValidationFailed(
                f"A starting balance is between 0 and {MAX_STARTING_BALANCE}", field="balances"
            )
        if amount.as_tuple().exponent < -scales[currency]:  # type: ignore[operator]
            raise ValidationFailed(
                f"{currency} has {scales[currency]} decimals at most", field="balances"
            )
        if amount:
            checked[currency] = amount
    if not checked:
        raise ValidationFailed("Start with some balance", field="balances")
    return checked


def ledger_legs(
    paper_account_id: int,
    ledger: Mapping[AccountRef, Decimal],
    balances: Mapping[str, Balance],
) -> list[Leg]:
    """The paper book's entry that makes the account's ledger balances (``ledger``:
    what they are now) equal the venue's ``balances``: each change of PAPER_AVAILABLE /
    PAPER_HELD, against PAPER_EQUITY for what the market took or gave (a fill's price
    and fee). Empty when nothing changed."""
    legs: list[Leg] = []
    for currency, balance in sorted(balances.items()):
        moved = Decimal(0)
        for kind, target in (
            (AccountKind.PAPER_AVAILABLE, balance.available),
            (AccountKind.PAPER_HELD, balance.held),
        ):
            ref = AccountRef(currency, kind, paper_account_id=paper_account_id)
            change = target - ledger.get(ref, Decimal(0))
            if change:
                legs.append(Leg(ref, change))
                moved += change
        if moved:
            legs.append(Leg(AccountRef(currency, AccountKind.PAPER_EQUITY), -moved))
    return legs


@dataclass(frozen=True, slots=True)
class OrderChange:
    """What a step's venue events did to one order: its status after them, the quantity
    they filled, why it ended (None: it did not), and the number of its last event."""

    status: OrderStatus
    filled: Decimal
    reason: str | None
    number: int


def order_changes(events: Iterable[VenueEvent]) -> dict[int, OrderChange]:
    """The change of each order the events touched, by order id (the mirrored rows'
    update and the order updates a step publishes)."""
    changes: dict[int, OrderChange] = {}
    for event in events:
        known = changes.get(event.order_id)
        filled = known.filled if known else Decimal(0)
        status, reason = (known.status, known.reason) if known else (OrderStatus.NEW, None)
        if isinstance(event, OrderAccepted):
            status = event.status
        elif isinstance(event, OrderTriggered):
            status = OrderStatus.TRIGGERED
        elif isinstance(event, OrderFilled):
            status = OrderStatus.PARTIALLY_FILLED if event.remaining else OrderStatus.FILLED
            filled += event.quantity
        elif isinstance(event, OrderEnded):
            status, reason = event.status, event.reason
        changes[event.order_id] = OrderChange(status, filled, reason, event.number)
    return changes


def equity(balances: Mapping[str, Balance], market: MarketSpec, price: Decimal | None) -> Decimal:
    """Cash plus position at ``price`` (the last trade), in the quote currency."""
    cash = balances[market.quote].total
    position = balances[market.base].total
    return cash + position * (price or Decimal(0))
