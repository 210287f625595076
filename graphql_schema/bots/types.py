"""The ``Bot`` node (visible to its owner only) with its figures, its trades, open orders
and decisions (each through the request's DataLoaders, one per venue: a page of bots,
live and paper, costs the same statements for one bot of each as for many), its
decisions' connection and the bots' enums.

Figures are in the bot's quote currency (``app.bots.reads``): ``equity`` is what its
sub-account holds valued at each market's last price (once stopped: what it gave back),
``budget`` what it was given, ``pnl = equity - budget = realisedPnl + unrealisedPnl``. A
paper bot's holdings, trades and open orders are its paper account's (current run); an
exchange bot's holdings, trades and open orders are its exchange orders' and their
fills', its holdings valued at its exchange's last price the platform keeps (``reads``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import fields, is_dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

import strawberry
from strawberry import relay
from strawberry.relay.utils import to_base64
from strawberry.types import Info

from app.bots import reads
from app.bots.domain import dca_settings, grid_settings, rebalance, runtime
from app.bots.domain.machines import read_settings
from app.http.webhooks import BOT_HOOKS
from app.trading.markets import MarketRow
from db.models import Bot as BotRow
from db.models import BotDecision as DecisionRow
from db.models import ExchangeFill as ExchangeFillRow
from db.models import Fill as FillRow
from db.models import PaperFill as PaperFillRow
from db.queries import page_key
from graphql_schema.bots.orders import BotOrder, BotTrade, BotTradeConnection
from graphql_schema.enums import derived_enum
from graphql_schema.ids import node_keys
from graphql_schema.paging import to_connection
from graphql_schema.paper.types import PaperAccountNode
from graphql_schema.scalars import serialize_decimal
from graphql_schema.trading.markets import market_specs

BOT = "Bot"
WEBHOOK_PATH = BOT_HOOKS  # + the bot's webhook token

BotKind = derived_enum(
    runtime.BotKind,
    name="BotKind",
    description="DCA: dollar-cost averaging with safety orders; GRID: buys and sells on"
    " price lines; SIGNAL: trades on TradingView alerts; REBALANCE: holds assets at"
    " target weights.",
)
BotDecisionAction = derived_enum(runtime.Action, name="BotDecisionAction")
GridSpacing = derived_enum(grid_settings.Spacing, name="GridSpacing")
GridAtBounds = derived_enum(
    grid_settings.AtBounds,
    name="GridAtBounds",
    description="What a grid does when the price leaves its range: WAIT for it to come"
    " back, STOP, or TRAIL_UP (above the top, its lowest level moves to the top).",
)
DcaStartCondition = derived_enum(
    dca_settings.StartCondition,
    name="DcaStartCondition",
    description="IMMEDIATELY: a deal starts as soon as one may; SIGNAL: on a BUY alert.",
)
RebalanceTrigger = derived_enum(rebalance.RebalanceTrigger, name="RebalanceTrigger")


@strawberry.enum(
    name="BotStatus",
    description="RUNNING; PAUSED (not stepped, its resting orders stay); STOPPING (its"
    " orders being canceled, its position sold when asked); STOPPED (every order ended,"
    " its money back with its owner; a paper bot's play money stays on its paper"
    " account). A paused bot shows PAUSED unless it has STOPPED.",
)
class BotStatus(Enum):
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"


def api_status(status: str, paused: bool) -> BotStatus:
    if paused and status != runtime.BotStatus.STOPPED.value:
        return BotStatus.PAUSED
    return BotStatus(status)


def bot_gid(pk: int) -> strawberry.ID:
    return strawberry.ID(to_base64(BOT, pk))


def webhook_url(info: Info, token: str | None) -> str | None:
    if token is None:
        return None
    return f"{info.context.rt.settings.public_url.rstrip('/')}{WEBHOOK_PATH}{token}"


def settings_json(value: Any) -> Any:
    """Settings as ``createBot``'s input names them: camelCase keys, durations in whole
    seconds (``cooldownSeconds``), amounts as strings."""
    if is_dataclass(value) and not isinstance(value, type):
        shown: dict[str, Any] = {}
        for f in fields(value):
            item = getattr(value, f.name)
            head, *rest = f.name.split("_")
            name = head + "".join(part.title() for part in rest)
            if isinstance(item, timedelta):
                shown[f"{name}Seconds"] = int(item.total_seconds())
            else:
                shown[name] = settings_json(item)
        return shown
    if isinstance(value, tuple):
        return [settings_json(item) for item in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return serialize_decimal(value)
    return value


@strawberry.type
class BotAmount:
    currency: str
    amount: Decimal


def amounts(values: Mapping[str, Decimal]) -> list[BotAmount]:
    return [BotAmount(currency=c, amount=a.normalize()) for c, a in sorted(values.items())]


@strawberry.type
class BotDecision:
    """What the bot decided and why, in the order it decided."""

    at: datetime
    action: BotDecisionAction  # type: ignore[valid-type]
    reason: str
    client_order_id: str | None = strawberry.field(description="The order it is about.")

    @classmethod
    def from_row(cls, row: DecisionRow) -> BotDecision:
        return cls(at=row.at, action=BotDecisionAction(row.action), reason=row.reason,
                   client_order_id=row.client_order_id)  # fmt: skip


@strawberry.type
class BotDecisionConnection(relay.Connection[BotDecision]):
    """A bot's decisions, newest first, paged by keyset cursor."""


@strawberry.type(name="Bot")
class BotNode(relay.Node):
    """A trading bot: a state machine trading its budget in a sub-account of its own,
    (`paper`) play money on a paper account of its own, or (`exchangeAccountId`) on one
    of its owner's connected exchange accounts. Visible to its owner only. Figures are in
    its quote currency."""

    id: relay.NodeID[int]
    kind: BotKind  # type: ignore[valid-type]
    name: str
    status: BotStatus
    symbols: list[str] = strawberry.field(description="Its markets (a rebalance bot: all).")
    quote_currency: str
    steps: int = strawberry.field(description="How many steps it has taken.")
    ip_allowlist: list[str] = strawberry.field(
        description="Where its webhook takes alerts from (empty: anywhere)."
    )
    paper: bool = strawberry.field(
        description="It trades play money on a paper account of its own (`paperAccount`):"
        " its holdings, trades and open orders are that account's current run's."
    )
    created_at: datetime
    stopped_at: datetime | None
    _row: strawberry.Private[BotRow]
    _figures: strawberry.Private[dict[str, reads.Figures]]

    @classmethod
    def from_row(cls, row: BotRow) -> BotNode:
        return cls(
            id=row.id, kind=BotKind(row.kind), name=row.name,
            status=api_status(row.status, row.paused), symbols=list(row.symbols),
            quote_currency=row.quote, steps=row.steps, ip_allowlist=list(row.ip_allowlist),
            paper=row.paper_account_id is not None, created_at=row.created_at,
            stopped_at=row.stopped_at, _row=row, _figures={},
        )  # fmt: skip

    @strawberry.field(
        description="The connected exchange account it trades on (an ExchangeAccount id;"
        " null for a bot on the platform). Its orders and fills there are that account's"
        " `orders`; its holdings, figures, trades and open orders here are counted from"
        " them."
    )
    def exchange_account_id(self) -> strawberry.ID | None:
        pk = self._row.exchange_account_id
        return (
            None if pk is None else strawberry.ID(str(relay.GlobalID("ExchangeAccount", str(pk))))
        )

    @strawberry.field(description="Its settings as createBot took them (amounts as strings).")
    def settings(self) -> strawberry.scalars.JSON:
        kind = runtime.BotKind(self._row.kind)
        return settings_json(read_settings(kind, self._row.settings))

    @strawberry.field(
        description="Where TradingView (or anyone with its secret) sends its alerts: the"
        " alert's JSON carries the secret createBot showed once. Null for a bot that"
        " takes no alerts."
    )
    def webhook_url(self, info: Info) -> str | None:
        return webhook_url(info, self._row.webhook_token)

    @strawberry.field(description="What it was given from your wallet, by currency.")
    def allocation(self) -> list[BotAmount]:
        return amounts(reads.funding_of(self._row))

    @strawberry.field(
        description="A paper bot's paper account (null for a live bot): it stays readable"
        " once the bot has stopped."
    )
    async def paper_account(self, info: Info) -> PaperAccountNode | None:
        pk = self._row.paper_account_id
        return None if pk is None else await PaperAccountNode.load(info, pk)

    @strawberry.field(
        description="What its sub-account holds (available and held by its orders); once"
        " STOPPED, what it gave back to your wallet. A paper bot: its paper account's"
        " balances (play money, never given back). A bot on an exchange account: its"
        " budget less what its buys cost plus what its sells brought, fees included, and"
        " the base its fills bought less sold."
    )
    async def holdings(self, info: Info) -> list[BotAmount]:
        return amounts(await self._holdings(info))

    @strawberry.field(
        description="What it was given, in the quote currency (a rebalance bot: its"
        " allocation at the last prices)."
    )
    async def budget(self, info: Info) -> Decimal | None:
        return (await self.figures(info)).budget

    @strawberry.field(
        description="Its holdings at each market's last price (a bot on an exchange"
        " account: its exchange's, as last read); null while one has no price."
    )
    async def equity(self, info: Info) -> Decimal | None:
        return (await self.figures(info)).equity

    @strawberry.field(description="equity - budget = realisedPnl + unrealisedPnl.")
    async def pnl(self, info: Info) -> Decimal | None:
        return (await self.figures(info)).pnl

    @strawberry.field(
        description="What its closed trades made, fees included: a DCA bot's closed deals,"
        " a grid's round trips, a signal bot's sales. Null for a rebalance bot."
    )
    async def realised_pnl(self, info: Info) -> Decimal | None:
        return (await self.figures(info)).realised

    @strawberry.field(
        description="pnl - realisedPnl: what it holds now at the last price against what"
        " that cost (a rebalance bot: its pnl against holding its allocation)."
    )
    async def unrealised_pnl(self, info: Info) -> Decimal | None:
        return (await self.figures(info)).unrealised

    @strawberry.field(
        description="Its fills, newest first: its sub-account's, a paper bot's its paper"
        " account's (current run), a bot on an exchange account's at the exchange."
    )
    async def trades(
        self, info: Info, first: int = 20, after: str | None = None
    ) -> BotTradeConnection:
        loaders, paper = info.context.loaders, self._row.paper_account_id
        if self._row.exchange_account_id is not None:
            key = page_key(self._row.id, first=first, after=after, key=ExchangeFillRow.id)
            pairs = await loaders.bots.exchange_trade_page_by_key.load(key)
            return to_connection(  # type: ignore[return-value]
                BotTradeConnection, pairs, lambda pair: BotTrade.of_exchange(*pair)
            )
        if paper is not None:
            key = page_key(paper, first=first, after=after, key=PaperFillRow.id)
            page, market = await asyncio.gather(
                loaders.paper_fills_page_by_key.load(key), self._market(info)
            )
            return to_connection(  # type: ignore[return-value]
                BotTradeConnection, page, lambda row: BotTrade.of_paper(row, market)
            )
        key = page_key(self._row.account_id, first=first, after=after, key=FillRow.id)
        page = await loaders.bots.trade_page_by_key.load(key)
        specs = await market_specs(info, (row for _, row in page.items))
        return to_connection(  # type: ignore[return-value]
            BotTradeConnection, page, lambda row: BotTrade.of_fill(row, specs.get(row.market_id))
        )

    @strawberry.field(
        description="Its live orders, newest first (a paper bot: on its paper account; a"
        " bot on an exchange account: at the exchange)."
    )
    async def open_orders(self, info: Info) -> list[BotOrder]:
        loaders, paper = info.context.loaders.bots, self._row.paper_account_id
        if self._row.exchange_account_id is not None:
            at_exchange = await loaders.open_exchange_orders_by_bot_id.load(self._row.id)
            return [BotOrder.of_exchange(row, client_id) for row, client_id in at_exchange]
        if paper is not None:
            rows, market = await asyncio.gather(
                loaders.open_paper_orders_by_account_id.load(paper), self._market(info)
            )
            return [BotOrder.of_paper(row, market) for row in rows]
        live = await loaders.open_orders_by_account_id.load(self._row.account_id)
        specs = await market_specs(info, live)
        return [BotOrder.of_order(row, specs.get(row.market_id)) for row in live]

    @strawberry.field(description="What it decided and why, newest first.")
    async def decisions(
        self, info: Info, first: int = 20, after: str | None = None
    ) -> BotDecisionConnection:
        key = page_key(self._row.id, first=first, after=after, key=DecisionRow.id)
        page = await info.context.loaders.bots.decision_page_by_key.load(key)
        return to_connection(BotDecisionConnection, page, BotDecision.from_row)  # type: ignore[return-value]

    async def figures(self, info: Info) -> reads.Figures:
        if "figures" not in self._figures and self._row.exchange_account_id is not None:
            loader = info.context.loaders.bots.exchange_holdings_by_bot_id
            held, prices = await loader.load(self._row.id)
            self._figures["figures"] = reads.figures(self._row, held, prices)
        if "figures" not in self._figures:
            held, markets = await asyncio.gather(
                self._holdings(info),
                info.context.loaders.bots.market_by_symbol.load_many(self._row.symbols),
            )
            prices = {m.symbol: m.last_price for m in markets if m is not None}
            self._figures["figures"] = reads.figures(self._row, held, prices)
        return self._figures["figures"]

    async def _holdings(self, info: Info) -> Mapping[str, Decimal]:
        """Its sub-account's holdings (or what it gave back); a paper bot's paper
        account's balances (the loader ``paperAccount { balances }`` reads too); an
        exchange bot's from its exchange orders' fills."""
        loaders, paper = info.context.loaders, self._row.paper_account_id
        if self._row.exchange_account_id is not None:
            loader = loaders.bots.exchange_holdings_by_bot_id
            return (await loader.load(self._row.id))[0]  # type: ignore[no-any-return]
        if paper is not None:
            book = await loaders.paper_balances_by_account_id.load(paper)
            return reads.paper_holdings(paper, book)
        return await loaders.bots.holdings_by_account_id.load(self._row.account_id)  # type: ignore[no-any-return]

    async def _market(self, info: Info) -> MarketRow:
        """A paper bot's one market, with its last price (its figures read it too; its
        orders and trades show it without reading more)."""
        market = await info.context.loaders.bots.market_by_symbol.load(self._row.symbols[0])
        assert market is not None  # a bot's market is never deleted
        return market  # type: ignore[no-any-return]

    @classmethod
    async def load(cls, info: Info, pk: int) -> BotNode | None:
        """Bot ``pk`` through the request's loaders; None when it is not the caller's."""
        row = await info.context.loaders.bots.bot_by_id.load(pk)
        if row is None or row.user_id != info.context.user_id:
            return None
        return cls.from_row(row)

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[BotNode | None]:
        return list(await asyncio.gather(*(cls.load(info, pk) for pk in node_keys(node_ids))))


@strawberry.type
class BotConnection(relay.Connection[BotNode]):
    """Your bots, newest first, paged by keyset cursor."""
