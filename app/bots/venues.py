"""Where a bot trades: the parts of the runner that depend on the venue, as a small
protocol (``BotVenue``) with a live and a paper implementation. Everything else a step
does (locking the bots, the machines, storing state, decisions and commands) is the
same for both, so a bot runs unchanged on either.

                 LIVE (``account_id``: a sub-account)   PAPER (``paper_account_id``)
    read         its orders and their fills in          its paper account's
                 ``orders`` / ``fills``                  ``paper_orders`` / ``paper_fills``
                                                         (orders a reset or a close left
                                                         behind read as CANCELED)
    send         ``LiveVenue`` as the sub-account        ``app.paper.orders`` as the owner
                                                         on the paper account
    stopped      the sub-account's money back to its     nothing: play money stays on its
                 owner (BOT_RELEASE)                     paper account, readable

A bot's row names exactly one of the two accounts (CHECK ``one_venue``); ``venue_of``
says which. The reads take every tracked order of a batch's bots on one venue in one
statement, and their fills in one more, so a batch costs the same statements however
many bots it holds.

Both reads answer with the same columns: an order's ``id`` (unique on its venue: the
row's id), ``account``, ``client_order_id``, ``status``, ``quantity``,
``filled_quantity``, ``reason``; a fill's ``id`` (increasing in the order it was made),
``order_id`` (that order ``id``), ``side``, ``price``, ``quantity``, ``fee`` (in the
quote) and ``created_at`` (when it was made: a paper fill's simulated time).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import UserError
from app.ledger import journal as ledger
from app.ledger.rules import move
from app.paper import orders as paper_orders
from app.runtime import Runtime
from app.trading.domain.orders import LIVE_STATUSES, OrderRequest, OrderStatus
from app.venues.domain.venue import OrderAck
from app.venues.live import LiveVenue

_LIVE = [s.value for s in LIVE_STATUSES]


class Sender(Protocol):
    """What sending a bot's commands needs of a venue (``LiveVenue`` is one)."""

    async def submit(
        self, *, symbol: str, client_order_id: str, request: OrderRequest
    ) -> OrderAck: ...

    async def cancel(self, *, client_order_id: str) -> OrderAck: ...


class BotVenue(Protocol):
    def account(self, bot: Mapping[str, Any]) -> int | None:
        """The account the bot trades as here (None: the bot trades elsewhere)."""

    async def orders(self, connection: Any, keys: Sequence[tuple[int, str]]) -> Sequence[Any]:
        """The orders of ``keys`` (account, client order id) that exist."""

    async def fills(self, connection: Any, order_ids: Sequence[int]) -> Sequence[Any]:
        """Those orders' fills, by order, oldest first."""

    def sender(self, rt: Runtime, bot: Mapping[str, Any]) -> Sender:
        """What sends the bot's commands (``bot``: its ``user_id`` and accounts)."""

    async def release(self, session: AsyncSession, connection: Any, bot: Mapping[str, Any]) -> None:
        """What a bot that has STOPPED gives back (``bot``: its ``id``, ``user_id`` and
        accounts)."""


class LiveBots:
    """A bot trading as its sub-account on the platform's own venue."""

    _ORDERS = """
        SELECT o.id, o.user_id AS account, o.client_order_id, o.status, o.quantity,
               o.filled_quantity, o.reason
        FROM unnest($1::bigint[], $2::text[]) AS w(user_id, client_order_id)
        JOIN orders o ON o.user_id = w.user_id AND o.client_order_id = w.client_order_id
    """
    _FILLS = """
        SELECT id, order_id, side, price, quantity, fee, created_at
        FROM fills WHERE order_id = ANY($1::bigint[]) ORDER BY order_id, id
    """
    _BALANCES = """
        SELECT currency, balance FROM ledger_accounts
        WHERE user_id = $1 AND kind = 'AVAILABLE' AND balance > 0 ORDER BY currency
    """

    def account(self, bot: Mapping[str, Any]) -> int | None:
        account: int | None = bot["account_id"]
        return account

    async def orders(self, connection: Any, keys: Sequence[tuple[int, str]]) -> Sequence[Any]:
        result: Sequence[Any] = await connection.fetch(
            self._ORDERS, [k[0] for k in keys], [k[1] for k in keys]
        )
        return result

    async def fills(self, connection: Any, order_ids: Sequence[int]) -> Sequence[Any]:
        result: Sequence[Any] = await connection.fetch(self._FILLS, list(order_ids))
        return result

    def sender(self, rt: Runtime, bot: Mapping[str, Any]) -> Sender:
        return LiveVenue(rt, user_id=bot["account_id"])

    async def release(self, session: AsyncSession, connection: Any, bot: Mapping[str, Any]) -> None:
        """The sub-account, emptied back into its owner's wallet."""
        account, owner = bot["account_id"], bot["user_id"]
        legs = []
        for row in await connection.fetch(self._BALANCES, account):
            legs.extend(move(
                row["balance"],
                ledger.user_account(account, row["currency"]),
                ledger.user_account(owner, row["currency"]),
            ))  # fmt: skip
        if legs:
            await ledger.post(session, kind="BOT_RELEASE", legs=legs, reference=f"bot:{bot['id']}")
        await connection.execute("UPDATE bots SET released_at = now() WHERE id = $1", bot["id"])


class PaperBots:
    """A paper bot: play money on a paper account of its own, its orders on that
    account's simulated venue (``app.paper``), filled by the live market's trades."""

    # The latest run's row of each order. A reset starts a new run and a close ends the
    # account: the bot's orders still live in an earlier run, or on a closed account,
    # will never trade, so they read as CANCELED (the bot may then end, or place again).
    _ORDERS = """
        SELECT o.id, a.id AS account, o.client_order_id,
               CASE WHEN o.live AND a.status <> 'OPEN' THEN 'CANCELED'
                    WHEN o.live AND o.generation <> a.generation THEN 'CANCELED'
                    ELSE o.status END AS status,
               o.quantity, o.filled_quantity,
               CASE WHEN o.live AND a.status <> 'OPEN' THEN 'PAPER_ACCOUNT_CLOSED'
                    WHEN o.live AND o.generation <> a.generation THEN 'PAPER_ACCOUNT_RESET'
                    ELSE o.reason END AS reason
        FROM unnest($1::bigint[], $2::text[]) AS w(paper_account_id, client_order_id)
        JOIN paper_accounts a ON a.id = w.paper_account_id
        CROSS JOIN LATERAL (
            SELECT o.id, o.client_order_id, o.status, o.quantity, o.filled_quantity,
                   o.reason, o.generation, o.status = ANY($3::text[]) AS live
            FROM paper_orders o
            WHERE o.paper_account_id = a.id AND o.client_order_id = w.client_order_id
            ORDER BY o.generation DESC LIMIT 1
        ) o
    """
    _FILLS = """
        SELECT f.id, o.id AS order_id, f.side, f.price, f.quantity, f.fee,
               f.filled_at AS created_at
        FROM paper_orders o
        JOIN paper_fills f ON f.paper_account_id = o.paper_account_id
                          AND f.generation = o.generation AND f.order_id = o.order_id
        WHERE o.id = ANY($1::bigint[]) ORDER BY o.id, f.id
    """

    def account(self, bot: Mapping[str, Any]) -> int | None:
        account: int | None = bot["paper_account_id"]
        return account

    async def orders(self, connection: Any, keys: Sequence[tuple[int, str]]) -> Sequence[Any]:
        result: Sequence[Any] = await connection.fetch(
            self._ORDERS, [k[0] for k in keys], [k[1] for k in keys], _LIVE
        )
        return result

    async def fills(self, connection: Any, order_ids: Sequence[int]) -> Sequence[Any]:
        result: Sequence[Any] = await connection.fetch(self._FILLS, list(order_ids))
        return result

    def sender(self, rt: Runtime, bot: Mapping[str, Any]) -> Sender:
        return PaperSender(rt, owner=bot["user_id"], paper_account_id=bot["paper_account_id"])

    async def release(self, session: AsyncSession, connection: Any, bot: Mapping[str, Any]) -> None:
        """Nothing: play money is nobody's to give back."""


class PaperSender:
    """A paper account's orders as a ``Sender``: each command is a paper step of its own
    (``app.paper.orders``, as the account's owner); a refusal is an ack with the code."""

    def __init__(self, rt: Runtime, *, owner: int, paper_account_id: int) -> None:
        self.rt = rt
        self.owner = owner
        self.paper_account_id = paper_account_id

    async def submit(self, *, symbol: str, client_order_id: str, request: OrderRequest) -> OrderAck:
        try:
            order = await paper_orders.place_order(
                self.rt, user_id=self.owner, paper_account_id=self.paper_account_id,
                request=request, client_order_id=client_order_id,
            )  # fmt: skip
        except UserError as error:
            return OrderAck(client_order_id, None, None, error.code)
        return OrderAck(client_order_id, order.id, OrderStatus(order.status))

    async def cancel(self, *, client_order_id: str) -> OrderAck:
        try:
            order = await paper_orders.cancel_order(
                self.rt, user_id=self.owner, paper_account_id=self.paper_account_id,
                client_order_id=client_order_id,
            )  # fmt: skip
        except UserError as error:
            return OrderAck(client_order_id, None, None, error.code)
        return OrderAck(client_order_id, order.id, OrderStatus(order.status))


LIVE = LiveBots()
PAPER = PaperBots()
VENUES: tuple[BotVenue, ...] = (LIVE, PAPER)


def venue_of(bot: Mapping[str, Any]) -> BotVenue:
    """Where the bot trades (its row names exactly one account)."""
    return PAPER if bot["paper_account_id"] is not None else LIVE
