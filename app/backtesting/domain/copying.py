"""The copy-trading what-if (pure): "what if I had copied leader X with these follow
settings over this period", as a strategy on the simulated venue.

In: the leader's fills on one market over the period (``LeaderTrade``: time, side, price,
quantity, notional, and the context the sizing needs: the leader's position in the base
before the fill, for a SELL, and the leader's equity in the quote currency, for
EQUITY_PROPORTIONAL), the follow settings (``FollowParameters``, exactly what a real follow
takes, validated by ``app.social.domain.social.validate_follow``) and, through the run,
the follower's starting balance.

At each candle's close ``CopyLeader`` submits the copies of the leader's fills made before
that close and not copied yet, in the leader's order, sized by the live copier's own rules
(``app.social.domain.copying``: ``plan_open`` with the follow's caps and the allocation
used so far, ``plan_close`` with the share of its position the leader sold). Like the live
copier's, each copy is a LIMIT IOC at the leader's price moved by the slippage tolerance
against the follower; its client order id is ``copy:<leader fill id>``. The simulated
venue's fill model applies to it (latency, volume share, fees, random slippage).

What the follow holds (``Position``, average cost, fees included) comes from the copies'
fills; copies not finished yet count as in flight (a BUY's rest at its limit price in the
allocation used, its quantity in the position; a SELL's quantity out of it), as the live
copier counts them. The stop-loss (``stop_loss_percent`` of the allocation, realized plus
unrealized at the candle's close) is checked at each close before that candle's copies:
once hit nothing more is copied (the live follow is PAUSED) and, with
``close_positions_on_stop_loss``, what the follow holds is sold (a LIMIT IOC at the close
less the tolerance).

What the what-if cannot know:
    - the follower's own liquidity impact on the real book: a copy trades against the
      candle's liquidity (``volume_share`` of its volume) at the candle's prices, not
      against the orders that were resting when the leader traded;
    - the live copier's queueing delay (the worker's batch, the engine's queue):
      approximated by ``latency`` (0: at the close of the candle of the leader's fill);
    - a copy at the candle's close trades at the close price, which may differ from the
      price the live copy got right after the leader's fill (the IOC limit bounds both);
    - the leader's equity when it traded is read from the equity snapshots (see the
      service), not the live copier's equity at the moment of copying;
    - the follower's other follows and trades: the what-if account holds this follow only.

A copy the rules skip places nothing; ``skipped`` keeps (leader fill id, reason) of each.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from app.backtesting.domain.strategies import Intent, Submit, Tick
from app.social.domain import copying
from app.social.domain.copying import CopyMode, LeaderFill, Lots, Planned, Terms
from app.social.domain.social import FOLLOW_QUOTE, FollowParameters
from app.trading.domain.orders import MarketSpec, Side
from app.trading.domain.positions import Position
from app.venues.domain.venue import OrderFilled

ZERO = Decimal(0)
STOP_LOSS = "STOP_LOSS"


@dataclass(frozen=True, slots=True)
class LeaderTrade:
    """One fill of the leader on the market, with what sizing its copy needs."""

    id: int  # the leader's fill id: the copy's client order id is copy:<id>
    at: datetime
    side: Side
    price: Decimal
    quantity: Decimal
    notional: Decimal  # price x quantity, in the quote currency
    position_before: Decimal = ZERO  # the leader's position in the base before it (SELL)
    equity: Decimal | None = None  # the leader's equity in the quote (EQUITY_PROPORTIONAL)


def terms_of(params: FollowParameters) -> Terms:
    """A follow's sizing terms, as the live copier reads them from the follow's row."""
    return Terms(
        mode=CopyMode(params.mode.value),
        allocation=params.allocation,
        fixed_amount=params.fixed_amount,
        ratio=params.ratio,
        max_order_notional=params.max_order_notional,
        max_position_per_asset=params.max_position_per_asset,
        allowed_symbols=params.allowed_symbols,
        slippage_tolerance=params.slippage_tolerance,
    )


def copy_order_id(leader_fill_id: int) -> str:
    return f"copy:{leader_fill_id}"


@dataclass(slots=True)
class _InFlight:
    side: Side
    quantity: Decimal  # not filled yet
    price: Decimal  # the limit


class CopyLeader:
    def __init__(
        self,
        market: MarketSpec,
        *,
        follow: FollowParameters,
        history: Iterable[LeaderTrade],
        quote: str = FOLLOW_QUOTE,
        name: str = "copy",
    ) -> None:
        self.market, self.name, self.quote = market, name, quote
        self.follow, self.terms = follow, terms_of(follow)
        self.lots = Lots(market.tick_size, market.lot_size, market.min_notional)
        self.history = tuple(sorted(history, key=lambda t: (t.at, t.id)))
        self.position = Position()  # what the follow holds, in the quote, fees included
        self.skipped: list[tuple[int, str]] = []
        self.stopped = False
        self._next = 0  # the first leader trade not copied yet
        self._flight: dict[str, _InFlight] = {}

    # -- what the follow holds ----------------------------------------------------------

    def _account(self, tick: Tick) -> None:
        for fill in tick.fills:
            flight = self._flight.get(fill.client_order_id)
            if flight is None:
                continue
            self._apply(fill)
            flight.quantity -= fill.quantity
            if fill.remaining == 0 or flight.quantity <= 0:
                del self._flight[fill.client_order_id]
        for ended in tick.ended:
            self._flight.pop(ended.client_order_id, None)

    def _apply(self, fill: OrderFilled) -> None:
        if fill.side is Side.BUY:
            self.position = self.position.bought(fill.quantity, fill.value + fill.fee)
        else:
            self.position = self.position.sold(fill.quantity, fill.value - fill.fee)

    def _in_flight(self, side: Side) -> tuple[Decimal, Decimal]:
        """(quantity, value at the limit) of the copies of ``side`` not finished."""
        quantity = value = ZERO
        for flight in self._flight.values():
            if flight.side is side:
                quantity += flight.quantity
                value += flight.quantity * flight.price
        return quantity, value

    def _held(self) -> Decimal:
        """The position with the copies in flight: bought counted, sold taken out."""
        return self.position.quantity + self._in_flight(Side.BUY)[0] - self._in_flight(Side.SELL)[0]

    # -- deciding -----------------------------------------------------------------------

    def decide(self, tick: Tick) -> list[Intent]:
        self._account(tick)
        intents: list[Intent] = []
        if not self.stopped and self._stop_loss_hit(tick):
            self.stopped = True
            if self.follow.close_positions_on_stop_loss:
                intents.extend(self._close_all(tick))
        close_time = tick.candle.close_time
        while self._next < len(self.history) and self.history[self._next].at < close_time:
            trade = self.history[self._next]
            self._next += 1
            if self.stopped:
                self.skipped.append((trade.id, STOP_LOSS))
                continue
            intent = self._copy(trade)
            if intent is not None:
                intents.append(intent)
        return intents

    def _stop_loss_hit(self, tick: Tick) -> bool:
        pnl = copying.follow_pnl([(self.position, tick.candle.close)])
        return copying.stop_loss_hit(pnl, self.follow.allocation, self.follow.stop_loss_percent)

    def _close_all(self, tick: Tick) -> list[Intent]:
        held = min(self._held(), tick.position)
        price = copying.limit_price(
            "SELL", tick.candle.close, self.terms.slippage_tolerance, self.lots.tick_size
        )
        quantity = copying.round_down(held, self.lots.lot_size)
        if quantity <= 0 or quantity * price < self.lots.min_notional:
            return []
        client_order_id = f"close:{tick.index}"
        self._flight[client_order_id] = _InFlight(Side.SELL, quantity, price)
        return [
            Submit(
                client_order_id,
                copying.ioc_request(Side.SELL, quantity.normalize(), price.normalize()),
                "stop-loss: close",
            )
        ]

    def _copy(self, trade: LeaderTrade) -> Submit | None:
        fill = LeaderFill(
            symbol=self.market.symbol,
            quote=self.market.quote,
            price=trade.price,
            quantity=trade.quantity,
            notional=trade.notional,
        )
        plan = copying.plan_copy(
            self.terms,
            fill,
            self.lots,
            buy=trade.side is Side.BUY,
            quote=self.quote,
            used=self.position.cost + self._in_flight(Side.BUY)[1],
            held=self._held(),
            leader_equity=trade.equity,
            position_before=trade.position_before,
        )
        if not isinstance(plan, Planned):
            self.skipped.append((trade.id, plan.reason))
            return None
        client_order_id = copy_order_id(trade.id)
        self._flight[client_order_id] = _InFlight(trade.side, plan.quantity, plan.price)
        reason = (
            f"leader {trade.side.value} {trade.quantity.normalize():f} at"
            f" {trade.price.normalize():f} ({self.terms.mode.value})"
        )
        return Submit(
            client_order_id,
            copying.ioc_request(trade.side, plan.quantity.normalize(), plan.price.normalize()),
            reason,
        )
