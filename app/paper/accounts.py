"""Paper accounts: open, reset, close, and the reads (balances from the paper book,
orders and fills mirrored from the venue, equity at the live market's last price; the
GraphQL loaders read several accounts at once: ``orders_pages``, ``fills_pages``,
``ledger.balances_by_account_ids``, then ``balances_from`` and ``equity_from``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import ValidationFailed
from app.ledger.rules import AccountKind, AccountRef
from app.paper import exchange_feed, ledger, state
from app.paper.domain.session import (
    MAX_NAME_LENGTH,
    MAX_OPEN_ACCOUNTS,
    check_starting_balances,
    ledger_legs,
    new_venue,
)
from app.runtime import Runtime
from app.trading.domain.orders import MarketSpec
from app.trading.markets import market_by_id, market_by_symbol
from app.venues.domain.venue import Balance
from db.models import PaperAccount, PaperFill, PaperOrder
from db.queries import Page, PageKey, keyset_pages, rows_by_ids
from db.session import in_transaction


@dataclass(frozen=True, slots=True)
class PaperBalance:
    currency: str
    available: Decimal
    held: Decimal

    @property
    def total(self) -> Decimal:
        return self.available + self.held


def _name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise ValidationFailed(
            f"A name is 1 to {MAX_NAME_LENGTH} printable characters", field="name"
        )
    return name


async def _fund(session: AsyncSession, account: PaperAccount, kind: str) -> None:
    """Bring the paper book to the account's fresh venue (its starting balances)."""
    market = await market_by_id(session, account.market_id)
    venue = new_venue(market.spec, state.starting_balances(account), account.started_at)
    targets = venue.balances() if account.status == state.OPEN else _zero(venue.balances())
    legs = ledger_legs(account.id, await ledger.balances(session, account.id), targets)
    if legs:
        await ledger.post(
            session, paper_account_id=account.id, kind=kind, legs=legs,
            reference=f"paper:{account.id}:{account.generation}:0",
        )  # fmt: skip


def _zero(balances: Mapping[str, Balance]) -> dict[str, Balance]:
    return {c: Balance(c, Decimal(0), Decimal(0)) for c in balances}


async def open_account(
    rt: Runtime,
    *,
    user_id: int,
    name: str,
    symbol: str,
    balances: Mapping[str, Decimal],
    exchange: str | None = None,
) -> PaperAccount:
    """A new paper account on ``symbol``'s market, funded with ``balances`` from
    PAPER_EQUITY (caps: ``session.check_starting_balances``, at most
    ``MAX_OPEN_ACCOUNTS`` open per user). With ``exchange`` it trades against that
    exchange's live trades of ``symbol`` (``exchange_feed``; the platform's market of the
    same symbol gives its rules), checked at the exchange first (no key needed)."""
    name = _name(name)
    venue = exchange_feed.parse_exchange(exchange) if exchange is not None else None
    if venue is not None:
        async with rt.reads() as session:
            await market_by_symbol(session, symbol)  # the platform's rules for it
        await exchange_feed.check_market(rt, exchange=venue, symbol=symbol.strip().upper())

    async def work(session: AsyncSession) -> PaperAccount:
        return await open_account_in(
            session, user_id=user_id, name=name, symbol=symbol, balances=balances,
            now=rt.now(), exchange=venue.value if venue is not None else None,
        )  # fmt: skip

    return await in_transaction(rt.sessions, work)


async def open_account_in(
    session: AsyncSession,
    *,
    user_id: int,
    name: str,
    symbol: str,
    balances: Mapping[str, Decimal],
    now: datetime,
    exchange: str | None = None,
) -> PaperAccount:
    """``open_account`` in the caller's transaction (a paper bot's account is opened in
    the one that writes the bot)."""
    name = _name(name)
    market = await market_by_symbol(session, symbol)
    checked = check_starting_balances(market.spec, balances)
    count = await session.scalar(
        select(func.count()).where(
            PaperAccount.user_id == user_id, PaperAccount.status == state.OPEN
        )
    )
    if (count or 0) >= MAX_OPEN_ACCOUNTS:
        raise ValidationFailed(f"At most {MAX_OPEN_ACCOUNTS} open paper accounts", field="name")
    account = PaperAccount(
        user_id=user_id,
        market_id=market.id,
        name=name,
        starting_balances={c: str(a) for c, a in checked.items()},
        started_at=now,
        exchange=exchange,
    )
    session.add(account)
    await session.flush()
    await _fund(session, account, "PAPER_FUND")
    return account


async def reset_account(
    rt: Runtime,
    *,
    user_id: int,
    paper_account_id: int,
    balances: Mapping[str, Decimal] | None = None,
) -> PaperAccount:
    """Start the account again: a new generation (empty log, no orders), funded with
    ``balances`` (default: the same starting balances). The old generation's rows stay."""

    async def work(session: AsyncSession) -> PaperAccount:
        account = await state.get_account(
            session, paper_account_id=paper_account_id, user_id=user_id, lock=True
        )
        if account.status != state.OPEN:
            raise ValidationFailed("The paper account is closed", field="paperAccountId")
        if balances is not None:
            market = await market_by_id(session, account.market_id)
            checked = check_starting_balances(market.spec, balances)
            account.starting_balances = {c: str(a) for c, a in checked.items()}
        account.generation += 1
        account.started_at = rt.now()
        await session.flush()
        await _fund(session, account, "PAPER_RESET")
        return account

    return await in_transaction(rt.sessions, work)


async def close_account(rt: Runtime, *, user_id: int, paper_account_id: int) -> PaperAccount:
    """Close the account: its balances go back to PAPER_EQUITY; it stays readable."""

    async def work(session: AsyncSession) -> PaperAccount:
        account = await state.get_account(
            session, paper_account_id=paper_account_id, user_id=user_id, lock=True
        )
        if account.status != state.OPEN:
            raise ValidationFailed("The paper account is closed", field="paperAccountId")
        account.status = state.CLOSED
        account.closed_at = rt.now()
        await session.flush()
        await _fund(session, account, "PAPER_CLOSE")
        return account

    return await in_transaction(rt.sessions, work)


# --- reads -------------------------------------------------------------------------------


async def get_account(
    session: AsyncSession, *, user_id: int, paper_account_id: int
) -> PaperAccount:
    return await state.get_account(session, paper_account_id=paper_account_id, user_id=user_id)


async def list_accounts(session: AsyncSession, *, user_id: int) -> list[PaperAccount]:
    rows = await session.scalars(
        select(PaperAccount).where(PaperAccount.user_id == user_id).order_by(PaperAccount.id)
    )
    return list(rows)


async def balances_of(session: AsyncSession, account: PaperAccount) -> list[PaperBalance]:
    """Per currency of the market: available and held, from the paper book."""
    market = await market_by_id(session, account.market_id)
    return balances_from(account.id, market.spec, await ledger.balances(session, account.id))


async def equity_of(session: AsyncSession, account: PaperAccount) -> Decimal:
    """Cash plus position at the live market's last price, in the quote currency."""
    market = await market_by_id(session, account.market_id)
    return equity_from(market.spec, market.last_price, await balances_of(session, account))


def balances_from(
    paper_account_id: int, spec: MarketSpec, book: Mapping[AccountRef, Decimal]
) -> list[PaperBalance]:
    """The account's balances in the market's currencies (base, quote), from its paper
    book's balances (``ledger.balances``)."""

    def amount(currency: str, kind: AccountKind) -> Decimal:
        return book.get(ledger.paper_ref(paper_account_id, currency, kind), Decimal(0))

    return [
        PaperBalance(c, amount(c, AccountKind.PAPER_AVAILABLE), amount(c, AccountKind.PAPER_HELD))
        for c in (spec.base, spec.quote)
    ]


def equity_from(
    spec: MarketSpec, last_price: Decimal | None, balances: Sequence[PaperBalance]
) -> Decimal:
    """Cash plus position at ``last_price`` (none yet: 0), at the quote's scale."""
    by_currency = {b.currency: b.total for b in balances}
    value = by_currency[spec.quote] + by_currency[spec.base] * (last_price or Decimal(0))
    return value.quantize(Decimal(1).scaleb(-spec.quote_scale))


async def orders_pages(session: AsyncSession, keys: Sequence[PageKey]) -> list[Page[PaperOrder]]:
    """Pages of accounts' orders of their current run, newest first (a ``PageKey`` per
    page: the account, its size and cursor), in one statement."""
    return await keyset_pages(
        session, PaperOrder, parent=PaperOrder.paper_account_id, key=PaperOrder.id,
        wanted=keys, rows=_current_run(PaperOrder), descending=True,
    )  # fmt: skip


async def fills_pages(session: AsyncSession, keys: Sequence[PageKey]) -> list[Page[PaperFill]]:
    """Pages of accounts' fills of their current run, newest first: as ``orders_pages``."""
    return await keyset_pages(
        session, PaperFill, parent=PaperFill.paper_account_id, key=PaperFill.id,
        wanted=keys, rows=_current_run(PaperFill), descending=True,
    )  # fmt: skip


def _current_run(model: type[PaperOrder] | type[PaperFill]) -> Select[Any]:
    """The rows of ``model`` of their account's current generation."""
    run = and_(
        PaperAccount.id == model.paper_account_id, PaperAccount.generation == model.generation
    )
    return select(model).join(PaperAccount, run)


async def accounts_by_ids(session: AsyncSession, ids: Sequence[int]) -> list[PaperAccount | None]:
    return await rows_by_ids(session, PaperAccount, ids)
