"""Builders for the bots' pure tests: events at hour offsets from T0, a fold of steps,
and a run of a bot against the simulated venue (the venue's events fed back as the
bot's, its refusals too), all without a database. And ``insert_hooked_bot``: a bots row
with its owner, sub-account and webhook credentials, for the webhook's tests."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import insert

from app.bots.domain.alerts import Alert, AlertAction
from app.bots.domain.codec import to_json
from app.bots.domain.dca import DcaState
from app.bots.domain.dca_settings import DcaSettings, StartCondition, validate_dca
from app.bots.domain.runtime import (
    Bot,
    CancelOrder,
    Command,
    Decision,
    Event,
    Fill,
    OrderEnd,
    PlaceOrder,
    PriceTick,
    Signal,
    from_venue,
)
from app.bots.domain.signal_bot import SignalSettings, SignalState
from app.bots.webhook import new_webhook_credentials
from app.runtime import Runtime
from app.trading.domain.orders import OrderStatus, Side
from app.venues.domain.paths import Candle
from app.venues.domain.simulated import SimulatedVenue, SimulationSettings
from db.models import Bot as BotRow
from db.models import User
from tests.support.simulation import SPEC, T0

D = Decimal


def dca_settings(**kw: Any) -> DcaSettings:
    """Validated DCA settings: 100 USDT base and safety orders, 3 safety orders (2 at
    once) 2 % apart, step scale 2, volume scale 1.5, the rest by default or ``kw``."""
    base = DcaSettings(
        base_order=D(100),
        safety_order=D(100),
        max_safety_orders=3,
        max_active_safety_orders=2,
        price_deviation=D("0.02"),
        step_scale=D(2),
        volume_scale=D("1.5"),
    )
    return validate_dca(replace(base, **kw), SPEC)


def at(hours: float = 0) -> datetime:
    return T0 + timedelta(hours=hours)


def tick(price: str | int, hours: float = 0, symbol: str = SPEC.symbol) -> PriceTick:
    return PriceTick(at(hours), symbol, D(price))


def fill(
    cid: str,
    side: Side,
    price: str,
    quantity: str,
    fee: str,
    *,
    remaining: str = "0",
    hours: float = 0,
) -> Fill:
    return Fill(at(hours), cid, side, D(price), D(quantity), D(fee), D(remaining))


def ended(cid: str, hours: float = 0, status: OrderStatus = OrderStatus.CANCELED) -> OrderEnd:
    return OrderEnd(at(hours), cid, status, "CANCELED" if status is OrderStatus.CANCELED else "X")


def alert(alert_id: str = "a1", action: AlertAction = AlertAction.BUY, **kw: Any) -> Alert:
    return Alert(alert_id, action, **kw)


def signal(hours: float = 0, **kw: Any) -> Signal:
    return Signal(at(hours), alert(**kw))


@dataclass
class Run:
    """Steps folded: the last state, every command and decision in order."""

    state: Any
    commands: list[Command] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)

    @property
    def placed(self) -> list[PlaceOrder]:
        return [c for c in self.commands if isinstance(c, PlaceOrder)]

    @property
    def canceled(self) -> list[str]:
        return [c.client_order_id for c in self.commands if isinstance(c, CancelOrder)]

    def reasons(self, action: str) -> list[str]:
        return [d.reason for d in self.decisions if d.action == action]


def fold(bot: Bot[Any], events: Iterable[Event], state: Any = None) -> Run:
    run = Run(bot.start(T0) if state is None else state)
    for event in events:
        run.state, commands, decisions = bot.step(run.state, event)
        run.commands.extend(commands)
        run.decisions.extend(decisions)
    return run


def then(bot: Bot[Any], run: Run, *events: Event) -> Run:
    """``run`` with more events: commands and decisions of these only."""
    return fold(bot, events, run.state)


@dataclass
class Drive:
    """A bot driven on the simulated venue: every step's state, the events in the order
    given, the commands in the order sent, and (state, venue balances) at each candle's
    end, when the bot has seen everything the venue did."""

    venue: SimulatedVenue
    states: list[Any] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    checkpoints: list[tuple[Any, dict[str, Decimal]]] = field(default_factory=list)
    # each refused submission, its code and the state that sent it
    refused: list[tuple[PlaceOrder, str, Any]] = field(default_factory=list)


def drive(
    bot: Bot[Any],
    candles: Sequence[Candle],
    *,
    balances: dict[str, Decimal],
    settings: SimulationSettings | None = None,
    extra: dict[int, list[Event]] | None = None,
    state: Any = None,
) -> Drive:
    """The bot on the simulated venue, candle by candle: the venue plays the candle, the
    bot gets the venue's new events, then the close, then ``extra`` events of that
    candle; its commands go to the venue at once and what they cause there (refusals,
    cancels, fills at latency 0) comes to the bot in the venue's order, before anything
    else, as a live venue's event stream would."""
    venue = SimulatedVenue(
        SPEC,
        balances=balances,
        settings=settings or SimulationSettings(volume_share=None, latency=0),
        start=candles[0].open_time,
    )
    out = Drive(venue)
    state = bot.start(candles[0].open_time) if state is None else state
    seen = 0
    for index, candle in enumerate(candles):
        venue.advance(candle)
        new = venue.events(after=seen)
        seen += len(new)
        # the venue's events in its order, each before anything else; then the close,
        # then the extras; what the commands cause on the venue joins the venue's queue
        from_venue_queue = deque(e for e in map(from_venue, new) if e is not None)
        others: deque[Event] = deque([PriceTick(candle.close_time, SPEC.symbol, candle.close)])
        others.extend((extra or {}).get(index, []))
        while from_venue_queue or others:
            event = from_venue_queue.popleft() if from_venue_queue else others.popleft()
            state, commands, decisions = bot.step(state, event)
            out.events.append(event)
            out.states.append(state)
            out.commands.extend(commands)
            out.decisions.extend(decisions)
            for command in commands:
                if isinstance(command, CancelOrder):
                    venue.cancel(client_order_id=command.client_order_id)
                    continue
                ack = venue.submit(
                    symbol=command.symbol,
                    client_order_id=command.client_order_id,
                    request=command.request,
                )
                if ack.code is not None:
                    out.refused.append((command, ack.code, state))
            caused = venue.events(after=seen)
            seen += len(caused)
            from_venue_queue.extend(e for e in map(from_venue, caused) if e is not None)
        totals = {currency: b.total for currency, b in venue.balances().items()}
        out.checkpoints.append((state, totals))
    return out


def candles_from(closes: Sequence[int | str], volume: str = "1000") -> list[Candle]:
    """Candles that open at the previous close and range over the move only."""
    out, previous = [], D(closes[0])
    for i, close in enumerate(closes):
        c = D(close)
        out.append(Candle(at(i), previous, max(previous, c), min(previous, c), c, D(volume)))
        previous = c
    return out


# rows for the webhook's tests


@dataclass(frozen=True)
class HookedBot:
    """A bots row with its webhook: the URL's token and the secret (shown once)."""

    id: int
    user_id: int
    account_id: int
    token: str
    secret: str

    @property
    def path(self) -> str:
        return f"/hooks/bots/{self.token}"


_rows = itertools.count(1)


def signal_settings(**kw: Any) -> SignalSettings:
    """100 USDT per BUY, a budget of 1000, a minute's lag, or ``kw``."""
    return replace(SignalSettings(amount=D(100), budget=D(1000)), **kw)


async def insert_hooked_bot(
    rt: Runtime,
    *,
    kind: str = "SIGNAL",
    settings: Any = None,
    symbol: str = "BTC/USDT",
    status: str = "RUNNING",
    paused: bool = False,
    ip_allowlist: Sequence[str] = (),
) -> HookedBot:
    """A RUNNING signal bot (or ``kind`` DCA started by signals) on ``symbol``, stored as
    the service stores one: settings and state as the codec writes them, an owner and a
    sub-account (``owner_id``), fresh webhook credentials (only the secret's hash kept)."""
    if settings is None:
        settings = (
            signal_settings() if kind == "SIGNAL" else dca_settings(start=StartCondition.SIGNAL)
        )
    state = SignalState() if kind == "SIGNAL" else DcaState()
    token, secret, secret_hash = new_webhook_credentials()
    n = next(_rows)
    quote = symbol.split("/")[1]
    async with rt.sessions() as session, session.begin():
        owner = await session.scalar(
            insert(User)
            .values(email=f"bot-owner-{n}@example.com", display_name="owner", password_hash="-")
            .returning(User.id)
        )
        account = await session.scalar(
            insert(User)
            .values(
                email=f"bot-{n}@bots.example.com",
                display_name=f"bot {n}",
                password_hash="-",
                owner_id=owner,
            )
            .returning(User.id)
        )
        bot_id = await session.scalar(
            insert(BotRow)
            .values(
                user_id=owner,
                account_id=account,
                kind=kind,
                name=f"{kind.lower()} bot {n}",
                symbols=[symbol],
                quote=quote,
                budget=D(1000),
                allocation={quote: "1000"},
                settings=to_json(settings),
                state=to_json(state),
                status=status,
                paused=paused,
                webhook_token=token,
                webhook_secret_hash=secret_hash,
                ip_allowlist=list(ip_allowlist),
            )
            .returning(BotRow.id)
        )
    assert owner and account and bot_id
    return HookedBot(bot_id, owner, account, token, secret)
