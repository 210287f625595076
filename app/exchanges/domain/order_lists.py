"""OCO and bracket lists on connected exchange accounts, pure: their checks, their
bracket's exits, and what the platform does next for a list (``next_step``).

No exchange has a unified OCO in ccxt, so every list is the platform's: its legs are
ordinary orders (a limit at the exchange; a stop native where the exchange has it, else
ARMED by the platform) tied by the list, and the platform enforces "one cancels the
other" when it sees a leg fill or trigger. An OCO is a TAKE_PROFIT limit and a
STOP_LOSS stop of the same side and quantity. A bracket is an ENTRY (limit or market);
once the entry has ended with a fill (filled, or canceled after a partial fill), its
exits, a TAKE_PROFIT limit and a STOP_LOSS stop of the other side, are placed for what
it filled, as an OCO.

A list's life: ACTIVE -> DONE (a leg filled or triggered, the other canceled) or
CANCELED (by its owner, or a leg ended unfilled: the other is canceled too)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from app.core.errors import ValidationFailed
from app.exchanges.domain.orders import (
    LIVE,
    ExchangeOrderStatus,
    ExchangeOrderType,
)
from app.trading.domain.orders import Side

S = ExchangeOrderStatus
EXIT_CLIENT_ID_PREFIX = "cl"  # + 15 hex digits of the list's id + the role's letter: 18


class ListKind(StrEnum):
    OCO = "OCO"
    BRACKET = "BRACKET"


class ListStatus(StrEnum):
    ACTIVE = "ACTIVE"
    DONE = "DONE"
    CANCELED = "CANCELED"


class ListRole(StrEnum):
    ENTRY = "ENTRY"
    TAKE_PROFIT = "TAKE_PROFIT"
    STOP_LOSS = "STOP_LOSS"


EXITS = (ListRole.TAKE_PROFIT, ListRole.STOP_LOSS)  # one cancels the other


@dataclass(frozen=True, slots=True)
class LegRequest:
    """One leg as asked for (amounts checked against the market when it is placed)."""

    side: Side
    type: ExchangeOrderType
    quantity: Decimal
    price: Decimal | None = None
    stop_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class ListLeg:
    """Where a placed order belongs: its list, its role, and (a bracket's exit) the
    client order id the list gives it, the same in every runner (never placed twice)."""

    list_id: int
    role: ListRole
    client_order_id: str | None = None


def exit_client_order_id(list_id: int, role: ListRole) -> str:
    return f"{EXIT_CLIENT_ID_PREFIX}{list_id:015x}{role.value[0].lower()}"


def _price(value: Decimal | None, field: str) -> Decimal:
    if value is None or not value.is_finite() or value <= 0:
        raise ValidationFailed(f"{field} must be a positive price", field=field)
    return value


def _check_exit_prices(side: Side, take_profit: Decimal, stop: Decimal, field: str) -> None:
    """A SELL exit takes profit above its stop; a BUY exit below it."""
    if (take_profit > stop) is not (side is Side.SELL):
        above = "above" if side is Side.SELL else "below"
        raise ValidationFailed(f"The take-profit must be {above} the stop price", field=field)


def check_oco(legs: Sequence[LegRequest]) -> dict[ListRole, LegRequest]:
    """The OCO's two legs by role: a LIMIT (TAKE_PROFIT) and a stop (STOP_LOSS) of the
    same side and quantity, the limit on the profit side of the stop."""
    if len(legs) != 2:
        raise ValidationFailed("An OCO has two orders", field="orders")
    limits = [leg for leg in legs if leg.type is ExchangeOrderType.LIMIT]
    stops = [leg for leg in legs if leg.type.is_stop]
    if len(limits) != 1 or len(stops) != 1:
        raise ValidationFailed("An OCO is a LIMIT and a stop order", field="orders")
    limit, stop = limits[0], stops[0]
    if limit.side is not stop.side or limit.quantity != stop.quantity:
        raise ValidationFailed("An OCO's orders have the same side and quantity", field="orders")
    _check_exit_prices(limit.side, _price(limit.price, "price"),
                       _price(stop.stop_price, "stopPrice"), "orders")  # fmt: skip
    return {ListRole.TAKE_PROFIT: limit, ListRole.STOP_LOSS: stop}


@dataclass(frozen=True, slots=True)
class BracketExits:
    take_profit_price: Decimal
    stop_loss_price: Decimal
    stop_loss_limit_price: Decimal | None = None


def check_bracket(entry: LegRequest, exits: BracketExits) -> None:
    if entry.type not in (ExchangeOrderType.LIMIT, ExchangeOrderType.MARKET):
        raise ValidationFailed("A bracket's entry is a LIMIT or MARKET order", field="entry")
    side = _other(entry.side)
    _price(exits.take_profit_price, "takeProfitPrice")
    _price(exits.stop_loss_price, "stopLossPrice")
    if exits.stop_loss_limit_price is not None:
        _price(exits.stop_loss_limit_price, "stopLossLimitPrice")
    _check_exit_prices(side, exits.take_profit_price, exits.stop_loss_price, "takeProfitPrice")


def _other(side: Side) -> Side:
    return Side.SELL if side is Side.BUY else Side.BUY


def bracket_exits(entry_side: Side, exits: BracketExits, quantity: Decimal) -> dict[
    ListRole, LegRequest
]:  # fmt: skip
    """The exits of a bracket whose entry filled ``quantity``."""
    side = _other(entry_side)
    stop_type = (ExchangeOrderType.STOP_LOSS if exits.stop_loss_limit_price is None
                 else ExchangeOrderType.STOP_LOSS_LIMIT)  # fmt: skip
    return {
        ListRole.TAKE_PROFIT: LegRequest(side, ExchangeOrderType.LIMIT, quantity,
                                         price=exits.take_profit_price),
        ListRole.STOP_LOSS: LegRequest(side, stop_type, quantity,
                                       price=exits.stop_loss_limit_price,
                                       stop_price=exits.stop_loss_price),
    }  # fmt: skip


# --- what next --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LegState:
    id: int
    role: ListRole
    status: ExchangeOrderStatus
    filled: Decimal
    triggered: bool  # an emulated stop that fired

    @property
    def live(self) -> bool:
        return self.status in LIVE or self.status is S.ARMED

    @property
    def won(self) -> bool:
        """It filled (in part) or fired: the other exit is to be canceled."""
        return self.filled > 0 or self.triggered


@dataclass(frozen=True, slots=True)
class Step:
    """Legs to cancel (at the exchange, or disarmed), exits to place for ``exits_for``,
    and the list's new status (None: unchanged)."""

    cancel: tuple[int, ...] = ()
    exits_for: Decimal | None = None
    status: ListStatus | None = None


def next_step(kind: ListKind, status: ListStatus, legs: Sequence[LegState]) -> Step:
    if status is ListStatus.CANCELED:
        return Step(cancel=tuple(leg.id for leg in legs if leg.live))
    exits = [leg for leg in legs if leg.role in EXITS]
    if kind is ListKind.BRACKET and not exits:
        [entry] = [leg for leg in legs if leg.role is ListRole.ENTRY]
        if entry.live or status is not ListStatus.ACTIVE:
            return Step()
        if entry.filled > 0:
            return Step(exits_for=entry.filled)
        return Step(status=ListStatus.CANCELED)
    won = [leg for leg in exits if leg.won]
    if won:
        losers = tuple(leg.id for leg in exits if not leg.won and leg.live)
        done = status is ListStatus.ACTIVE and not losers
        return Step(cancel=losers, status=ListStatus.DONE if done else None)
    canceled = any(leg.status is S.CANCELED for leg in exits)
    if status is ListStatus.ACTIVE and (canceled or not any(leg.live for leg in exits)):
        # a leg canceled unfilled (by its owner, by the exchange): the other goes with it;
        # a leg refused leaves the other standing (a bracket's stop stays protecting)
        return Step(cancel=tuple(leg.id for leg in exits if leg.live),
                    status=ListStatus.CANCELED)  # fmt: skip
    return Step()
