"""The bots' DataLoaders, created per request (``Loaders.bots``; fresh per subscription
event), one per venue where the venues differ: a page of bots, live and paper, with
their figures, decisions, trades and open orders costs the same statements for one bot
of each as for a hundred (an exchange bot's holdings and price: one statement and one
Redis read per batch). A paper bot's balances and fills pages go through the paper
accounts' own loaders (``Loaders.paper_balances_by_account_id``,
``paper_fills_page_by_key``), which ``paperAccount`` shares."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from functools import cached_property

from strawberry.dataloader import DataLoader

from app.bots import reads
from app.exchanges import market_data
from app.runtime import Runtime
from app.trading.markets import MarketRow, markets_with_quote_rates
from db.models import Bot, BotDecision, ExchangeFill, ExchangeOrder, Fill, Order, PaperOrder
from db.queries import rows_by_ids
from resolvers.page_loader import PageByKeyLoader


class BotByIdLoader(DataLoader[int, Bot | None]):
    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[Bot | None]:
            async with rt.reads() as session:
                return await rows_by_ids(session, Bot, ids)

        super().__init__(load_fn=load)


class MarketBySymbolLoader(DataLoader[str, MarketRow | None]):
    """A market with its last price, by symbol (bots name their markets by symbol)."""

    def __init__(self, rt: Runtime) -> None:
        async def load(symbols: Sequence[str]) -> list[MarketRow | None]:
            async with rt.reads() as session:
                found = await markets_with_quote_rates(session, list(symbols))
            return [found[s][0] if s in found else None for s in symbols]

        super().__init__(load_fn=load)


class HoldingsByAccountIdLoader(DataLoader[int, dict[str, Decimal]]):
    """What a bot's sub-account holds (or gave back), by currency (``reads``)."""

    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[dict[str, Decimal]]:
            async with rt.reads() as session:
                return await reads.holdings_by_account_ids(session, ids)

        super().__init__(load_fn=load)


Marked = tuple[dict[str, Decimal], dict[str, Decimal | None]]  # holdings, prices by symbol


class ExchangeHoldingsByBotIdLoader(DataLoader[int, Marked]):
    """An exchange bot's holdings (``reads``) and its market's last price: its
    exchange's in the tickers the platform keeps, else the last it stepped on (one
    statement and one Redis read per batch; no request to an exchange)."""

    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[Marked]:
            async with rt.reads() as session:
                rows = await reads.exchange_holdings_by_bot_ids(session, ids)
            kept = await market_data.kept_last_prices(
                rt, [(r.exchange, r.symbol) for r in rows if r is not None]
            )
            return [
                ({}, {}) if r is None
                else (r.holdings, {r.symbol: kept.get((r.exchange, r.symbol), r.last_price)})
                for r in rows
            ]  # fmt: skip

        super().__init__(load_fn=load)


class OpenExchangeOrdersByBotIdLoader(DataLoader[int, list[tuple[ExchangeOrder, str]]]):
    """An exchange bot's live orders at its account, with its client order ids
    (``reads``)."""

    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[list[tuple[ExchangeOrder, str]]]:
            async with rt.reads() as session:
                return await reads.open_exchange_orders_by_bot_ids(session, ids)

        super().__init__(load_fn=load)


class OpenOrdersByAccountIdLoader(DataLoader[int, list[Order]]):
    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[list[Order]]:
            async with rt.reads() as session:
                return await reads.open_orders_by_account_ids(session, ids)

        super().__init__(load_fn=load)


class OpenPaperOrdersByAccountIdLoader(DataLoader[int, list[PaperOrder]]):
    """A paper bot's live orders on its paper account (current run)."""

    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[list[PaperOrder]]:
            async with rt.reads() as session:
                return await reads.open_paper_orders_by_account_ids(session, ids)

        super().__init__(load_fn=load)


class BotLoaders:
    """This request's bot loaders, each made on first use."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    @cached_property
    def bot_by_id(self) -> BotByIdLoader:
        return BotByIdLoader(self._rt)

    @cached_property
    def market_by_symbol(self) -> MarketBySymbolLoader:
        return MarketBySymbolLoader(self._rt)

    @cached_property
    def holdings_by_account_id(self) -> HoldingsByAccountIdLoader:
        return HoldingsByAccountIdLoader(self._rt)

    @cached_property
    def exchange_holdings_by_bot_id(self) -> ExchangeHoldingsByBotIdLoader:
        return ExchangeHoldingsByBotIdLoader(self._rt)

    @cached_property
    def open_exchange_orders_by_bot_id(self) -> OpenExchangeOrdersByBotIdLoader:
        return OpenExchangeOrdersByBotIdLoader(self._rt)

    @cached_property
    def exchange_trade_page_by_key(self) -> PageByKeyLoader[tuple[ExchangeFill, ExchangeOrder]]:
        return PageByKeyLoader(self._rt, reads.exchange_fill_pages)

    @cached_property
    def open_orders_by_account_id(self) -> OpenOrdersByAccountIdLoader:
        return OpenOrdersByAccountIdLoader(self._rt)

    @cached_property
    def open_paper_orders_by_account_id(self) -> OpenPaperOrdersByAccountIdLoader:
        return OpenPaperOrdersByAccountIdLoader(self._rt)

    @cached_property
    def decision_page_by_key(self) -> PageByKeyLoader[BotDecision]:
        return PageByKeyLoader(self._rt, reads.decision_pages)

    @cached_property
    def trade_page_by_key(self) -> PageByKeyLoader[Fill]:
        return PageByKeyLoader(self._rt, reads.fill_pages)
