"""The portfolio: its equity, its positions (cost and PnL in USD from your trades) and
its equity history."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

import strawberry
from strawberry.types import Info

from app.trading import reads
from app.trading.reads import PositionView
from graphql_schema.exchanges.types import ExchangeHoldings, exchange_holdings_of
from graphql_schema.trading.markets import MarketNode
from graphql_schema.wallets.types import amount_in, usd


@strawberry.type
class Position:
    """One asset of a portfolio. Cost and PnL are in USD, from your trades on the
    platform (holdings that came in by deposit count at no cost basis and no PnL)."""

    currency: str
    quantity: Decimal = strawberry.field(description="Held now (available + held + staked).")
    average_cost: Decimal | None = strawberry.field(description="USD per unit bought.")
    cost_basis: Decimal = strawberry.field(description="USD paid for what you still hold.")
    realized_pnl: Decimal
    unrealized_pnl: Decimal = strawberry.field(description="At the last price.")
    price: Decimal = strawberry.field(description="USD per unit: the last price.")
    value: Decimal = strawberry.field(description="quantity x price, USD.")
    market_id: strawberry.Private[int | None]

    @strawberry.field(description="Where it is priced (its USD or USDT market).")
    async def market(self, info: Info) -> MarketNode | None:
        if self.market_id is None:
            return None
        return MarketNode.from_row(await info.context.loaders.market_by_id.load(self.market_id))

    @classmethod
    def from_view(cls, view: PositionView) -> Position:
        cents = Decimal("0.01")
        return cls(
            currency=view.currency,
            quantity=amount_in(view.currency, view.quantity),
            average_cost=view.average_cost,
            cost_basis=usd(view.cost_usd.quantize(cents)),
            realized_pnl=usd(view.realized_pnl_usd.quantize(cents)),
            unrealized_pnl=usd(view.unrealized_pnl_usd.quantize(cents)),
            price=view.price_usd.normalize(),
            value=usd(view.value_usd.quantize(cents)),
            market_id=view.market_id,
        )


@strawberry.type
class EquityPoint:
    at: datetime
    equity: Decimal = strawberry.field(description="USD.")


@strawberry.type
class Portfolio:
    equity: Decimal = strawberry.field(
        description="Everything the platform holds for you (its custody), in USD; what you"
        " hold at connected exchanges is apart: exchangeHoldings."
    )
    positions: list[Position] = strawberry.field(description="By currency (platform custody).")
    user_id: strawberry.Private[int]

    @strawberry.field(description="What you hold at your connected exchanges as the ledger"
                      " mirrors it, and the combined USD valuation with equity.")  # fmt: skip
    async def exchange_holdings(self, info: Info) -> ExchangeHoldings:
        return await exchange_holdings_of(info, self.user_id, self.equity)

    @strawberry.field(description="Equity snapshots for charts, oldest first (at most 1000).")
    async def history(
        self,
        info: Info,
        start: Annotated[datetime, strawberry.argument(name="from")],
        end: Annotated[datetime | None, strawberry.argument(name="to")] = None,
    ) -> list[EquityPoint]:
        async with info.context.rt.sessions() as session:
            points = await reads.equity_history(
                session, user_id=self.user_id, start=start, end=end or info.context.rt.now()
            )
        return [EquityPoint(at=at, equity=usd(equity)) for at, equity in points]
