"""Copy trading rules, independent of storage: how big a follower's copy of a leader's
fill is, the caps that clip or skip it, its slippage-bounded limit price, the follower's
position from one follow (``Position``, average cost), the portfolio stop-loss and the
profit share.

Opening (the leader BUYs), sized in the follow's quote currency at the leader's price::

    FIXED_AMOUNT          fixed_amount / price
    FIXED_RATIO           ratio x leader quantity
    EQUITY_PROPORTIONAL   (leader notional / leader equity) x allocation / price

then clipped, in this order, by the maximum order notional, the room left under the
maximum position per asset (quote value) and the allocation not yet used, and rounded
down to the market's lot. A copy below a lot or the market's minimum notional is
skipped; the reason names the cap that made it so (``SkipReason``).

Closing (the leader SELLs): the follower sells the same fraction of what it holds from
that follow as the leader sold of its position (1 when the leader sold all of it), so
only what was opened after following is ever mirrored.

The copy is a LIMIT IOC order at the leader's price moved by the follow's slippage
tolerance against the follower (BUY: up, rounded down to the tick; SELL: down, rounded up
to the tick): it trades at once at a price no worse than that, or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import StrEnum

from app.exchanges.domain.orders import derived_client_order_id
from app.trading.domain.orders import OrderRequest, OrderType, Side, TimeInForce
from app.trading.domain.positions import Position

ZERO = Decimal(0)
ONE = Decimal(1)
HUNDRED = Decimal(100)


class CopyMode(StrEnum):
    FIXED_AMOUNT = "FIXED_AMOUNT"
    FIXED_RATIO = "FIXED_RATIO"
    EQUITY_PROPORTIONAL = "EQUITY_PROPORTIONAL"


class SkipReason(StrEnum):
    """Why a copy was not placed. Trading refusals keep their own error code
    (``INSUFFICIENT_FUNDS``, ``ORDER_TOO_LARGE``, ``MARKET_HALTED``, ...)."""

    SYMBOL_NOT_ALLOWED = "SYMBOL_NOT_ALLOWED"  # not in the follow's allow list
    QUOTE_MISMATCH = "QUOTE_MISMATCH"  # the market's quote is not the follow's
    BELOW_MINIMUM = "BELOW_MINIMUM"  # below one lot or the market's minimum notional
    ALLOCATION_EXHAUSTED = "ALLOCATION_EXHAUSTED"  # the allocation left is too small
    MAX_POSITION_REACHED = "MAX_POSITION_REACHED"  # no room under the position cap
    NOTHING_TO_CLOSE = "NOTHING_TO_CLOSE"  # the leader sold; the follower holds none
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    # copies bound for the follower's exchange account (``fit_to_market`` and the sender)
    EXCHANGE_MARKET_NOT_FOUND = "EXCHANGE_MARKET_NOT_FOUND"  # no market of that base/quote
    EXCHANGE_ACCOUNT_DISCONNECTED = "EXCHANGE_ACCOUNT_DISCONNECTED"
    EXCHANGE_ACCOUNT_SUSPENDED = "EXCHANGE_ACCOUNT_SUSPENDED"
    EXCHANGE_UNAVAILABLE = "EXCHANGE_UNAVAILABLE"  # not reached while the copy was fresh


@dataclass(frozen=True, slots=True)
class Terms:
    """What a follow says about sizing (amounts in the follow's quote currency)."""

    mode: CopyMode
    allocation: Decimal
    fixed_amount: Decimal | None = None
    ratio: Decimal | None = None
    max_order_notional: Decimal | None = None
    max_position_per_asset: Decimal | None = None
    allowed_symbols: Sequence[str] | None = None
    slippage_tolerance: Decimal = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Lots:
    """The market rules sizing needs."""

    tick_size: Decimal
    lot_size: Decimal
    min_notional: Decimal


@dataclass(frozen=True, slots=True)
class LeaderFill:
    symbol: str
    quote: str
    price: Decimal
    quantity: Decimal
    notional: Decimal  # in quote


@dataclass(frozen=True, slots=True)
class Exposure:
    """The follower's state for one follow when a copy is sized (quote amounts)."""

    allocation_used: Decimal = ZERO  # cost of what it holds + copies still in flight
    position_value: Decimal = ZERO  # of this asset, at the leader's price, in flight too


@dataclass(frozen=True, slots=True)
class Planned:
    quantity: Decimal
    price: Decimal  # the LIMIT IOC price


@dataclass(frozen=True, slots=True)
class Skipped:
    reason: str


Plan = Planned | Skipped


# --- rounding -----------------------------------------------------------------------------


def round_down(value: Decimal, step: Decimal) -> Decimal:
    """The largest multiple of ``step`` not above ``value`` (0 for negatives)."""
    if value <= 0:
        return ZERO
    return (value / step).to_integral_value(ROUND_FLOOR) * step


def round_up(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(ROUND_CEILING) * step


def limit_price(side: str, leader_price: Decimal, tolerance: Decimal, tick: Decimal) -> Decimal:
    """The worst price the copy accepts: never worse than the tolerance allows."""
    if side == "BUY":
        return max(tick, round_down(leader_price * (ONE + tolerance), tick))
    return max(tick, round_up(leader_price * (ONE - tolerance), tick))


# --- sizing -------------------------------------------------------------------------------


def raw_open_quantity(terms: Terms, fill: LeaderFill, *, leader_equity: Decimal | None) -> Decimal:
    """The copy's quantity before caps and rounding."""
    if terms.mode is CopyMode.FIXED_AMOUNT:
        return (terms.fixed_amount or ZERO) / fill.price
    if terms.mode is CopyMode.FIXED_RATIO:
        return (terms.ratio or ZERO) * fill.quantity
    if not leader_equity or leader_equity <= 0:
        return ZERO
    share = min(ONE, fill.notional / leader_equity)
    return share * terms.allocation / fill.price


def symbol_allowed(terms: Terms, symbol: str) -> bool:
    return not terms.allowed_symbols or symbol.upper() in {s.upper() for s in terms.allowed_symbols}


def plan_open(
    terms: Terms,
    fill: LeaderFill,
    market: Lots,
    *,
    quote: str,
    exposure: Exposure,
    leader_equity: Decimal | None = None,
) -> Plan:
    """The follower's BUY for the leader's BUY ``fill``, or why there is none."""
    if fill.quote != quote:
        return Skipped(SkipReason.QUOTE_MISMATCH)
    if not symbol_allowed(terms, fill.symbol):
        return Skipped(SkipReason.SYMBOL_NOT_ALLOWED)
    price = limit_price("BUY", fill.price, terms.slippage_tolerance, market.tick_size)
    notional = raw_open_quantity(terms, fill, leader_equity=leader_equity) * fill.price
    binding = SkipReason.BELOW_MINIMUM
    caps: list[tuple[Decimal, SkipReason]] = []
    if terms.max_order_notional is not None:
        caps.append((terms.max_order_notional, SkipReason.BELOW_MINIMUM))
    if terms.max_position_per_asset is not None:
        room = terms.max_position_per_asset - exposure.position_value
        caps.append((room, SkipReason.MAX_POSITION_REACHED))
    caps.append((terms.allocation - exposure.allocation_used, SkipReason.ALLOCATION_EXHAUSTED))
    for cap, reason in caps:
        if notional > cap:
            notional, binding = max(cap, ZERO), reason
    quantity = round_down(notional / fill.price, market.lot_size)
    if quantity <= 0 or quantity * price < market.min_notional:
        return Skipped(binding)
    return Planned(quantity, price)


def close_fraction(sold: Decimal, position_before: Decimal) -> Decimal:
    """The share of its position the leader sold (1 when it sold all it had, or more)."""
    if position_before <= 0 or sold >= position_before:
        return ONE
    return sold / position_before


def plan_close(
    terms: Terms,
    fill: LeaderFill,
    market: Lots,
    *,
    held: Decimal,
    fraction: Decimal,
) -> Plan:
    """The follower's SELL for the leader's SELL ``fill``: ``fraction`` of ``held`` (what
    it holds from this follow, copies in flight counted). Not subject to the allow list
    or the caps: a close only ever reduces what the follow opened."""
    if held <= 0:
        return Skipped(SkipReason.NOTHING_TO_CLOSE)
    price = limit_price("SELL", fill.price, terms.slippage_tolerance, market.tick_size)
    quantity = round_down(held if fraction >= ONE else held * fraction, market.lot_size)
    if quantity <= 0 or quantity * price < market.min_notional:
        return Skipped(SkipReason.BELOW_MINIMUM)
    return Planned(quantity, price)


def plan_copy(
    terms: Terms,
    fill: LeaderFill,
    market: Lots,
    *,
    buy: bool,
    quote: str,
    used: Decimal,
    held: Decimal,
    leader_equity: Decimal | None,
    position_before: Decimal | None,
) -> Plan:
    """The follower's copy of the leader's ``fill``, from what the follow has: ``used``
    (the cost of what it holds + buys in flight at their limit, quote) and ``held``
    (its position in the base, buys in flight counted, sells in flight taken out). The one
    sizing the live copier and the copy what-if backtest share; each keeps its own book
    of copies in flight."""
    if buy:
        exposure = Exposure(allocation_used=used, position_value=max(held, ZERO) * fill.price)
        return plan_open(
            terms, fill, market, quote=quote, exposure=exposure, leader_equity=leader_equity
        )
    fraction = close_fraction(fill.quantity, position_before or ZERO)
    return plan_close(terms, fill, market, held=held, fraction=fraction)


def ioc_request(side: Side, quantity: Decimal, price: Decimal) -> OrderRequest:
    """A copy's (or a follow's close's) order: a LIMIT IOC, the limit being the slippage
    bound, so it trades at once at a price no worse than that or not at all."""
    return OrderRequest(
        side=side,
        type=OrderType.LIMIT,
        quantity=quantity,
        price=price,
        time_in_force=TimeInForce.IOC,
    )


# --- copies on an exchange account -------------------------------------------------------
# A copy bound for the follower's exchange account is planned with ``UNROUNDED`` lots
# (the platform market's rules are not the exchange's) and fitted to the exchange's
# market when it is sent.

UNROUNDED = Lots(tick_size=Decimal("1e-18"), lot_size=Decimal("1e-18"), min_notional=ZERO)


@dataclass(frozen=True, slots=True)
class ExchangeLots:
    """An exchange market's rules a copy is fitted to."""

    tick_size: Decimal
    lot_size: Decimal
    min_amount: Decimal | None = None
    min_notional: Decimal | None = None


def fit_to_market(side: str, quantity: Decimal, price: Decimal, market: ExchangeLots) -> Plan:
    """The copy as the exchange takes it: the quantity rounded down to the lot, the limit
    moved to the tick towards the follower (a BUY's down, a SELL's up: never worse than
    the slippage bound), or ``BELOW_MINIMUM`` under the minimum amount or notional."""
    fitted = round_down(quantity, market.lot_size)
    if side == "BUY":
        limit = max(market.tick_size, round_down(price, market.tick_size))
    else:
        limit = round_up(price, market.tick_size)
    if fitted <= 0 or (market.min_amount is not None and fitted < market.min_amount):
        return Skipped(SkipReason.BELOW_MINIMUM)
    if market.min_notional is not None and fitted * limit < market.min_notional:
        return Skipped(SkipReason.BELOW_MINIMUM)
    return Planned(fitted, limit)


def account_refusal(status: str | None) -> SkipReason | None:
    """Why nothing is sent to an exchange account in ``status`` (None: ACTIVE)."""
    if status == "ACTIVE":
        return None
    if status == "DISCONNECTED" or status is None:
        return SkipReason.EXCHANGE_ACCOUNT_DISCONNECTED
    return SkipReason.EXCHANGE_ACCOUNT_SUSPENDED


def capped_allocation(allocation: Decimal, equity: Decimal | None) -> Decimal:
    """A follow on an exchange account spends at most what the account holds there (its
    mirrored equity in the follow's quote; unknown: nothing)."""
    return min(allocation, max(equity or ZERO, ZERO))


def exchange_copy_client_order_id(follow_id: int, leader_fill_id: int) -> str:
    """The client order id of a copy sent to an exchange: derived from the copy's key
    (follow, leader fill), 18 lowercase alphanumerics like every client order id of ours
    at an exchange (Kraken takes 18, OKX only [a-z0-9]), so a copy sent again is the
    same order and the exchange, or our unique row, refuses the second."""
    return derived_client_order_id("cp", f"copy-{follow_id}-{leader_fill_id}")


# --- identities ---------------------------------------------------------------------------


def copy_client_order_id(follow_id: int, leader_fill_id: int) -> str:
    """The follower order's clientOrderId: one per (follow, leader fill), so a retried or
    restarted worker finds the order it placed instead of placing another."""
    return f"{copy_client_order_prefix(follow_id)}{leader_fill_id}"


def copy_client_order_prefix(follow_id: int) -> str:
    """What every copy order of ``follow_id`` has its clientOrderId begin with."""
    return f"copy-{follow_id}-"


def close_client_order_id(follow_id: int, currency: str, version: int) -> str:
    """A close of one follow position, named by the position's version (bumped by every
    fill applied to it): closing again before the first close's fills are applied finds
    the same order."""
    return f"close-{follow_id}-{currency}-{version}"


def exchange_close_client_order_id(follow_id: int, currency: str, version: int) -> str:
    """A close sent to the follower's exchange account: ``close_client_order_id`` in the
    exchanges' form (18 lowercase alphanumerics), the same for the same position version."""
    return derived_client_order_id("cl", close_client_order_id(follow_id, currency, version))


def parse_client_order_id(value: str) -> tuple[str, int] | None:
    """("copy" | "close", follow id) for the ids above, else None."""
    kind, _, rest = value.partition("-")
    if kind not in ("copy", "close"):
        return None
    head = rest.split("-", 1)[0]
    return (kind, int(head)) if head.isdigit() else None


# --- the follower's position from one follow -----------------------------------------------
# ``Position`` (app.trading.domain.positions, average cost), its sales read by ``sold``:
# what is sold beyond the follow's position carries no cost.


def follow_pnl(positions: Iterable[tuple[Position, Decimal | None]]) -> Decimal:
    """Realized plus unrealized profit of a follow: (position, its last price)."""
    total = ZERO
    for position, price in positions:
        total += position.realized_pnl
        if price is not None:
            total += position.unrealized(price)
    return total


@dataclass(frozen=True, slots=True)
class PositionChange:
    """What one fill does to a follow's position in its base."""

    quantity: Decimal  # bought or sold
    quote: Decimal  # paid (a buy, fee included) or received (a sell, fee deducted)


def exchange_fill_change(
    side: str, quantity: Decimal, price: Decimal, fee: Decimal, fee_currency: str | None,
    *, base: str, quote: str,
) -> PositionChange:  # fmt: skip
    """A fill at an exchange as the position sees it: a fee taken in the base is less
    bought (or more sold), a fee in the quote is more paid (or less received), a fee in
    another currency (an exchange's own token) is not the position's."""
    value = quantity * price
    buy = side == Side.BUY.value
    if fee_currency == base:
        return PositionChange(quantity - fee if buy else quantity + fee, value)
    in_quote = fee if fee_currency == quote else ZERO
    return PositionChange(quantity, value + in_quote if buy else value - in_quote)


def stop_loss_hit(pnl: Decimal, allocation: Decimal, percent: Decimal | None) -> bool:
    """The follow's loss has reached ``percent`` of its allocation."""
    if percent is None or percent <= 0:
        return False
    return -pnl >= allocation * percent / HUNDRED


# --- profit share -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Share:
    due: Decimal  # the leader's share of the profit above the high-water mark
    paid: Decimal  # what the follower's available balance covers
    high_water_mark: Decimal  # after: raised only by the profit that was paid for


def profit_share(
    *,
    realized: Decimal,
    high_water_mark: Decimal,
    percent: Decimal,
    available: Decimal,
    unit: Decimal,
) -> Share:
    """The leader's ``percent`` of ``realized - high_water_mark``, rounded down to the
    currency's ``unit``. When the follower's ``available`` balance is short, what is
    available is paid and the mark rises only by the profit that payment covers, so the
    rest is charged again at the next settlement (nothing is forgiven, nothing charged
    twice)."""
    profit = realized - high_water_mark
    if profit <= 0 or percent <= 0:
        return Share(ZERO, ZERO, high_water_mark)
    due = round_down(profit * percent / HUNDRED, unit)
    paid = min(due, round_down(available, unit))
    if paid == due:
        return Share(due, paid, realized)
    covered = paid * HUNDRED / percent
    return Share(due, paid, high_water_mark + covered)
