"""Following: a user copies a leader with an allocation, a sizing mode and caps.

    follow_leader   validate (``app.social.domain.social.validate_follow``), then in one
                    transaction: lock the follower, share-lock the leader, check who may
                    follow whom and the allocation against the follower's available
                    balance (no hold: copied orders hold when placed), insert the ACTIVE
                    follow and emit ``social.new_follower`` to the leader
    update_follow   new parameters, the same checks
    pause / resume  ACTIVE <-> PAUSED (resume also clears a stop-loss pause; refused
                    while the leader is STOPPED)
    unfollow        STOPPED with ``ended_at``; on request, the follow's positions are sold
                    (``app.social.follow_close.close_follow_positions``; on an exchange
                    account: sold there, ``ended_at`` once they are)

A follow may name one of the follower's ACTIVE connected exchange accounts
(``exchange_account_id``): its copies are then sent there (``copy_exchange``) and its
allocation is checked against what the account holds free of the quote there (the
mirror, ``app.exchanges.custody``) instead of the platform balance.

Reads: the follow rows, pages of a follower's follows and of a leader's followers, and
the copy statistics of many follows in three statements (``follow_statistics``).
Only the follower changes a follow; the follower and the leader may read it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import InsufficientFunds, NotAuthenticated, NotFound, ValidationFailed
from app.events import outbox, topics
from app.ledger.rules import AccountKind
from app.runtime import Runtime
from app.social.domain import social as rules
from app.social.domain.social import (
    FOLLOW_QUOTE,
    AlreadyFollowing,
    BelowMinimumAllocation,
    CannotFollowSelf,
    FollowAction,
    FollowMode,
    FollowParameters,
    FollowStatus,
    HeldPosition,
    InviteRequired,
    LeaderCannotFollow,
    LeaderStatus,
    LeaderStopped,
    NotALeader,
    PauseReason,
    Visibility,
)
from app.social.leaders import is_invited
from app.trading.domain.errors import UnknownMarket
from db.models import ExchangeConnection, Follow, Leader, LedgerAccount, Market, Order
from db.queries import Page, keyset_page, lock_user, rows_by_ids
from db.raw import driver
from db.session import in_transaction

# --- parameters <-> rows ------------------------------------------------------------------


def parameters_of(row: Follow) -> FollowParameters:
    return FollowParameters(
        allocation=row.allocation,
        mode=FollowMode(row.mode),
        fixed_amount=row.fixed_amount,
        ratio=row.ratio,
        max_order_notional=row.max_order_notional,
        max_position_per_asset=row.max_position_per_asset,
        allowed_symbols=tuple(row.allowed_symbols) if row.allowed_symbols is not None else None,
        slippage_tolerance=row.slippage_tolerance,
        stop_loss_percent=row.stop_loss_percent,
        close_positions_on_stop_loss=row.close_on_stop_loss,
    )


def _store(row: Follow, params: FollowParameters) -> None:
    row.allocation = params.allocation
    row.mode = params.mode.value
    row.fixed_amount = params.fixed_amount
    row.ratio = params.ratio
    row.max_order_notional = params.max_order_notional
    row.max_position_per_asset = params.max_position_per_asset
    row.allowed_symbols = list(params.allowed_symbols) if params.allowed_symbols else None
    row.slippage_tolerance = params.slippage_tolerance
    row.stop_loss_percent = params.stop_loss_percent
    row.close_on_stop_loss = params.close_positions_on_stop_loss


_PARAMETER_NAMES = frozenset(f.name for f in fields(FollowParameters))
_SIZING = {FollowMode.FIXED_AMOUNT: "fixed_amount", FollowMode.FIXED_RATIO: "ratio"}


def merge_parameters(current: FollowParameters, changes: dict[str, Any]) -> FollowParameters:
    """``current`` with ``changes`` (parameter name -> new value; None clears an optional
    one). A new mode drops the old mode's sizing parameter unless it is given again."""
    unknown = set(changes) - _PARAMETER_NAMES
    if unknown:
        raise TypeError(f"not follow parameters: {sorted(unknown)}")
    merged = replace(current, **changes)
    if merged.mode is not current.mode:
        old = _SIZING.get(current.mode)
        if old is not None and old not in changes:
            merged = replace(merged, **{old: None})
    if merged.slippage_tolerance is None:
        merged = replace(merged, slippage_tolerance=rules.DEFAULT_SLIPPAGE)
    return merged


# --- checks inside the transaction --------------------------------------------------------


async def _lock_follower(session: AsyncSession, user_id: int | None) -> int:
    user = await lock_user(session, user_id) if user_id is not None else None
    if user is None:
        raise NotAuthenticated()
    return user.id


async def _leader_for_follow(session: AsyncSession, follower_id: int, leader_id: int) -> Leader:
    """The leader row (share-locked against a concurrent stopLeading), if this follower
    may follow it now."""
    if leader_id == follower_id:
        raise CannotFollowSelf(field="leaderId")
    leader = await session.scalar(
        select(Leader)
        .where(Leader.user_id == leader_id)
        .with_for_update(read=True)
        .execution_options(populate_existing=True)
    )
    if leader is None:
        raise NotALeader(field="leaderId")
    if leader.status != LeaderStatus.ACTIVE:
        raise LeaderStopped(field="leaderId")
    if leader.visibility == Visibility.INVITE_ONLY and not await is_invited(
        session, leader_id=leader_id, user_id=follower_id
    ):
        raise InviteRequired(field="leaderId")
    return leader


async def _refuse_if_leading(session: AsyncSession, follower_id: int) -> None:
    status = await session.scalar(select(Leader.status).where(Leader.user_id == follower_id))
    if status == LeaderStatus.ACTIVE:
        raise LeaderCannotFollow()


async def _balance(session: AsyncSession, *where: Any) -> Decimal:
    balance = await session.scalar(select(LedgerAccount.balance).where(*where))
    return balance if balance is not None else Decimal(0)


async def _available(session: AsyncSession, user_id: int, currency: str) -> Decimal:
    return await _balance(
        session,
        LedgerAccount.user_id == user_id,
        LedgerAccount.currency == currency,
        LedgerAccount.kind == AccountKind.AVAILABLE.value,
    )


async def _mirrored_free(session: AsyncSession, account_id: int, currency: str) -> Decimal:
    """What an exchange account holds free of ``currency`` there, as mirrored."""
    return await _balance(
        session,
        LedgerAccount.exchange_account_id == account_id,
        LedgerAccount.currency == currency,
        LedgerAccount.kind == AccountKind.EXCHANGE_FREE.value,
    )


EXCHANGE_ACCOUNT_FIELD = "exchangeAccountId"


async def _check_exchange_account(
    session: AsyncSession, follower_id: int, account_id: int | None
) -> None:
    """The follower's own ACTIVE connected account (``NotFound`` for anyone else's or a
    disconnected one), share-locked against a concurrent disconnect."""
    if account_id is None:
        return
    status = await session.scalar(
        select(ExchangeConnection.status)
        .where(ExchangeConnection.id == account_id, ExchangeConnection.user_id == follower_id)
        .with_for_update(read=True)
    )
    if status is None or status == "DISCONNECTED":
        raise NotFound("No such exchange account of yours", field=EXCHANGE_ACCOUNT_FIELD)
    if status != "ACTIVE":
        raise ValidationFailed("This exchange account is suspended", field=EXCHANGE_ACCOUNT_FIELD)


async def _check_allocation(
    session: AsyncSession,
    follower_id: int,
    leader: Leader,
    params: FollowParameters,
    exchange_account_id: int | None = None,
) -> None:
    if params.allocation < leader.minimum_allocation:
        raise BelowMinimumAllocation(
            f"This leader's minimum allocation is {leader.minimum_allocation.normalize():f}"
            f" {FOLLOW_QUOTE}",
            field="allocation",
        )
    if exchange_account_id is None:
        available = await _available(session, follower_id, FOLLOW_QUOTE)
        where = ""
    else:
        available = await _mirrored_free(session, exchange_account_id, FOLLOW_QUOTE)
        where = " at the exchange account"
    if params.allocation > available:
        raise InsufficientFunds(
            f"The allocation is above your available {available.normalize():f}"
            f" {FOLLOW_QUOTE}{where}",
            field="allocation",
        )


async def _check_symbols(session: AsyncSession, params: FollowParameters) -> None:
    if not params.allowed_symbols:
        return
    known = (
        await session.scalars(
            select(Market.symbol).where(Market.symbol.in_(list(params.allowed_symbols)))
        )
    ).all()
    missing = rules.unknown_symbols(params, known)
    if missing:
        raise UnknownMarket(f"No market {', '.join(missing)}", field="allowedSymbols")


async def _own_follow(session: AsyncSession, user_id: int, follow_id: int) -> Follow:
    """The follower's own follow, row-locked; ``NotFound`` for anyone else's."""
    row = await session.scalar(
        select(Follow)
        .where(Follow.id == follow_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if row is None or row.follower_id != user_id:
        raise NotFound(field="id")
    return row


# --- writes -------------------------------------------------------------------------------


async def follow_leader(
    rt: Runtime,
    *,
    user_id: int | None,
    leader_id: int,
    params: FollowParameters,
    exchange_account_id: int | None = None,
) -> Follow:
    """Start copying ``leader_id``: trades the leader opens from now on are copied (to
    ``exchange_account_id``, one of the follower's connected accounts, when given)."""
    params = rules.validate_follow(params)

    async def work(session: AsyncSession) -> Follow:
        follower_id = await _lock_follower(session, user_id)
        leader = await _leader_for_follow(session, follower_id, leader_id)
        await _refuse_if_leading(session, follower_id)
        live = await session.scalar(
            select(Follow.id).where(
                Follow.follower_id == follower_id,
                Follow.leader_id == leader_id,
                Follow.status != FollowStatus.STOPPED.value,
            )
        )
        if live is not None:
            raise AlreadyFollowing(field="leaderId")
        await _check_exchange_account(session, follower_id, exchange_account_id)
        await _check_allocation(session, follower_id, leader, params, exchange_account_id)
        await _check_symbols(session, params)
        now = rt.now()
        row = Follow(
            follower_id=follower_id,
            leader_id=leader_id,
            status=FollowStatus.ACTIVE.value,
            quote=FOLLOW_QUOTE,
            exchange_account_id=exchange_account_id,
            created_at=now,
            updated_at=now,
        )
        _store(row, params)
        session.add(row)
        await session.flush()
        followed = topics.NewFollower(follow_id=row.id, follower_id=follower_id)
        await outbox.write(session, topics.new_follower(leader_id, followed))
        return row

    return await in_transaction(rt.sessions, work)


async def update_follow(
    rt: Runtime, *, user_id: int | None, follow_id: int, changes: dict[str, Any]
) -> Follow:
    """New parameters for a live follow (``merge_parameters``), checked like a new one:
    the allocation against the leader's minimum and your available balance. The change
    ``exchange_account_id`` names another of your connected accounts (None: the
    platform); copies already planned go where they were planned for."""
    changes = dict(changes)
    account_change = "exchange_account_id" in changes
    new_account = changes.pop("exchange_account_id", None)

    async def work(session: AsyncSession) -> Follow:
        follower_id = await _lock_follower(session, user_id)
        row = await _own_follow(session, follower_id, follow_id)
        rules.follow_transition(FollowStatus(row.status), FollowAction.UPDATE)
        params = rules.validate_follow(merge_parameters(parameters_of(row), changes))
        leader = await session.get(Leader, row.leader_id)
        assert leader is not None
        account = new_account if account_change else row.exchange_account_id
        if account_change:
            await _check_exchange_account(session, follower_id, account)
        if params.allocation != row.allocation or account != row.exchange_account_id:
            await _check_allocation(session, follower_id, leader, params, account)
        await _check_symbols(session, params)
        row.exchange_account_id = account
        _store(row, params)
        row.updated_at = rt.now()
        await session.flush()
        return row

    return await in_transaction(rt.sessions, work)


async def pause_follow(rt: Runtime, *, user_id: int | None, follow_id: int) -> Follow:
    """ACTIVE -> PAUSED (reason USER): nothing new is copied; positions stay."""

    async def work(session: AsyncSession) -> Follow:
        row = await _own_follow(session, await _lock_follower(session, user_id), follow_id)
        row.status = rules.follow_transition(FollowStatus(row.status), FollowAction.PAUSE).value
        row.pause_reason = PauseReason.USER.value
        row.updated_at = rt.now()
        await session.flush()
        return row

    return await in_transaction(rt.sessions, work)


async def resume_follow(rt: Runtime, *, user_id: int | None, follow_id: int) -> Follow:
    """PAUSED -> ACTIVE, whatever paused it (a stop-loss pause is cleared too); refused
    while the leader is STOPPED."""

    async def work(session: AsyncSession) -> Follow:
        row = await _own_follow(session, await _lock_follower(session, user_id), follow_id)
        status = rules.follow_transition(FollowStatus(row.status), FollowAction.RESUME)
        leader_status = await session.scalar(
            select(Leader.status).where(Leader.user_id == row.leader_id)
        )
        if leader_status != LeaderStatus.ACTIVE:
            raise LeaderStopped(field="id")
        row.status = status.value
        row.pause_reason = None
        row.updated_at = rt.now()
        await session.flush()
        return row

    return await in_transaction(rt.sessions, work)


@dataclass(frozen=True)
class Unfollowed:
    follow: Follow
    closing_orders: list[Order]


async def unfollow_leader(
    rt: Runtime, *, user_id: int | None, follow_id: int, close_positions: bool = False
) -> Unfollowed:
    """STOPPED with ``ended_at``; nothing more is copied. With ``close_positions`` the
    follow's positions are then sold through the order path (the orders are returned);
    a follow on an exchange account is marked closing in this transaction, sold at the
    exchange after it (``exchange_close``, no platform orders returned) and gets its
    ``ended_at`` once sold."""

    async def work(session: AsyncSession) -> Follow:
        row = await _own_follow(session, await _lock_follower(session, user_id), follow_id)
        status = rules.follow_transition(FollowStatus(row.status), FollowAction.UNFOLLOW)
        row.status = status.value
        row.ended_at = row.updated_at = rt.now()
        if close_positions and row.exchange_account_id is not None:
            row.closing_at, row.ended_at = rt.now(), None  # ends when sold (exchange_close)
        await session.flush()
        return row

    row = await in_transaction(rt.sessions, work)
    orders: list[Order] = []
    if close_positions:
        from app.social.follow_close import close_follow_positions

        orders = await close_follow_positions(rt, follow_id=row.id)
    return Unfollowed(follow=row, closing_orders=orders)


# --- reads --------------------------------------------------------------------------------


async def follows_by_ids(session: AsyncSession, ids: Sequence[int]) -> list[Follow | None]:
    return await rows_by_ids(session, Follow, ids)


async def list_follows(
    session: AsyncSession,
    *,
    follower_id: int,
    statuses: Sequence[FollowStatus] = (),
    first: int,
    after: str | None,
) -> Page[Follow]:
    """A follower's follows, newest first."""
    statement: Select[tuple[Follow]] = select(Follow).where(Follow.follower_id == follower_id)
    if statuses:
        statement = statement.where(Follow.status.in_([s.value for s in statuses]))
    return await keyset_page(
        session, statement, key=Follow.id, first=first, after=after, descending=True
    )


async def list_followers(
    session: AsyncSession, *, leader_id: int, first: int, after: str | None
) -> Page[Follow]:
    """The live (ACTIVE or PAUSED) follows of a leader, newest first."""
    statement = select(Follow).where(
        Follow.leader_id == leader_id,
        Follow.status.in_([FollowStatus.ACTIVE.value, FollowStatus.PAUSED.value]),
    )
    return await keyset_page(
        session, statement, key=Follow.id, first=first, after=after, descending=True
    )


@dataclass(frozen=True)
class FollowStatistics:
    """Copy statistics of one follow, amounts in its quote currency.

    allocation_used  cost of what the follow holds (open follow positions)
    unrealized_pnl   those positions at their markets' last prices, less cost
    roi              pnl / allocation
    fidelity         roi / the leader's return over the same period (equity snapshots
                     from the last one at or before the follow's start to the latest one
                     before its end); None when that return is unknown or zero"""

    copied: int
    skipped: int
    skipped_by_reason: list[tuple[str, int]]
    allocation_used: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    pnl: Decimal
    roi: Decimal | None
    fidelity: Decimal | None


_COPY_COUNTS = """
    SELECT follow_id, status, reason, count(*) AS n FROM copies
    WHERE follow_id = ANY($1::bigint[]) AND status IN ('PLACED', 'SKIPPED')
    GROUP BY follow_id, status, reason ORDER BY follow_id, reason
"""
_POSITIONS = """
    SELECT p.follow_id, p.quantity, p.cost, p.realized_pnl, m.last_price
    FROM follow_positions p
    JOIN follows f ON f.id = p.follow_id
    LEFT JOIN markets m ON m.base = p.currency AND m.quote = f.quote
    WHERE p.follow_id = ANY($1::bigint[])
"""
# The leader's equity at the follow's start: the last snapshot at or before it, else the
# first after it; at its end: the latest snapshot up to ended_at (or now).
_LEADER_EQUITY = """
    SELECT f.id,
      coalesce(
        (SELECT s.equity_usd FROM equity_snapshots s
         WHERE s.user_id = f.leader_id AND s.taken_at <= f.created_at
         ORDER BY s.taken_at DESC LIMIT 1),
        (SELECT s.equity_usd FROM equity_snapshots s
         WHERE s.user_id = f.leader_id AND s.taken_at > f.created_at
           AND (f.ended_at IS NULL OR s.taken_at <= f.ended_at)
         ORDER BY s.taken_at LIMIT 1)) AS start_equity,
      (SELECT s.equity_usd FROM equity_snapshots s
       WHERE s.user_id = f.leader_id AND s.taken_at > f.created_at
         AND (f.ended_at IS NULL OR s.taken_at <= f.ended_at)
       ORDER BY s.taken_at DESC LIMIT 1) AS end_equity
    FROM follows f WHERE f.id = ANY($1::bigint[])
"""


async def follow_statistics(
    session: AsyncSession, follows: Sequence[Follow]
) -> list[FollowStatistics]:
    """Statistics of ``follows`` in their order: three statements for any number."""
    ids = [f.id for f in follows]
    connection = await driver(session)
    counts = await connection.fetch(_COPY_COUNTS, ids)
    positions = await connection.fetch(_POSITIONS, ids)
    equity = {r["id"]: r for r in await connection.fetch(_LEADER_EQUITY, ids)}
    counts_of: dict[int, list[Any]] = {}
    for r in counts:
        counts_of.setdefault(r["follow_id"], []).append(r)
    held_of: dict[int, list[Any]] = {}
    for r in positions:
        held_of.setdefault(r["follow_id"], []).append(r)
    result = []
    for follow in follows:
        mine = counts_of.get(follow.id, [])
        held = held_of.get(follow.id, [])
        open_positions = [
            HeldPosition(quantity=r["quantity"], cost=r["cost"], last_price=r["last_price"])
            for r in held
            if r["quantity"] > 0
        ]
        realized = sum((r["realized_pnl"] for r in held), Decimal(0))
        unrealized = rules.unrealized_pnl(open_positions)
        pnl = realized + unrealized
        roi = rules.ratio(pnl, follow.allocation)
        start = equity.get(follow.id)
        leader_ret = (
            rules.leader_return(start["start_equity"], start["end_equity"]) if start else None
        )
        result.append(
            FollowStatistics(
                copied=sum(r["n"] for r in mine if r["status"] == "PLACED"),
                skipped=sum(r["n"] for r in mine if r["status"] == "SKIPPED"),
                skipped_by_reason=[
                    (r["reason"] or "UNKNOWN", r["n"]) for r in mine if r["status"] == "SKIPPED"
                ],
                allocation_used=sum((p.cost for p in open_positions), Decimal(0)),
                realized_pnl=realized,
                unrealized_pnl=unrealized,
                pnl=pnl,
                roi=roi,
                fidelity=rules.fidelity(pnl / follow.allocation, leader_ret),
            )
        )
    return result
