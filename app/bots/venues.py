"""Where a bot trades: the parts of the runner that depend on the venue, as a small
protocol (``BotVenue``) with a live, a paper and an exchange implementation. Everything else a step
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

                 EXCHANGE (``exchange_account_id``: the owner's connected account)
    read         its orders in ``exchange_orders`` (by the digest of its client order
                 ids the exchange is sent: ``app.exchanges.venue.exchange_client_id``)
                 and their fills in ``exchange_fills`` (an order reads as filled only
                 as far as its fills are recorded: it ends once they all are)
    send         ``ExchangeVenue`` (``app.exchanges.orders``: the exchange's market
                 rules, the owner's risk scopes and the bot's, sent once), within the
                 bot's budget (``ExchangeBudget``)
    stopped      nothing to move: the money stays at the exchange

A bot's row names exactly one of the three accounts (CHECK ``one_venue``); ``venue_of``
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

from app.core.errors import InsufficientFunds, UserError
from app.exchanges.domain.orders import LIVE as EXCHANGE_LIVE
from app.exchanges.venue import ExchangeVenue, exchange_client_id_sql
from app.ledger import journal as ledger
from app.ledger.rules import move
from app.paper import orders as paper_orders
from app.runtime import Runtime
from app.trading.domain.orders import LIVE_STATUSES, OrderRequest, OrderStatus, Side
from app.venues.domain.venue import OrderAck
from app.venues.live import LiveVenue
from db.raw import driver

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


class _Reads:
    """The reads every venue does alike: its ``_ORDERS`` statement ($1 the accounts, $2
    the client order ids, then ``_ORDER_ARGS``) and its ``_FILLS`` ($1 the order ids),
    the bot's account in its column ``_ACCOUNT``."""

    _ACCOUNT = ""
    _ORDERS = _FILLS = ""
    _ORDER_ARGS: tuple[Any, ...] = ()

    def account(self, bot: Mapping[str, Any]) -> int | None:
        account: int | None = bot[self._ACCOUNT]
        return account

    async def orders(self, connection: Any, keys: Sequence[tuple[int, str]]) -> Sequence[Any]:
        result: Sequence[Any] = await connection.fetch(
            self._ORDERS, [k[0] for k in keys], [k[1] for k in keys], *self._ORDER_ARGS
        )
        return result

    async def fills(self, connection: Any, order_ids: Sequence[int]) -> Sequence[Any]:
        result: Sequence[Any] = await connection.fetch(self._FILLS, list(order_ids))
        return result


class LiveBots(_Reads):
    """A bot trading as its sub-account on the platform's own venue."""

    _ACCOUNT = "account_id"

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


class PaperBots(_Reads):
    """A paper bot: play money on a paper account of its own, its orders on that
    account's simulated venue (``app.paper``), filled by the live market's trades."""

    _ACCOUNT = "paper_account_id"
    _ORDER_ARGS = (_LIVE,)

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


# The client order id an exchange is sent for a bot's (``exchange_client_id``), in SQL
_sent_id = exchange_client_id_sql


_EXCHANGE_LIVE = sorted(s.value for s in EXCHANGE_LIVE)


class ExchangeBots(_Reads):
    """A bot on its owner's connected exchange account: no sub-account, its budget
    bounds what its orders commit (``ExchangeBudget``)."""

    _ACCOUNT = "exchange_account_id"

    # an ended order whose fills are not all recorded yet reads as PARTIALLY_FILLED, and
    # its filled quantity is its recorded fills': it ends when the last is recorded
    _ORDERS = f"""
        SELECT o.id, o.connection_id AS account, w.client_order_id,
               CASE WHEN o.status = 'PENDING_SUBMIT' THEN 'NEW'
                    WHEN o.status = 'ARMED' THEN 'UNTRIGGERED'
                    WHEN o.status IN ('FILLED', 'CANCELED') AND f.recorded < o.filled
                        THEN 'PARTIALLY_FILLED'
                    ELSE o.status END AS status,
               o.quantity, f.recorded AS filled_quantity, o.reject_code AS reason
        FROM unnest($1::bigint[], $2::text[]) AS w(connection_id, client_order_id)
        JOIN exchange_orders o ON o.connection_id = w.connection_id
             AND o.client_order_id = {_sent_id("w.client_order_id")}
        CROSS JOIN LATERAL (
            SELECT coalesce(sum(x.quantity), 0) AS recorded
            FROM exchange_fills x WHERE x.order_id = o.id
        ) f
    """  # noqa: S608 (our constant)
    # the fee in the quote (one the exchange took in the base, at the fill's price)
    _FILLS = """
        SELECT f.id, f.order_id, o.side, f.price, f.quantity,
               CASE WHEN f.fee_currency = split_part(o.symbol, '/', 1)
                    THEN f.fee * f.price ELSE f.fee END AS fee,
               f.filled_at AS created_at
        FROM exchange_fills f JOIN exchange_orders o ON o.id = f.order_id
        WHERE f.order_id = ANY($1::bigint[]) ORDER BY f.order_id, f.id
    """

    def sender(self, rt: Runtime, bot: Mapping[str, Any]) -> Sender:
        venue = ExchangeVenue(
            rt, user_id=bot["user_id"], account_id=bot["exchange_account_id"],
            bot_id=bot["bot_id"],
        )  # fmt: skip
        return ExchangeBudget(rt, venue, bot_id=bot["bot_id"], budget=bot["budget"])

    async def release(self, session: AsyncSession, connection: Any, bot: Mapping[str, Any]) -> None:
        """Nothing to move: the money stays at the exchange."""


class ExchangeBudget:
    """An exchange bot's sends, within its budget (at the exchange no sub-account holds
    it apart): a buy is refused (``INSUFFICIENT_FUNDS``, an ack: the bot's decision)
    when what the bot's buys have spent and its live buys commit (at their limit or
    worst price, fees included), less what its sells brought back, would pass its
    budget; a sell, when it would sell more of the base than its buys got."""

    _COMMITTED = f"""
        SELECT coalesce(sum(CASE WHEN o.side = 'BUY' THEN f.value + f.fee + CASE
                   WHEN o.status = ANY($3::text[])
                   THEN (o.quantity - o.filled) * coalesce(o.price, 0) ELSE 0 END
               ELSE f.fee - f.value END), 0) AS spent,
               coalesce(sum(CASE WHEN o.side = 'BUY' THEN f.quantity
                   WHEN o.status = ANY($3::text[]) THEN -o.quantity
                   ELSE -f.quantity END), 0) AS held
        FROM bot_commands c
        JOIN exchange_orders o ON o.connection_id = $2
             AND o.client_order_id = {_sent_id("c.client_order_id")}
        CROSS JOIN LATERAL (
            SELECT coalesce(sum(x.price * x.quantity), 0) AS value,
                   coalesce(sum(x.quantity), 0) AS quantity,
                   coalesce(sum(CASE WHEN x.fee_currency = split_part(o.symbol, '/', 1)
                                     THEN x.fee * x.price ELSE x.fee END), 0) AS fee
            FROM exchange_fills x WHERE x.order_id = o.id
        ) f
        WHERE c.bot_id = $1 AND c.kind = 'PLACE'
    """  # noqa: S608 (our constant)

    def __init__(self, rt: Runtime, venue: ExchangeVenue, *, bot_id: int, budget: Any) -> None:
        self.rt = rt
        self.venue = venue
        self.bot_id = bot_id
        self.budget = budget

    async def _committed(self) -> tuple[Any, Any]:
        async with self.rt.reads() as session:
            connection = await driver(session)
            row = await connection.fetchrow(
                self._COMMITTED, self.bot_id, self.venue.account_id, _EXCHANGE_LIVE
            )
        return row["spent"], row["held"]

    async def submit(self, *, symbol: str, client_order_id: str, request: OrderRequest) -> OrderAck:
        spent, held = await self._committed()
        price = request.price or request.worst_price or request.stop_price
        if request.side is Side.BUY:
            cost = request.quantity * (price or 0)
            over = price is None or spent + cost > self.budget
        else:
            over = request.quantity > held
        if over and await self.venue.order_of(client_order_id) is None:
            return OrderAck(client_order_id, None, None, InsufficientFunds.code)
        return await self.venue.submit(
            symbol=symbol, client_order_id=client_order_id, request=request
        )

    async def cancel(self, *, client_order_id: str) -> OrderAck:
        return await self.venue.cancel(client_order_id=client_order_id)


LIVE = LiveBots()
PAPER = PaperBots()
EXCHANGE = ExchangeBots()
VENUES: tuple[BotVenue, ...] = (LIVE, PAPER, EXCHANGE)


def venue_of(bot: Mapping[str, Any]) -> BotVenue:
    """Where the bot trades (its row names exactly one account)."""
    if bot["paper_account_id"] is not None:
        return PAPER
    return EXCHANGE if bot["exchange_account_id"] is not None else LIVE
