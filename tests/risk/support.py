"""Helpers for the risk engine's tests: a scope's state by hand, an admin, a statement,
a bot of a user's (a sub-account, as the bots' service makes one) and a follow holding a
copy position."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, update

from app.bots.domain.codec import to_json
from app.bots.domain.signal_bot import SignalState
from app.paper import accounts as paper_accounts
from app.risk import limits, transitions
from app.risk.domain.limits import Action, LimitKind
from app.risk.domain.states import RiskState, Scope, ScopeRef, event_towards
from app.risk.limits import LimitRequest, Target
from app.runtime import Runtime
from db.models import Bot, Follow, FollowPosition, Leader, User
from db.raw import driver
from tests.support.bots import signal_settings
from tests.support.money import fund
from tests.support.trading import funded_user, reload, scalar, trade_at

_leaders = itertools.count(1)


async def set_limit(
    rt: Runtime,
    uid: int,
    kind: LimitKind,
    threshold: Any,
    action: Action | None = None,
    target: Target | None = None,
    **more: Any,
) -> Any:
    """``uid`` sets a limit through the service ``setRiskLimit`` calls: by default at their
    USER scope, blocking entries; ``more``: the request's other fields (warn ratio,
    cooldown)."""
    request = LimitRequest(
        target or Target(Scope.USER), kind, Decimal(str(threshold)),
        action or Action.BLOCK_ENTRIES, **more,
    )  # fmt: skip
    return await limits.set_limit(rt, user_id=uid, request=request)


def kinds(answers: Any) -> list[str]:
    """The type names of placements' answers (orders and the errors raised), sorted."""
    return sorted(type(a).__name__ for a in answers)


@dataclass(frozen=True)
class TradingBot:
    id: int
    owner: int
    account: int  # its sub-account: the user its orders are placed as


async def trading_bot(rt: Runtime, owner: int, name: str = "bot", **amounts: str) -> TradingBot:
    """A paused bot of ``owner``'s with a sub-account (``owner_id``) holding ``amounts``:
    its orders are placed as the sub-account (nothing steps it)."""
    async with rt.sessions() as session, session.begin():
        account = await session.scalar(
            insert(User)
            .values(email=f"{name}-{owner}@bots.invalid", display_name=name, password_hash="!",
                    owner_id=owner)
            .returning(User.id)
        )  # fmt: skip
        bot_id = await session.scalar(
            insert(Bot)
            .values(
                user_id=owner, account_id=account, kind="SIGNAL", name=name,
                symbols=["BTC/USDT"], quote="USDT", budget=Decimal(1000),
                allocation={"USDT": "1000"}, settings=to_json(signal_settings()),
                state=to_json(SignalState()), paused=True,
            )
            .returning(Bot.id)
        )  # fmt: skip
    assert account is not None and bot_id is not None
    for currency, amount in amounts.items():
        await fund(rt, account, currency, amount)
    return TradingBot(bot_id, owner, account)


async def paper_bot(rt: Runtime, owner: int) -> int:
    """A paper bot of ``owner``'s (a paper account, no sub-account): its id."""
    async with rt.sessions() as session, session.begin():
        account = await paper_accounts.open_account_in(
            session, user_id=owner, name="paper", symbol="BTC/USDT",
            balances={"USDT": Decimal(1000)}, now=rt.now(),
        )  # fmt: skip
        bot_id = await session.scalar(
            insert(Bot)
            .values(
                user_id=owner, paper_account_id=account.id, kind="SIGNAL", name="paper",
                symbols=["BTC/USDT"], quote="USDT", budget=Decimal(1000),
                allocation={"USDT": "1000"}, settings=to_json(signal_settings()),
                state=to_json(SignalState()), paused=True,
            )
            .returning(Bot.id)
        )  # fmt: skip
    assert bot_id is not None
    return bot_id


async def copy_position(
    rt: Runtime, follower: int, *, quantity: str, cost: str, currency: str = "BTC"
) -> int:
    """A follow of ``follower``'s (of a new leader) holding a copy position of
    ``quantity`` ``currency`` that cost ``cost`` USDT, as the copy-positions consumer
    keeps it; its id."""
    leader = await funded_user(rt, f"leader-{next(_leaders)}")
    async with rt.sessions() as session, session.begin():
        await session.execute(
            insert(Leader).values(user_id=leader, display_name="Lea", profit_share_percent=10,
                                  minimum_allocation=10)
        )  # fmt: skip
        follow_id = await session.scalar(
            insert(Follow)
            .values(follower_id=follower, leader_id=leader, mode="FIXED_AMOUNT",
                    allocation=Decimal(500), fixed_amount=Decimal(50))
            .returning(Follow.id)
        )  # fmt: skip
        assert follow_id is not None
        await session.execute(
            insert(FollowPosition).values(follow_id=follow_id, currency=currency,
                                          quantity=Decimal(quantity), cost=Decimal(cost))
        )  # fmt: skip
    return follow_id


async def force_state(rt: Runtime, ref: ScopeRef, state: RiskState, reason: str) -> None:
    """Move ``ref`` to ``state`` through the one writer (as a trigger would)."""
    async with rt.sessions() as session, session.begin():
        row = (await transitions.lock_states(session, [ref]))[ref]
        await transitions.move(
            session, ref, RiskState(row["state"]), event_towards(state), reason=reason
        )


async def make_admin(rt: Runtime, name: str = "root") -> int:
    uid = await funded_user(rt, name)
    async with rt.sessions() as session, session.begin():
        await session.execute(update(User).where(User.id == uid).values(role="ADMIN"))
    return uid


async def execute(rt: Runtime, sql: str, *args: Any) -> None:
    async with rt.sessions() as session, session.begin():
        await (await driver(session)).execute(sql, *args)


async def state(rt: Runtime, scope: Scope, scope_id: int) -> str | None:
    """A scope's stored state (None: never moved)."""
    return await scalar(
        rt, "SELECT state FROM risk_states WHERE scope = $1 AND scope_id = $2",
        scope.value, scope_id,
    )  # fmt: skip


async def canceled(rt: Runtime, order_id: int) -> bool:
    return (await reload(rt, order_id)).status == "CANCELED"


async def fall_to_86(rt: Runtime, maker: int) -> None:
    """Two trades between others take BTC from 100 to 86."""
    other = await funded_user(rt, "other", USDT="1000")
    await trade_at(rt, maker, other, "95", "0.1")
    await trade_at(rt, maker, other, "86", "0.1")
