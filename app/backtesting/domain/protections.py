"""Risk limits inside a backtest: the risk engine's own rules (``app.risk.domain``) on
the simulated account and its clock, as Freqtrade's protections are backtestable.

The simulated account is one trader on one market, so its scopes are ORDER, USER, MARKET
and PLATFORM of that account (id ``ACCOUNT``), and the limits given bind it as they would
bind a live order of the same figures (FOLLOW and BOT limits have no orders here). Amounts
are in the market's quote currency, taken as USD.

Before each order (``admit``, the simulated venue's ``OrderGate``): ``check_order``, the
placement's own decision, on the account's figures at the simulated time: the orders
placed (funded) in the last minute and since 00:00 UTC, the cancels asked in the last minute,
exposure (the base held plus what open buys are acquiring, at the last close and their
prices), equity, the seconds since a candle last traded, the P&L figures. A refusal is
the venue's refusal of the order (code RISK_LIMIT_REACHED, RISK_HALTED, RISK_REDUCING)
and one ``RiskEvent`` (REFUSED). An admitted order that takes a limit to its warning ratio
is one ``RiskEvent`` (WARNED), once a simulated UTC day per limit, as live warns once a day.

At each candle's close (``at_close``, before the strategy decides): a cool-down that is
over ends (COOL_DOWN_OVER); the P&L (``Position`` at average cost, realised + unrealised at
the close) moves the marks (``Marks.observe``: one look per candle, as one consumer batch
live); ``to_act``, the ``risk-triggers`` consumer's own decision, moves the state through
the state table (``states.apply``) with the breach's reason, and its effect is done on the
venue: open orders canceled (CANCEL_ORDERS, REDUCE_TO_FLAT, COOL_DOWN), the position sold
with a protected market order (REDUCE_TO_FLAT, ``risk-flat-<n>``), a cool-down for
``cooldown_seconds`` of simulated time. Nobody resets a scope during a backtest: a
REDUCING or HALTED state without a cool-down lasts to the end.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

from app.risk.domain.checks import Decision, check_order, order_scopes
from app.risk.domain.limits import (
    FLATTEN_SLIPPAGE_BPS,
    Figures,
    Limit,
    LimitKind,
    ProposedOrder,
    to_act,
)
from app.risk.domain.pnl import Marks
from app.risk.domain.states import (
    RiskState,
    Scope,
    ScopeRef,
    ScopeStatus,
    StateEvent,
    apply,
    event_towards,
)
from app.trading.domain.orders import MarketSpec, OrderRequest, OrderType, Side, ValidOrder
from app.trading.domain.positions import Position
from app.venues.domain.paths import Candle
from app.venues.domain.simulated import SimulatedVenue
from app.venues.domain.venue import OrderFilled

ACCOUNT = 0  # the simulated account's id in its scopes (its market's, as the platform's)
REFUSED = "REFUSED"
WARNED = "WARNED"
_MINUTE = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class RiskEvent:
    """A refusal, a warning or a transition, at its simulated time."""

    at: datetime
    candle: int  # the index of the candle it happened at (its close)
    action: str  # REFUSED, WARNED, or the state event: REDUCE, HALT, COOL_DOWN_OVER
    state: RiskState  # the scope's state after it (a refusal: as it was)
    limit_kind: LimitKind | None  # the limit that bound or fired (None: a state refused)
    value: Decimal | None  # its figure
    client_order_id: str | None  # a refusal's order
    reason: str  # the refusal's message, the transition's reason


class Protections:
    """One backtest's limits, state and P&L marks (``OrderGate`` of its venue)."""

    def __init__(self, limits: Sequence[Limit], *, market: MarketSpec, start: datetime) -> None:
        self.market = market
        # every scope the account's orders belong to has its id (the platform's is 0 too)
        self.limits = tuple(replace(lim, ref=ScopeRef(lim.ref.scope, ACCOUNT)) for lim in limits)
        self.scopes = order_scopes(user_id=ACCOUNT, market_id=ACCOUNT)
        self.user = ScopeRef(Scope.USER, ACCOUNT)
        self.status = ScopeStatus(self.user)
        self.marks = Marks.start(now=start, pnl=Decimal(0), realised=Decimal(0))
        self.position = Position()
        self.events: list[RiskEvent] = []
        self._placed: deque[datetime] = deque()  # placed orders' times, the last day's
        self._cancels: deque[datetime] = deque()  # the last minute's
        self._fills_seen = 0
        self._traded_at: datetime | None = None  # the close of the last candle with volume
        self._flattened = 0
        self._warned: set[tuple[int, date]] = set()  # (limit id, UTC day) warned of

    # -- before each order ------------------------------------------------------------------

    def admit(self, venue: SimulatedVenue, client_order_id: str, valid: ValidOrder) -> str | None:
        now = venue.now
        order = self.proposed(valid)
        decision = self.decide(order, self.figures(venue), now)
        if decision.binding is None:
            self._warn(venue, client_order_id, decision)
            return None
        binding = decision.binding
        error = binding.error()
        self.events.append(
            RiskEvent(
                now,
                venue.candle_index,
                REFUSED,
                self.status.effective(now),
                None if binding.limit is None else binding.limit.kind,
                binding.value,
                client_order_id,
                error.message,
            )
        )
        return error.code

    def _warn(self, venue: SimulatedVenue, client_order_id: str, decision: Decision) -> None:
        """A limit the admitted order takes to its warning ratio, once a simulated UTC day
        per limit (as live: one notification a day per person and limit)."""
        now = venue.now
        for limit, value in decision.warnings:
            if (limit.id, now.date()) in self._warned:
                continue
            self._warned.add((limit.id, now.date()))
            share = (100 * value / limit.threshold).quantize(Decimal(1))
            reason = f"{limit.describe()} at {value.normalize():f} ({share} %)"
            self.events.append(RiskEvent(
                now, venue.candle_index, WARNED, self.status.effective(now), limit.kind,
                value, client_order_id, reason,
            ))  # fmt: skip

    def placed(self, venue: SimulatedVenue, orders: int) -> None:
        """Orders written (funded): the counts count them, as live counts the rows."""
        self._placed.extend([venue.now] * orders)

    def cancel_asked(self, venue: SimulatedVenue) -> None:
        self._cancels.append(venue.now)

    def proposed(self, valid: ValidOrder) -> ProposedOrder:
        """``valid`` as the limits see it (the live gate's ``proposed``, the quote as USD):
        a buy acquires the base; a sell the quote, cash."""
        spec = self.market
        notional = spec.quote_amount(spec.notional_units(valid.price, valid.quantity))
        return ProposedOrder(notional, spec.base if valid.side is Side.BUY else None)

    def decide(self, order: ProposedOrder, figures: Figures, now: datetime) -> Decision:
        """The placement's decision (``check_order``) for the account."""
        return check_order(
            order,
            scopes=self.scopes,
            states={self.user: self.status},
            limits=self.limits,
            figures=figures,
            now=now,
        )

    def figures(self, venue: SimulatedVenue) -> Figures:
        """What the limits watch, at the venue's time."""
        now = venue.now
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        while self._placed and self._placed[0] < day:
            self._placed.popleft()
        while self._cancels and self._cancels[0] < now - _MINUTE:
            self._cancels.popleft()
        spec, price = self.market, venue.last_price or Decimal(0)
        held = venue.balance(spec.base).total
        buying = sum(
            ((o.quantity - o.filled) * o.price for o in venue.open_orders()
             if o.side is Side.BUY),
            Decimal(0),
        )  # fmt: skip
        traded = self._traded_at
        age = None if traded is None else Decimal((now - traded) // timedelta(seconds=1))
        return self.marks.figures(
            Figures(
                orders_last_minute=sum(1 for t in self._placed if t >= now - _MINUTE),
                cancels_last_minute=len(self._cancels),
                orders_today=len(self._placed),
                exposure={spec.base: held * price + buying},
                equity=venue.balance(spec.quote).total + held * price,
                market_data_age=age,
            )
        )

    # -- at each close ----------------------------------------------------------------------

    def at_close(self, venue: SimulatedVenue, candle: Candle) -> bool:
        """After the venue played ``candle``: the P&L limits at its close. True when the
        venue was acted on (orders canceled or submitted)."""
        now = venue.now
        if candle.volume > 0:
            self._traded_at = now
        if self.status.cool_down_over(now):
            self._move(venue, StateEvent.COOL_DOWN_OVER, "cool-down over", None)
        price = venue.last_price or candle.close
        for event in venue.events(after=self._fills_seen):
            if isinstance(event, OrderFilled):
                self.position = _with_fill(self.position, event)
        self._fills_seen = venue.event_count
        realised = self.position.realized_pnl
        pnl = realised + self.position.unrealized(price)
        self.marks = self.marks.observe(now=now, pnl=pnl, realised=realised)
        breach, _warned = to_act(self.limits, self.marks.figures(), self.status.state)
        if breach is None:
            return False
        self._move(
            venue,
            event_towards(breach.effect.state),
            breach.reason,
            breach.limit,
            breach.value,
            breach.cooldown_until(now),
        )
        acted = False
        if breach.effect.cancel_orders:
            acted = self._cancel_all(venue) or acted
        if breach.effect.flatten:
            acted = self._flatten(venue) or acted
        return acted

    def _move(
        self,
        venue: SimulatedVenue,
        event: StateEvent,
        reason: str,
        limit: Limit | None,
        value: Decimal | None = None,
        cooldown_until: datetime | None = None,
    ) -> None:
        after = apply(self.status.state, event)
        self.status = ScopeStatus(
            self.user,
            after,
            since=venue.now,
            cooldown_until=cooldown_until if after is RiskState.HALTED else None,
            reason=reason,
            limit_id=None if limit is None else limit.id,
        )
        self.events.append(
            RiskEvent(
                venue.now,
                venue.candle_index,
                event.value,
                after,
                None if limit is None else limit.kind,
                value,
                None,
                reason,
            )
        )

    def _cancel_all(self, venue: SimulatedVenue) -> bool:
        live = venue.open_orders()
        for order in live:
            venue.cancel(client_order_id=order.client_order_id)
        return bool(live)

    def _flatten(self, venue: SimulatedVenue) -> bool:
        """Sell the base held with a protected market order (live: ``triggers.flatten``)."""
        spec = self.market
        available = venue.balance(spec.base).available
        lots = (available / spec.lot_size).to_integral_value(ROUND_FLOOR)
        if lots <= 0:
            return False
        self._flattened += 1
        venue.submit(
            symbol=spec.symbol,
            client_order_id=f"risk-flat-{self._flattened}",
            request=OrderRequest(
                side=Side.SELL,
                type=OrderType.MARKET,
                quantity=lots * spec.lot_size,
                max_slippage_bps=FLATTEN_SLIPPAGE_BPS,
            ),
        )
        return True


def _with_fill(position: Position, fill: OrderFilled) -> Position:
    """The position at average cost after ``fill`` (the portfolio's rule: fees in the cost
    of a buy, out of a sale's proceeds)."""
    if fill.side is Side.BUY:
        return position.bought(fill.quantity, fill.value + fill.fee)
    return position.sold_tracked(fill.quantity, fill.value - fill.fee)
