"""Bots, the use cases: create (funding its sub-account from the owner's wallet), pause,
resume, stop, rename; and the reads.

A bot trades as a sub-account of its owner: a ``users`` row of its own (``owner_id``
set, no password, no login) whose wallet holds the bot's budget. Creating a bot moves
the most it can spend (``machines.funding``) from the owner's AVAILABLE balance to the
sub-account's (a BOT_FUNDING entry), in the transaction that writes the bot; an owner
without the funds gets ``InsufficientFunds`` and nothing is written. Its orders are
placed as the sub-account through the ordinary placement (holds, risk limits, typed
refusals), so a bot can only spend its own budget, however many run at once. Once a
stopped bot's last order has ended, the sub-account is emptied back into the owner's
wallet (BOT_RELEASE, ``runner``).

A paper bot (``create_bot(paper=True)``) runs the same machine on a paper account of
its own instead: the owner's, on the bot's market, opened in the transaction that writes
the bot with what a live bot would be funded with as play money. No sub-account, no
real money; its stop gives nothing back (the play money stays on the paper account,
readable). Where the runner reads and sends: ``app.bots.venues``.

A bot on a connected exchange account (``create_bot(exchange_account_id=...)``) trades
there with its owner's money as it is at the exchange: no sub-account, nothing moved
from the wallet; its market is the exchange's (its rules kept on the row,
``market_specs``), its orders go through ``app.exchanges.orders`` (sent once, the
owner's risk scopes and the bot's) and its budget bounds what they commit
(``venues.ExchangeBudget``). Its stop cancels its orders at the exchange; nothing is
given back.

    RUNNING    steps on its fills, prices, alerts and timer
    paused     RUNNING or STOPPING, not stepped: its resting orders stay at the venue,
               and what they did is stepped on when it resumes
    STOPPING   stopped: waiting for its orders to end (and, when asked, its position sold)
    STOPPED    every order ended, the money back with its owner (a paper bot: just
               ended)
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.domain.api_keys import normalise_networks
from app.bots import runner
from app.bots.domain import codec
from app.bots.domain.dca_settings import DcaSettings, StartCondition
from app.bots.domain.errors import BotNotFound, BotStopped
from app.bots.domain.machines import BotSpec, funding, machine, valid_name, validate
from app.bots.domain.signal_bot import SignalSettings
from app.bots.webhook import new_webhook_credentials
from app.core.errors import NotAuthenticated, ValidationFailed
from app.events import outbox, topics
from app.ledger import journal as ledger
from app.ledger.rules import move
from app.paper import accounts as paper_accounts
from app.paper.domain.session import MAX_NAME_LENGTH as PAPER_NAME_LENGTH
from app.runtime import Runtime
from app.trading.domain.errors import MarketHalted
from app.trading.domain.orders import MarketSpec, MarketStatus
from app.trading.markets import market_by_symbol
from db.models import Bot, PaperAccount, User
from db.queries import Page, keyset_page, rows_by_ids
from db.session import in_transaction

UNUSABLE_PASSWORD = "!"  # not an argon2 hash: no password ever matches it
SUB_ACCOUNT_DOMAIN = "bots.invalid"  # RFC 2606: never a deliverable address


@dataclass(frozen=True, slots=True)
class Created:
    bot: Bot
    webhook_secret: str | None  # shown once, at creation: only its hash is kept


def _owner(user_id: int | None) -> int:
    if user_id is None:
        raise NotAuthenticated()
    return user_id


async def markets_for(session: AsyncSession, symbols: Sequence[str]) -> tuple[MarketSpec, ...]:
    """The open markets ``symbols`` (``UnknownMarket``, ``MarketHalted`` otherwise)."""
    specs = []
    for symbol in symbols:
        market = await market_by_symbol(session, symbol.strip().upper())
        if market.spec.status is not MarketStatus.OPEN:
            raise MarketHalted(field="symbol")
        specs.append(market.spec)
    return tuple(specs)


def _wants_webhook(spec: BotSpec) -> bool:
    s = spec.settings
    return isinstance(s, SignalSettings) or (
        isinstance(s, DcaSettings) and s.start is StartCondition.SIGNAL
    )


async def create_bot(
    rt: Runtime,
    *,
    user_id: int | None,
    spec: BotSpec,
    ip_allowlist: Sequence[str] = (),
    paper: bool = False,
    exchange_account_id: int | None = None,
) -> Created:
    """A new RUNNING bot, funded and stepped once (it may place orders at once). A
    ``paper`` bot gets a paper account of its own instead of a sub-account, opened with
    what the bot would be funded with as play money (``ValidationFailed``, field
    ``paper``, beyond the paper limits or for more than one market); the owner's wallet
    is not touched. On a connected exchange account (``exchange_account_id``, checked by
    ``preview``; ``spec.markets`` the exchange's): no sub-account and no funding, the
    money stays at the exchange and the bot's budget bounds what its orders commit."""
    owner = _owner(user_id)
    spec = validate(spec)
    needs = funding(spec)
    try:
        allowed = normalise_networks(ip_allowlist)
    except ValidationFailed as error:
        raise ValidationFailed(error.message, field="ipAllowlist") from error
    if paper and len(spec.markets) != 1:
        raise ValidationFailed("A paper bot trades one market", field="paper")

    async def work(session: AsyncSession) -> Created:
        account = paper_account = None
        if paper:
            paper_account = await _paper_account(session, owner, spec, needs, rt.now())
        elif exchange_account_id is None:
            account = await _sub_account(session, owner, spec.name)
        token = secret = secret_hash = None
        if _wants_webhook(spec):
            token, secret, secret_hash = new_webhook_credentials()
        bot = (
            await session.execute(
                insert(Bot)
                .values(
                    user_id=owner, account_id=account, paper_account_id=paper_account,
                    exchange_account_id=exchange_account_id,
                    market_specs=(
                        None if exchange_account_id is None else codec.to_json(spec.markets)
                    ),
                    kind=spec.kind.value, name=spec.name,
                    symbols=list(spec.symbols), quote=spec.quote,
                    budget=sum(needs.values()) if len(needs) == 1 else needs.get(spec.quote, 1),
                    allocation={"holdings": codec.to_json(spec.allocation)},
                    settings=codec.to_json(spec.settings), state={},
                    webhook_token=token, webhook_secret_hash=secret_hash,
                    ip_allowlist=allowed,
                )
                .returning(Bot)
            )
        ).scalar_one()  # fmt: skip
        first = machine(spec.kind, bot.id, spec.settings, spec.markets, spec.allocation)
        bot.state = codec.to_json(first.start(rt.now()))
        if account is not None:
            await _fund(session, owner, account, needs, bot.id)
        await session.flush()
        await outbox.write(session, _event(bot, decisions=0))
        return Created(bot, secret)

    created = await in_transaction(rt.sessions, work)
    await runner.run_bots(rt, [created.bot.id])
    return created


async def _sub_account(session: AsyncSession, owner: int, name: str) -> int:
    email = f"bot-{uuid.uuid4().hex}@{SUB_ACCOUNT_DOMAIN}"
    account: int = (
        await session.execute(
            insert(User)
            .values(
                email=email, display_name=name, password_hash=UNUSABLE_PASSWORD,
                email_verified_at=func.now(), owner_id=owner,
            )
            .returning(User.id)
        )
    ).scalar_one()  # fmt: skip
    return account


async def _fund(
    session: AsyncSession, owner: int, account: int, needs: dict[str, Decimal], bot_id: int
) -> None:
    """The sub-account given what the bot can ever spend, from its owner (BOT_FUNDING)."""
    legs = [
        leg
        for currency, amount in sorted(needs.items())
        for leg in move(
            amount, ledger.user_account(owner, currency), ledger.user_account(account, currency)
        )
    ]
    await ledger.post(session, kind="BOT_FUNDING", legs=legs, reference=f"bot:{bot_id}")


async def _paper_account(
    session: AsyncSession, owner: int, spec: BotSpec, needs: dict[str, Decimal], now: datetime
) -> int:
    """A paper account of the owner's on the bot's market, with ``needs`` as play money."""
    try:
        account = await paper_accounts.open_account_in(
            session, user_id=owner, name=spec.name[:PAPER_NAME_LENGTH], symbol=spec.symbols[0],
            balances=needs, now=now,
        )  # fmt: skip
    except ValidationFailed as error:
        raise ValidationFailed(error.message, field="paper") from error
    return account.id


def _event(bot: Bot, *, decisions: int) -> topics.Event:
    return topics.bot_decided(
        bot.user_id,
        topics.BotDecided(
            bot_id=bot.id, status=bot.status or "RUNNING", paused=bool(bot.paused),
            steps=bot.steps or 0, decisions=decisions, last_decision_id=0,
            at=bot.updated_at or bot.created_at,
        ),
    )  # fmt: skip


async def _lock_own(session: AsyncSession, owner: int, bot_id: int) -> Bot:
    bot = (
        await session.execute(
            select(Bot).where(Bot.id == bot_id).with_for_update(key_share=False, of=Bot)
        )
    ).scalar_one_or_none()
    if bot is None or bot.user_id != owner:
        raise BotNotFound(field="id")
    return bot


async def set_paused(rt: Runtime, *, user_id: int | None, bot_id: int, paused: bool) -> Bot:
    """Pause (stop stepping; its resting orders stay) or resume (step on what happened
    meanwhile at once)."""
    owner = _owner(user_id)

    async def work(session: AsyncSession) -> Bot:
        bot = await _lock_own(session, owner, bot_id)
        if bot.status == "STOPPED":
            raise BotStopped(field="id")
        bot.paused = paused
        bot.updated_at = rt.now()
        await session.flush()
        await outbox.write(session, _event(bot, decisions=0))
        return bot

    bot = await in_transaction(rt.sessions, work)
    if not paused:
        await runner.run_bots(rt, [bot.id])
    return await get_bot(rt, user_id=owner, bot_id=bot.id)


async def stop_bot(rt: Runtime, *, user_id: int | None, bot_id: int, close_position: bool) -> Bot:
    """Stop: cancel its orders and, when ``close_position``, sell what it holds at
    market; once every order has ended its money goes back to its owner."""
    owner = _owner(user_id)

    async def work(session: AsyncSession) -> None:
        bot = await _lock_own(session, owner, bot_id)
        if bot.status == "STOPPED":
            raise BotStopped(field="id")
        bot.paused = False
        bot.close_on_stop = close_position

    await in_transaction(rt.sessions, work)
    await runner.run_bots(rt, [bot_id], wake=runner.Wake(stop={bot_id: close_position}))
    return await get_bot(rt, user_id=owner, bot_id=bot_id)


async def rename_bot(rt: Runtime, *, user_id: int | None, bot_id: int, name: str) -> Bot:
    owner = _owner(user_id)

    async def work(session: AsyncSession) -> Bot:
        bot = await _lock_own(session, owner, bot_id)
        bot.name = valid_name(name)
        if bot.account_id is not None:
            await session.execute(
                update(User).where(User.id == bot.account_id).values(display_name=bot.name)
            )
        elif bot.paper_account_id is not None:
            await session.execute(
                update(PaperAccount)
                .where(PaperAccount.id == bot.paper_account_id)
                .values(name=bot.name[:PAPER_NAME_LENGTH])
            )
        return bot

    return await in_transaction(rt.sessions, work)


# --- reads -----------------------------------------------------------------------------


async def get_bot(rt: Runtime, *, user_id: int | None, bot_id: int) -> Bot:
    owner = _owner(user_id)
    async with rt.sessions() as session:
        bot = await session.get(Bot, bot_id)
    if bot is None or bot.user_id != owner:
        raise BotNotFound(field="id")
    return bot


async def list_bots(
    session: AsyncSession, *, user_id: int, first: int, after: str | None
) -> Page[Bot]:
    """A user's bots, newest first."""
    query = select(Bot).where(Bot.user_id == user_id)
    return await keyset_page(session, query, key=Bot.id, first=first, after=after, descending=True)


async def bots_by_ids(session: AsyncSession, ids: Sequence[int]) -> list[Bot | None]:
    return await rows_by_ids(session, Bot, ids)
