"""Bots, the read side of ``bot`` and ``bots`` (their DataLoaders batch these, one
statement per venue): pages of a bot's decisions and of its sub-account's fills, the
sub-account's live orders, what it holds, and the bot's figures. A paper bot reads the
same from its paper account's current run instead (``app.paper.accounts.fills_pages``,
``open_paper_orders_by_account_ids``, ``paper_holdings``); an exchange bot from its
orders at its connected account (those its PLACE commands named) and their fills
(``exchange_fill_pages``, ``open_exchange_orders_by_bot_ids``,
``exchange_holdings_by_bot_ids``).

Figures (``figures``), in the bot's quote currency:

    holdings    what its sub-account holds (available and held by its orders), by
                currency; once it has stopped and given its money back, what it gave
                back (its BOT_RELEASE entry): so a stopped bot shows what it ended with.
                A paper bot: its paper account's balances (it gives nothing back: a
                stopped paper bot's play money stays there). An exchange bot: its
                budget, less what its buys cost, plus what its sells brought, less
                their fees, in the quote, and the base its buys got less what its sells
                sold, from its exchange orders' fills (a fee the exchange took in the
                base valued at the fill's price, as the runner counts it): what it would
                hold in a sub-account of its own (``exchange_figures_by_bot_ids``)
    equity      the holdings valued at each market's last price (the quote at 1); None
                while a held asset's market has no price. An exchange bot's: its
                exchange's last price in the ticker the platform keeps (the bots job
                reads it every run), else the last price the bot stepped on
    budget      what it was given: a DCA, grid or signal bot its funding in the quote
                currency; a rebalance bot its allocation valued at the last prices (so
                its PnL is against holding what it was given)
    pnl         equity - budget
    realised    what its closed trades made, fees included, as its machine counts them:
                DCA its closed deals; grid its levels' round trips and the sales of base
                no level holds; signal its sales. None for a rebalance bot (it holds a
                portfolio and closes nothing)
    unrealised  pnl - realised (a rebalance bot: pnl): what it holds now, at the last
                price, against what that cost
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    and_,
    any_,
    bindparam,
    func,
    literal,
    literal_column,
    select,
    union_all,
)
from sqlalchemy import text as sql_text
from sqlalchemy.ext.asyncio import AsyncSession

from app.bots.domain import codec
from app.bots.domain.dca import DcaState
from app.bots.domain.grid import GridState
from app.bots.domain.machines import read_state
from app.bots.domain.rebalance import Holding
from app.bots.domain.runtime import ZERO, BotKind
from app.bots.domain.signal_bot import SignalState
from app.exchanges.domain.orders import WORKING as EXCHANGE_WORKING
from app.exchanges.venue import exchange_client_id_sql
from app.ledger.rules import AccountKind, AccountRef
from app.paper.state import OPEN
from app.trading.domain.orders import LIVE_STATUSES
from db.models import (
    Bot,
    BotCommand,
    BotDecision,
    ExchangeFill,
    ExchangeOrder,
    Fill,
    JournalEntry,
    LedgerAccount,
    Order,
    PaperAccount,
    PaperOrder,
    Posting,
)
from db.queries import Page, PageKey, keyset_pages, rows_by_ids

RELEASE = "BOT_RELEASE"  # the journal entry that gives a stopped bot's money back
_HELD_KINDS = [AccountKind.AVAILABLE.value, AccountKind.HELD.value]
_PAPER_HELD_KINDS = (AccountKind.PAPER_AVAILABLE, AccountKind.PAPER_HELD)
_LIVE = sorted(s.value for s in LIVE_STATUSES)
_EXCHANGE_LIVE = sorted(s.value for s in EXCHANGE_WORKING)


async def decision_pages(
    session: AsyncSession, wanted: Sequence[PageKey]
) -> list[Page[BotDecision]]:
    """Pages of bots' decisions (``PageKey.parent``: the bot's id), newest first."""
    return await keyset_pages(
        session, BotDecision, parent=BotDecision.bot_id, key=BotDecision.id, wanted=wanted,
        descending=True,
    )  # fmt: skip


async def fill_pages(session: AsyncSession, wanted: Sequence[PageKey]) -> list[Page[Fill]]:
    """Pages of sub-accounts' fills (``PageKey.parent``: the sub-account), newest first."""
    return await keyset_pages(
        session, Fill, parent=Fill.user_id, key=Fill.id, wanted=wanted, descending=True
    )


def _ids(ids: Sequence[int]) -> Any:
    return bindparam("ids", list(ids), type_=ARRAY(BigInteger))


async def open_orders_by_account_ids(
    session: AsyncSession, account_ids: Sequence[int]
) -> list[list[Order]]:
    """Each sub-account's live orders, newest first."""
    rows = await session.scalars(
        select(Order)
        .where(Order.user_id == any_(_ids(account_ids)), Order.status.in_(_LIVE))
        .order_by(Order.id.desc())
    )
    found: dict[int, list[Order]] = {i: [] for i in account_ids}
    for row in rows:
        found[row.user_id].append(row)
    return [found[i] for i in account_ids]


async def holdings_by_account_ids(
    session: AsyncSession, account_ids: Sequence[int]
) -> list[dict[str, Decimal]]:
    """Each sub-account's holdings by currency (see the module's docstring): its balances
    and what its release gave back, in one statement."""
    balances = select(
        LedgerAccount.user_id, LedgerAccount.currency, LedgerAccount.balance.label("amount")
    ).where(LedgerAccount.user_id == any_(_ids(account_ids)),
            LedgerAccount.kind.in_(_HELD_KINDS))  # fmt: skip
    released = (
        select(LedgerAccount.user_id, LedgerAccount.currency, (-Posting.amount).label("amount"))
        .join(Posting, Posting.account_id == LedgerAccount.id)
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .where(
            LedgerAccount.user_id == any_(_ids(account_ids)),
            LedgerAccount.kind == AccountKind.AVAILABLE.value,
            JournalEntry.kind == literal(RELEASE),
        )
    )
    both = union_all(balances, released).subquery()
    statement = (
        select(both.c.user_id, both.c.currency, func.sum(both.c.amount).label("amount"))
        .group_by(both.c.user_id, both.c.currency)
        .order_by(both.c.user_id, both.c.currency)
    )
    found: dict[int, dict[str, Decimal]] = {i: {} for i in account_ids}
    for row in await session.execute(statement):
        if row.amount:
            found[row.user_id][row.currency] = row.amount.normalize()
    return [found[i] for i in account_ids]


async def open_paper_orders_by_account_ids(
    session: AsyncSession, paper_account_ids: Sequence[int]
) -> list[list[PaperOrder]]:
    """Each paper account's live orders of its current run, newest first (none once it
    is closed: they will never trade)."""
    rows = await session.scalars(
        select(PaperOrder)
        .join(PaperAccount, and_(PaperAccount.id == PaperOrder.paper_account_id,
                                 PaperAccount.generation == PaperOrder.generation))
        .where(
            PaperOrder.paper_account_id == any_(_ids(paper_account_ids)),
            PaperOrder.status.in_(_LIVE),
            PaperAccount.status == OPEN,
        )
        .order_by(PaperOrder.id.desc())
    )  # fmt: skip
    found: dict[int, list[PaperOrder]] = {i: [] for i in paper_account_ids}
    for row in rows:
        found[row.paper_account_id].append(row)
    return [found[i] for i in paper_account_ids]


def paper_holdings(paper_account_id: int, book: Mapping[AccountRef, Decimal]) -> dict[str, Decimal]:
    """A paper bot's holdings by currency: its paper account's available and held, from
    the paper book's balances (``app.paper.ledger.balances_by_account_ids``)."""
    held: dict[str, Decimal] = {}
    for ref, amount in book.items():
        if ref.paper_account_id == paper_account_id and ref.kind in _PAPER_HELD_KINDS:
            held[ref.currency] = held.get(ref.currency, ZERO) + amount
    return {c: a.normalize() for c, a in sorted(held.items()) if a}


def _exchange_orders(*columns: Any) -> Any:
    """``columns`` of bots' orders at their connected accounts, with their PLACE
    commands (``BotCommand.bot_id`` names the bot)."""
    sent = literal_column(exchange_client_id_sql("bot_commands.client_order_id"))
    return (
        select(*columns)
        .select_from(BotCommand)
        .join(Bot, Bot.id == BotCommand.bot_id)
        .join(ExchangeOrder, and_(ExchangeOrder.connection_id == Bot.exchange_account_id,
                                  ExchangeOrder.client_order_id == sent))
        .where(BotCommand.kind == literal("PLACE"))
    )  # fmt: skip


async def exchange_fill_pages(
    session: AsyncSession, wanted: Sequence[PageKey]
) -> list[Page[tuple[ExchangeFill, ExchangeOrder]]]:
    """Pages of exchange bots' fills (``PageKey.parent``: the bot's id), newest first,
    each with its order: two statements however many pages."""
    rows = _exchange_orders(ExchangeFill).join(
        ExchangeFill, ExchangeFill.order_id == ExchangeOrder.id
    )
    pages = await keyset_pages(
        session, ExchangeFill, parent=BotCommand.bot_id, key=ExchangeFill.id, wanted=wanted,
        rows=rows, descending=True,
    )  # fmt: skip
    ids = sorted({fill.order_id for page in pages for _, fill in page.items})
    orders = {o.id: o for o in await rows_by_ids(session, ExchangeOrder, ids) if o is not None}
    return [
        Page([(c, (f, orders[f.order_id])) for c, f in p.items], p.has_next_page,
             p.has_previous_page)
        for p in pages
    ]  # fmt: skip


async def open_exchange_orders_by_bot_ids(
    session: AsyncSession, bot_ids: Sequence[int]
) -> list[list[tuple[ExchangeOrder, str]]]:
    """Each exchange bot's live orders at its account (an emulated stop held ARMED
    too), newest first, each with the bot's own client order id (the exchange's is its
    digest)."""
    rows = await session.execute(
        _exchange_orders(BotCommand.bot_id, BotCommand.client_order_id, ExchangeOrder)
        .where(BotCommand.bot_id == any_(_ids(bot_ids)), ExchangeOrder.status.in_(_EXCHANGE_LIVE))
        .order_by(ExchangeOrder.id.desc())
    )  # fmt: skip
    found: dict[int, list[tuple[ExchangeOrder, str]]] = {i: [] for i in bot_ids}
    seen: set[int] = set()
    for bot_id, client_order_id, order in rows:
        if order.id not in seen:  # a client order id its commands named twice
            seen.add(order.id)
            found[bot_id].append((order, client_order_id))
    return [found[i] for i in bot_ids]


@dataclass(frozen=True, slots=True)
class ExchangeHoldings:
    """An exchange bot's holdings by currency, with where its market's price is read:
    its exchange and symbol, and the last price it stepped on (the fallback)."""

    holdings: dict[str, Decimal]
    exchange: str
    symbol: str
    last_price: Decimal | None


# Each bot's orders at its account (those its PLACE commands named, once each: the digest
# of the client order id is the exchange's, ``app.exchanges.venue.exchange_client_id``)
# and their fills: the base bought less sold, the quote received less paid and fees
_SENT_ID = exchange_client_id_sql("k.client_order_id")
_EXCHANGE_HOLDINGS = sql_text(f"""
    SELECT b.id, c.exchange, b.symbols[1] AS symbol, b.quote, b.budget, b.last_price,
           coalesce(sum(CASE WHEN o.side = 'BUY' THEN f.quantity ELSE -f.quantity END), 0)
               AS base,
           coalesce(sum(CASE WHEN o.side = 'BUY' THEN -f.price * f.quantity
                             ELSE f.price * f.quantity END
                        - CASE WHEN f.fee_currency = split_part(o.symbol, '/', 1)
                               THEN f.fee * f.price ELSE f.fee END), 0) AS flow
    FROM bots b
    JOIN exchange_connections c ON c.id = b.exchange_account_id
    LEFT JOIN LATERAL (
        SELECT DISTINCT o.id, o.side, o.symbol
        FROM bot_commands k
        JOIN exchange_orders o ON o.connection_id = b.exchange_account_id
             AND o.client_order_id = {_SENT_ID}
        WHERE k.bot_id = b.id AND k.kind = 'PLACE'
    ) o ON true
    LEFT JOIN exchange_fills f ON f.order_id = o.id
    WHERE b.id = ANY(:ids)
    GROUP BY b.id, c.exchange
""").bindparams(bindparam("ids", type_=ARRAY(BigInteger)))  # noqa: S608 (our constant)


async def exchange_holdings_by_bot_ids(
    session: AsyncSession, bot_ids: Sequence[int]
) -> list[ExchangeHoldings | None]:
    """Each exchange bot's holdings (the module's docstring), in one statement; None for
    a bot not on an exchange."""
    found: dict[int, ExchangeHoldings] = {}
    for row in await session.execute(_EXCHANGE_HOLDINGS, {"ids": list(bot_ids)}):
        base = row.symbol.split("/")[0]
        amounts = {row.quote: row.budget + row.flow, base: row.base}
        held = {c: a.normalize() for c, a in sorted(amounts.items()) if a}
        found[row.id] = ExchangeHoldings(held, row.exchange, row.symbol, row.last_price)
    return [found.get(i) for i in bot_ids]


@dataclass(frozen=True, slots=True)
class Figures:
    """A bot's figures in its quote currency (the module's docstring)."""

    budget: Decimal | None
    equity: Decimal | None
    realised: Decimal | None
    unrealised: Decimal | None

    @property
    def pnl(self) -> Decimal | None:
        if self.equity is None or self.budget is None:
            return None
        return self.equity - self.budget


def allocation_of(bot: Bot) -> tuple[Holding, ...]:
    """What a rebalance bot was given (nothing for the other kinds)."""
    return codec.from_json(tuple[Holding, ...], bot.allocation.get("holdings", []))


def funding_of(bot: Bot) -> dict[str, Decimal]:
    """What the bot was given by currency."""
    if bot.kind == BotKind.REBALANCE.value:
        return {h.asset: h.quantity for h in allocation_of(bot) if h.quantity > 0}
    return {bot.quote: bot.budget}


def value(
    amounts: Mapping[str, Decimal], quote: str, prices: Mapping[str, Decimal | None]
) -> Decimal | None:
    """``amounts`` in ``quote`` at ``prices`` (by symbol); None when one has no price."""
    total = ZERO
    for currency, amount in amounts.items():
        if currency == quote or not amount:
            total += amount
            continue
        price = prices.get(f"{currency}/{quote}")
        if price is None:
            return None
        total += amount * price
    return total.normalize()


def realised_of(bot: Bot) -> Decimal | None:
    if bot.kind == BotKind.REBALANCE.value:
        return None
    if not bot.state:
        return ZERO  # not started yet
    state = read_state(BotKind(bot.kind), bot.state)
    if isinstance(state, DcaState):
        return state.realized_pnl.normalize()
    if isinstance(state, GridState):
        return state.profit.normalize()
    assert isinstance(state, SignalState)
    return state.position.realized_pnl.normalize()


def figures(
    bot: Bot, holdings: Mapping[str, Decimal], prices: Mapping[str, Decimal | None]
) -> Figures:
    """The bot's figures from its holdings and its markets' last prices (by symbol)."""
    budget = value(funding_of(bot), bot.quote, prices)
    equity = value(holdings, bot.quote, prices)
    realised = realised_of(bot)
    if equity is None or budget is None:
        return Figures(budget, equity, realised, None)
    unrealised = equity - budget - (realised or ZERO)
    return Figures(budget, equity, realised, unrealised.normalize())
