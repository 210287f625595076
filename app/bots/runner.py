"""Running bots: a wake steps a batch of bots in one transaction, then sends the
commands those steps stored. The same for every venue a bot trades on: a live bot as its
sub-account, a paper bot on its paper account, an exchange bot on its owner's connected
exchange account; what differs (reading its orders and fills, sending, what a stopped
bot gives back) is ``app.bots.venues``. An exchange bot's market is its exchange's (its
rules from the bot's row, its price from the exchange's ticker, read before the
transaction: ``exchange_prices``).

A wake of bots ``ids`` (``step_bots``, in the caller's transaction):

    lock          the bots' rows (FOR NO KEY UPDATE, in id order: a webhook's insert of
                  an alert, a KEY SHARE check, never waits for a step)
    what happened since each bot's last step, read from the record (PostgreSQL), in the
                  order the machines need (``runtime``'s contract):
                  fills of its orders beyond what its state has counted, oldest first,
                  each after a tick at its own price when the bot had not seen that price
                  (the market's price as of the fill; the bots of one venue in one
                  read); then the ends: orders that ended
                  without their last fill, and places the venue refused
                  (``bot_commands.ack_code``)
    then          its market's latest price when it moved since the bot last saw it, the
                  alerts its webhook queued, a timer tick when ``wake_at`` has come, and
                  a stop when asked
    step          each event through the bot's machine (pure)
    store         state, status, wake time; decisions; the commands, unsent; a ``bots``
                  event; a live bot that has STOPPED gives its sub-account's money back
                  to its owner (BOT_RELEASE); a paper bot just ends

and after the commit ``send_commands`` sends every unsent command of those bots, in
order, through the bot's venue: ``LiveVenue`` as its sub-account (the same placement,
checks, holds and typed refusals as the API), the paper orders of its paper account,
or ``ExchangeVenue`` on its connected account (within its budget).
A crash between the commit and the sends loses nothing: the commands are still unsent,
and sending them again places each order once (either venue takes a client order id
once). Acks that end an order (a refusal, a cancel) need one more step, so ``run_bots``
wakes those bots again.

The record is the truth: a fill is counted because the bot's state counts less of its
order than the fills table holds, never because an event said so. Events only say which
bots to wake (``app.bots.worker``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.bots.domain import codec
from app.bots.domain.alerts import Alert
from app.bots.domain.machines import machine, read_settings, read_state
from app.bots.domain.rebalance import Holding
from app.bots.domain.runtime import (
    Bot,
    BotKind,
    BotStatus,
    CancelOrder,
    Decision,
    Event,
    Fill,
    OrderEnd,
    PlaceOrder,
    PriceBand,
    PriceTick,
    Signal,
    StopBot,
    TimerTick,
)
from app.bots.venues import VENUES, BotVenue, venue_of
from app.core.errors import UserError
from app.events import outbox, topics
from app.exchanges import market_data
from app.exchanges.domain.catalogue import ExchangeId
from app.runtime import Runtime
from app.trading.domain.orders import (
    FINAL_STATUSES,
    MarketSpec,
    OrderRequest,
    OrderStatus,
    Side,
)
from app.trading.markets import MarketRow, list_markets
from app.venues.domain.venue import OrderAck
from db.raw import columns, driver
from db.session import in_transaction

log = logging.getLogger(__name__)
MAX_ROUNDS = 5  # steps of one wake for a bot whose acks end orders at once
_FINAL = [s.value for s in FINAL_STATUSES]

_LOCK = """
    SELECT id, user_id, account_id, paper_account_id, exchange_account_id, market_specs,
           (SELECT c.exchange FROM exchange_connections c
            WHERE c.id = bots.exchange_account_id) AS exchange,
           kind, symbols, settings, state,
           allocation, paused, steps, wake_at, last_price, close_on_stop
    FROM bots WHERE id = ANY($1::bigint[]) AND status <> 'STOPPED'
    ORDER BY id FOR NO KEY UPDATE
"""
_REFUSED = """
    UPDATE bot_commands SET ended = true
    WHERE bot_id = ANY($1::bigint[]) AND kind = 'PLACE' AND ack_code IS NOT NULL
      AND order_id IS NULL AND NOT ended
    RETURNING bot_id, client_order_id, ack_code, sent_at
"""
_ALERTS = """
    UPDATE bot_alerts SET processed_at = now()
    WHERE bot_id = ANY($1::bigint[]) AND processed_at IS NULL
    RETURNING bot_id, id, alert, received_at
"""
_SAVE = """
    UPDATE bots b SET state = w.state, status = w.status, steps = b.steps + 1,
                      wake_at = w.wake_at, last_price = w.last_price, watch_low = w.low,
                      watch_high = w.high, watch_all = w.every, updated_at = now(),
                      stopped_at = CASE WHEN w.status = 'STOPPED' THEN now() END
    FROM unnest($1::bigint[], $2::jsonb[], $3::text[], $4::timestamptz[], $5::numeric[],
                $6::numeric[], $7::numeric[], $8::boolean[])
         AS w(id, state, status, wake_at, last_price, low, high, every)
    WHERE b.id = w.id
"""
_DECISIONS = """
    INSERT INTO bot_decisions (bot_id, at, action, reason, client_order_id)
    SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::text[])
    RETURNING bot_id, id
"""
_COMMANDS = """
    INSERT INTO bot_commands (bot_id, step, kind, client_order_id, symbol, request, reason)
    SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[],
                         $6::jsonb[], $7::text[])
"""
_UNSENT = """
    SELECT c.id, c.bot_id, b.user_id, b.account_id, b.paper_account_id,
           b.exchange_account_id, b.budget, c.kind, c.client_order_id, c.symbol, c.request
    FROM bot_commands c JOIN bots b ON b.id = c.bot_id
    WHERE c.bot_id = ANY($1::bigint[]) AND c.sent_at IS NULL
    ORDER BY c.bot_id, c.id
"""
_SENT = """
    UPDATE bot_commands c SET sent_at = now(), order_id = w.order_id, ack_code = w.code
    FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS w(id, order_id, code)
    WHERE c.id = w.id AND c.sent_at IS NULL
"""


@dataclass
class Wake:
    """Why bots are woken beyond what the record shows: stops asked for."""

    stop: Mapping[int, bool] = field(default_factory=dict)  # bot id -> close its position


@dataclass
class Stepped:
    """What one wake did: the bots stepped (each one's unsent commands are sent after)."""

    bots: list[int] = field(default_factory=list)


async def step_bots(
    session: AsyncSession, ids: Sequence[int], *, now: datetime, wake: Wake | None = None,
    prices: Prices | None = None,
) -> Stepped:  # fmt: skip
    """Step the bots ``ids`` (those not STOPPED; a paused one only to stop it) in the
    session's transaction: see the module's docstring. ``prices``: the exchange bots'
    markets' last prices (``exchange_prices``, read before the transaction)."""
    wake = wake or Wake()
    connection = await driver(session)
    rows = await connection.fetch(_LOCK, sorted(set(ids)))
    rows = [r for r in rows if not r["paused"] or r["id"] in wake.stop]
    if not rows:
        return Stepped()
    markets = {m.symbol: m for m in await list_markets(session)}
    bots = [_load(row, markets) for row in rows]
    await _record_events(connection, bots, now)
    bot_ids = [b.id for b in bots]
    by_id = {b.id: b for b in bots}
    for refused in await connection.fetch(_REFUSED, bot_ids):
        by_id[refused["bot_id"]].events.append(OrderEnd(
            refused["sent_at"] or now, refused["client_order_id"], OrderStatus.REJECTED,
            refused["ack_code"],
        ))  # fmt: skip
    alerts: dict[int, list[Any]] = defaultdict(list)
    for alert in await connection.fetch(_ALERTS, bot_ids):
        alerts[alert["bot_id"]].append(alert)
    for bot in bots:
        bot.last_price = _catch_up(bot, _prices_of(bot, markets, prices or {}), now)
        for alert in sorted(alerts[bot.id], key=lambda a: a["id"]):
            bot.events.append(Signal(alert["received_at"], codec.from_json(Alert, alert["alert"])))
        if bot.row["wake_at"] is not None and bot.row["wake_at"] <= now:
            bot.events.append(TimerTick(now))
        if bot.id in wake.stop:
            bot.events.append(StopBot(now, close_position=wake.stop[bot.id]))
    return await _store(session, connection, bots, now)


@dataclass(eq=False)
class _Bot:
    row: Any
    machine: Bot[Any]
    state: Any
    events: list[Event] = field(default_factory=list)
    last_price: Decimal | None = None
    made: list[Decision] = field(default_factory=list)

    @property
    def id(self) -> int:
        return int(self.row["id"])


def _load(row: Any, markets: Mapping[str, MarketRow]) -> _Bot:
    kind = BotKind(row["kind"])
    if row["exchange_account_id"] is not None:  # its exchange's markets, as stated
        specs = codec.from_json(tuple[MarketSpec, ...], row["market_specs"])
    else:
        specs = tuple(markets[s].spec for s in row["symbols"])
    allocation = codec.from_json(tuple[Holding, ...], row["allocation"].get("holdings", []))
    bot = machine(kind, row["id"], read_settings(kind, row["settings"]), specs, allocation)
    return _Bot(row, bot, read_state(kind, row["state"]), last_price=row["last_price"])


async def _record_events(connection: Any, bots: list[_Bot], now: datetime) -> None:
    """Each bot's fills and order ends since its state, from its venue's record: the
    bots of a venue together (two statements per venue at most)."""
    for venue in VENUES:
        accounts = {b: a for b in bots if (a := venue.account(b.row)) is not None}
        if accounts:
            await _venue_events(venue, connection, accounts, now)


async def _venue_events(
    venue: BotVenue, connection: Any, accounts: Mapping[_Bot, int], now: datetime
) -> None:
    """``_record_events`` for the bots of one venue (``accounts``: each one's there)."""
    tracked = {
        (account, o.client_order_id): (b, o) for b, account in accounts.items()
        for o in b.state.orders
    }  # fmt: skip
    if not tracked:
        return
    orders = await venue.orders(connection, list(tracked))
    key = {o["id"]: (o["account"], o["client_order_id"]) for o in orders}
    moved = [o["id"] for o in orders if o["filled_quantity"] > tracked[key[o["id"]]][1].filled]
    found: list[tuple[int, _Bot, str, Fill]] = []
    if moved:
        quantity = {o["id"]: o["quantity"] for o in orders}
        seen: dict[int, Decimal] = defaultdict(Decimal)
        for f in await venue.fills(connection, moved):
            bot, known = tracked[key[f["order_id"]]]
            seen[f["order_id"]] += f["quantity"]
            if seen[f["order_id"]] <= known.filled:
                continue  # counted already
            remaining = quantity[f["order_id"]] - seen[f["order_id"]]
            found.append((f["id"], bot, known.symbol, Fill(
                f["created_at"], key[f["order_id"]][1], Side(f["side"]), f["price"],
                f["quantity"], f["fee"], remaining,
            )))  # fmt: skip
    for _, bot, symbol, fill in sorted(found, key=lambda x: x[0]):
        # the catch-up tick of a fill: the market's price as of it (its own trade's)
        if symbol != bot.row["symbols"][0] or fill.price != bot.last_price:
            bot.events.append(PriceTick(fill.at, symbol, fill.price))
            if symbol == bot.row["symbols"][0]:
                bot.last_price = fill.price
        bot.events.append(fill)
    for order in orders:
        if order["status"] in _FINAL and order["filled_quantity"] < order["quantity"]:
            bot, _ = tracked[key[order["id"]]]
            reason = order["reason"] or order["status"]
            status = OrderStatus(order["status"])
            bot.events.append(OrderEnd(now, order["client_order_id"], status, reason))


def _prices_of(
    bot: _Bot, markets: Mapping[str, MarketRow], prices: Prices
) -> Mapping[str, Decimal | None]:
    """The last price of each of the bot's markets: the platform's, or an exchange
    bot's exchange's (None: not known)."""
    exchange = bot.row["exchange"]
    if exchange is None:
        return {s: markets[s].last_price for s in bot.row["symbols"]}
    return {s: prices.get((exchange, s)) for s in bot.row["symbols"]}


def _catch_up(
    bot: _Bot, last_prices: Mapping[str, Decimal | None], now: datetime
) -> Decimal | None:
    """The bot's market's latest price, when it moved since the bot last saw it (a
    rebalance bot: each of its markets' every time); the price it has seen after."""
    symbols = bot.row["symbols"]
    if bot.row["kind"] == BotKind.REBALANCE.value:
        for symbol in symbols:
            last = last_prices[symbol]
            if last is not None:
                bot.events.append(PriceTick(now, symbol, last))
        return None
    price = last_prices[symbols[0]]
    if price is not None and price != bot.last_price:
        bot.events.append(PriceTick(now, symbols[0], price))
        return price
    return bot.last_price


async def _store(
    session: AsyncSession, connection: Any, bots: list[_Bot], now: datetime
) -> Stepped:
    """Step each bot through its events and write what the steps made."""
    saves: list[tuple[Any, ...]] = []
    decisions: list[tuple[Any, ...]] = []
    commands: list[tuple[Any, ...]] = []
    stopped: list[_Bot] = []
    stepped = Stepped()
    for bot in bots:
        state = bot.state
        made: list[Decision] = []
        ticked = max((e.at for e in bot.events if isinstance(e, TimerTick)), default=None)
        events = list(bot.events)
        while events:
            event = events.pop(0)
            state, step_commands, step_decisions = bot.machine.step(state, event)
            made.extend(step_decisions)
            for command in step_commands:
                commands.append(_command_row(bot, command))
            if not events:  # a wake-up the steps made due: given at once, once per moment
                due = bot.machine.wake_at(state)
                if due is not None and due <= now and (ticked is None or due > ticked):
                    events.append(TimerTick(now))
                    ticked = now
        bot.state = state
        status = BotStatus(state.status)
        wake = bot.machine.wake_at(state)
        if wake is not None and ticked is not None and wake <= ticked:
            wake = None  # given at this moment already: not due again until the state moves
        saves.append((
            bot.id, codec.dumps(state), status.value, wake, bot.last_price,
            *_watch(bot.machine, state, bot.row["symbols"][0]),
        ))  # fmt: skip
        decisions.extend((bot.id, d.at, d.action.value, d.reason, d.client_order_id) for d in made)
        stepped.bots.append(bot.id)
        if status is BotStatus.STOPPED:
            stopped.append(bot)
        bot.made = made
    await connection.execute(_SAVE, *columns(saves, 8))
    last: dict[int, int] = {}
    if decisions:
        for row in await connection.fetch(_DECISIONS, *columns(decisions, 5)):
            last[row["bot_id"]] = max(last.get(row["bot_id"], 0), row["id"])
    if commands:
        await connection.execute(_COMMANDS, *columns(commands, 7))
    for bot in stopped:
        await venue_of(bot.row).release(session, connection, bot.row)
    await outbox.write(session, *(
        topics.bot_decided(bot.row["user_id"], topics.BotDecided(
            bot_id=bot.id, status=bot.state.status.value, paused=bot.row["paused"],
            steps=bot.row["steps"] + 1, decisions=len(bot.made),
            last_decision_id=last.get(bot.id, 0), at=now,
        ))
        for bot in bots
    ))  # fmt: skip
    return stepped


def _watch(bot: Bot[Any], state: Any, symbol: str) -> tuple[Decimal | None, Decimal | None, bool]:
    """(low, high, every) of the bot's market: the prices a trade must reach to wake it
    (the index is on its first market; a bot watching another of its markets is woken by
    every trade of its markets)."""
    bands = bot.watch(state)
    if any(band.every or band.low is not None or band.high is not None
           for other, band in bands.items() if other != symbol):  # fmt: skip
        return None, None, True
    band = bands.get(symbol, PriceBand.NONE)
    return band.low, band.high, band.every


def _command_row(bot: _Bot, command: PlaceOrder | CancelOrder) -> tuple[Any, ...]:
    steps = bot.row["steps"] + 1
    if isinstance(command, PlaceOrder):
        request = codec.dumps(command.request)
        return (bot.id, steps, "PLACE", command.client_order_id, command.symbol, request,
                command.reason)  # fmt: skip
    return (bot.id, steps, "CANCEL", command.client_order_id, None, None, command.reason)


# --- exchange bots' prices ------------------------------------------------------------------

Prices = Mapping[tuple[str, str], Decimal]  # (exchange, symbol) -> its last price

_EXCHANGE_MARKETS = """
    SELECT DISTINCT c.exchange, b.symbols[1] AS symbol
    FROM bots b JOIN exchange_connections c ON c.id = b.exchange_account_id
    WHERE b.exchange_account_id IS NOT NULL AND b.status <> 'STOPPED'
      AND ($1::bigint[] IS NULL OR b.id = ANY($1::bigint[]))
    ORDER BY 1, 2
"""


async def exchange_prices(
    rt: Runtime, ids: Sequence[int] | None = None
) -> dict[tuple[str, str], Decimal]:
    """The last prices of the markets the exchange bots (those of ``ids``; None: every
    one not STOPPED) trade, from their exchanges' tickers (``market_data.ticker``: kept
    briefly in Redis, so N bots on a market cost one request); a market whose exchange
    does not answer now is left out (its bots step without a new price)."""
    async with rt.reads() as session:
        rows = await (await driver(session)).fetch(
            _EXCHANGE_MARKETS, None if ids is None else sorted(set(ids))
        )
    prices: dict[tuple[str, str], Decimal] = {}
    for row in rows:
        try:
            ticker = await market_data.ticker(
                rt, exchange=ExchangeId(row["exchange"]), symbol=row["symbol"]
            )
        except UserError as error:
            where = {"exchange": row["exchange"], "symbol": row["symbol"], "code": error.code}
            log.warning("exchange price unavailable", extra=where)
            continue
        if ticker.last is not None:
            prices[(row["exchange"], row["symbol"])] = ticker.last
    return prices


# --- sending ------------------------------------------------------------------------------


async def send_commands(rt: Runtime, ids: Sequence[int]) -> list[int]:
    """Send every unsent command of bots ``ids`` (each bot's in order, bots at once);
    the bots whose acks ended an order, to be stepped again."""
    async with rt.sessions() as session:
        connection = await driver(session)
        rows = await connection.fetch(_UNSENT, sorted(set(ids)))
        await session.commit()
    per_bot: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        per_bot[row["bot_id"]].append(row)
    acks = await asyncio.gather(*(_send(rt, commands) for commands in per_bot.values()))
    sent = [ack for bot_acks in acks for ack in bot_acks]
    if sent:

        async def save(session: AsyncSession) -> None:
            connection = await driver(session)
            await connection.execute(_SENT, *columns(
                [(command_id, ack.order_id, ack.code) for command_id, _, ack in sent], 3
            ))  # fmt: skip

        await in_transaction(rt.sessions, save)
    return sorted({bot_id for _, bot_id, ack in sent if _ends(ack)})


async def _send(rt: Runtime, commands: list[Any]) -> list[tuple[int, int, OrderAck]]:
    venue = venue_of(commands[0]).sender(rt, commands[0])
    acks = []
    for c in commands:
        if c["kind"] == "PLACE":
            request = codec.from_json(OrderRequest, c["request"])
            ack = await venue.submit(
                symbol=c["symbol"], client_order_id=c["client_order_id"], request=request
            )
        else:
            ack = await venue.cancel(client_order_id=c["client_order_id"])
        acks.append((c["id"], c["bot_id"], ack))
    return acks


def _ends(ack: OrderAck) -> bool:
    """Whether the ack means an order ended (a refusal, a cancel, an IOC that expired):
    the bot has something to step on that no fill will wake it for."""
    return not ack.ok or (ack.status is not None and ack.status.value in _FINAL)


# --- both ---------------------------------------------------------------------------------


async def run_bots(
    rt: Runtime, ids: Sequence[int], *, wake: Wake | None = None, prices: Prices | None = None
) -> Stepped:
    """Step bots ``ids`` and send what they decided, again for those whose acks ended an
    order (at most ``MAX_ROUNDS`` times). ``prices``: as ``exchange_prices`` (read here
    for the exchange bots of ``ids`` when not given)."""
    total = Stepped()
    if prices is None:
        prices = await exchange_prices(rt, ids)
    pending, first = list(ids), wake
    for _ in range(MAX_ROUNDS):
        if not pending:
            break
        batch = pending

        async def work(
            session: AsyncSession, batch: list[int] = batch, first: Wake | None = first
        ) -> Stepped:
            return await step_bots(session, batch, now=rt.now(), wake=first, prices=prices)

        stepped = await in_transaction(rt.sessions, work)
        first = None
        total.bots.extend(stepped.bots)
        # every stepped bot's unsent commands: this step's, and any a crash left
        pending = await send_commands(rt, stepped.bots) if stepped.bots else []
    return total
