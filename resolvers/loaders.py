"""DataLoaders, created fresh for every request (never shared across requests)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from functools import cached_property

from strawberry.dataloader import DataLoader

from app.backtesting import backtests
from app.exchanges import custody as exchange_custody
from app.exchanges import orders as exchange_orders
from app.exchanges.custody import MirroredBalance
from app.ledger.rules import AccountRef
from app.paper import accounts as paper_accounts
from app.paper import exchange_feed as paper_exchange_feed
from app.paper import ledger as paper_ledger
from app.runtime import Runtime
from app.social.copy_trading import copies_by_ids
from app.social.domain.leaderboard import Period
from app.social.follows import FollowStatistics, follow_statistics
from app.social.leaderboard import LeaderStats, stats_by_keys
from app.social.leaders import LeaderView, leaders_by_ids
from app.staking.products import Product, products_by_ids
from app.staking.rules import utc_day
from app.staking.staking import active_stakes_by_user_ids, stakes_by_ids
from app.trading.markets import MarketRow, markets_by_ids
from app.trading.reads import fills_by_order_ids
from app.wallets.deposits import deposits_by_ids
from app.wallets.wallets import Wallet, wallets_by_user_ids
from db.models import (
    Backtest,
    BacktestDecision,
    BacktestEquityPoint,
    BacktestRiskEvent,
    BacktestTrade,
    Copy,
    Deposit,
    ExchangeFill,
    ExchangeOrder,
    ExchangeSync,
    Fill,
    Follow,
    Notification,
    Order,
    PaperAccount,
    PaperFill,
    PaperOrder,
    PriceAlert,
    ProfitShareSettlement,
    RiskLimit,
    Stake,
    Transfer,
    User,
    Withdrawal,
)
from db.queries import rows_by_ids, users_by_ids
from resolvers.bots.loaders import BotLoaders
from resolvers.page_loader import PageByKeyLoader


class UserByIdLoader(DataLoader[int, User | None]):
    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[User | None]:
            async with rt.reads() as session:
                return await users_by_ids(session, ids)

        super().__init__(load_fn=load)


class WalletsByUserIdLoader(DataLoader[int, list[Wallet]]):
    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[list[Wallet]]:
            async with rt.reads() as session:
                return await wallets_by_user_ids(session, ids)

        super().__init__(load_fn=load)


class TransferByIdLoader(DataLoader[int, Transfer | None]):
    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[Transfer | None]:
            async with rt.reads() as session:
                return await rows_by_ids(session, Transfer, ids)

        super().__init__(load_fn=load)


class WithdrawalByIdLoader(DataLoader[int, Withdrawal | None]):
    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[Withdrawal | None]:
            async with rt.reads() as session:
                return await rows_by_ids(session, Withdrawal, ids)

        super().__init__(load_fn=load)


class DepositByIdLoader(DataLoader[int, Deposit | None]):
    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[Deposit | None]:
            async with rt.reads() as session:
                return await deposits_by_ids(session, ids)

        super().__init__(load_fn=load)


class StakingProductByIdLoader(DataLoader[int, Product | None]):
    """Products with the rates in force on the day of the request (UTC)."""

    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[Product | None]:
            async with rt.reads() as session:
                return await products_by_ids(session, ids, today=utc_day(rt.now()))

        super().__init__(load_fn=load)


class StakeByIdLoader(DataLoader[int, Stake | None]):
    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[Stake | None]:
            async with rt.reads() as session:
                return await stakes_by_ids(session, ids)

        super().__init__(load_fn=load)


class ActiveStakesByUserIdLoader(DataLoader[int, list[Stake]]):
    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[list[Stake]]:
            async with rt.reads() as session:
                return await active_stakes_by_user_ids(session, ids)

        super().__init__(load_fn=load)


class MarketByIdLoader(DataLoader[int, MarketRow | None]):
    """A market with its last price (position -> market, order -> market, last price)."""

    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[MarketRow | None]:
            async with rt.reads() as session:
                found = await markets_by_ids(session, list(ids))
            return [found.get(i) for i in ids]

        super().__init__(load_fn=load)


class OrderByIdLoader(DataLoader[int, Order | None]):
    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[Order | None]:
            async with rt.reads() as session:
                return await rows_by_ids(session, Order, ids)

        super().__init__(load_fn=load)


class FillByIdLoader(DataLoader[int, Fill | None]):
    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[Fill | None]:
            async with rt.reads() as session:
                return await rows_by_ids(session, Fill, ids)

        super().__init__(load_fn=load)


class FillsByOrderIdLoader(DataLoader[int, list[Fill]]):
    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[list[Fill]]:
            async with rt.reads() as session:
                return await fills_by_order_ids(session, ids)

        super().__init__(load_fn=load)


class LeaderByIdLoader(DataLoader[int, LeaderView | None]):
    """A leader (keyed by user id) with follower count and assets under copy."""

    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[LeaderView | None]:
            async with rt.reads() as session:
                return await leaders_by_ids(session, ids)

        super().__init__(load_fn=load)


class FollowByIdLoader(DataLoader[int, Follow | None]):
    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[Follow | None]:
            async with rt.reads() as session:
                return await rows_by_ids(session, Follow, ids)

        super().__init__(load_fn=load)


class FollowStatisticsByIdLoader(DataLoader[int, FollowStatistics]):
    """Copy statistics of follows (through follow_by_id, so pages prime it)."""

    def __init__(self, rt: Runtime, follows: FollowByIdLoader) -> None:
        async def load(ids: Sequence[int]) -> list[FollowStatistics]:
            rows = [r for r in await follows.load_many(ids) if r is not None]
            async with rt.reads() as session:
                found = await follow_statistics(session, rows)
            by_id = dict(zip([r.id for r in rows], found, strict=True))
            return [by_id[i] for i in ids]

        super().__init__(load_fn=load)


class LeaderStatsByKeyLoader(DataLoader[tuple[int, Period], LeaderStats | None]):
    """A leader's statistics over a period, keyed by (leader id, period)."""

    def __init__(self, rt: Runtime) -> None:
        async def load(keys: Sequence[tuple[int, Period]]) -> list[LeaderStats | None]:
            return await stats_by_keys(rt, keys)

        super().__init__(load_fn=load)


class NotificationByIdLoader(DataLoader[int, Notification | None]):
    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[Notification | None]:
            async with rt.reads() as session:
                return await rows_by_ids(session, Notification, ids)

        super().__init__(load_fn=load)


class RiskLimitByIdLoader(DataLoader[int, RiskLimit | None]):
    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[RiskLimit | None]:
            async with rt.reads() as session:
                return await rows_by_ids(session, RiskLimit, ids)

        super().__init__(load_fn=load)


class PriceAlertByIdLoader(DataLoader[int, PriceAlert | None]):
    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[PriceAlert | None]:
            async with rt.reads() as session:
                return await rows_by_ids(session, PriceAlert, ids)

        super().__init__(load_fn=load)


class CopyByIdLoader(DataLoader[int, Copy | None]):
    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[Copy | None]:
            async with rt.reads() as session:
                return await copies_by_ids(session, ids)

        super().__init__(load_fn=load)


class SettlementByIdLoader(DataLoader[int, ProfitShareSettlement | None]):
    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[ProfitShareSettlement | None]:
            async with rt.reads() as session:
                return await rows_by_ids(session, ProfitShareSettlement, ids)

        super().__init__(load_fn=load)


class BacktestByIdLoader(DataLoader[int, Backtest | None]):
    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[Backtest | None]:
            async with rt.reads() as session:
                return await rows_by_ids(session, Backtest, ids)

        super().__init__(load_fn=load)


class PaperAccountByIdLoader(DataLoader[int, PaperAccount | None]):
    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[PaperAccount | None]:
            async with rt.reads() as session:
                return await paper_accounts.accounts_by_ids(session, ids)

        super().__init__(load_fn=load)


class ExchangeLastPriceByMarketLoader(DataLoader[tuple[str, str], Decimal | None]):
    """The last stored trade price of an (exchange, symbol): an exchange paper account's."""

    def __init__(self, rt: Runtime) -> None:
        async def load(keys: Sequence[tuple[str, str]]) -> list[Decimal | None]:
            async with rt.reads() as session:
                return await paper_exchange_feed.last_prices(session, keys)

        super().__init__(load_fn=load)


class PaperBalancesByAccountIdLoader(DataLoader[int, dict[AccountRef, Decimal]]):
    """A paper account's paper book balances (``paper_accounts.balances_from`` reads them)."""

    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[dict[AccountRef, Decimal]]:
            async with rt.reads() as session:
                return await paper_ledger.balances_by_account_ids(session, ids)

        super().__init__(load_fn=load)


class ExchangeMirrorByConnectionIdLoader(DataLoader[int, list[MirroredBalance]]):
    """A connected exchange account's mirrored balances (its custody in the ledger)."""

    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[list[MirroredBalance]]:
            async with rt.reads() as session:
                return await exchange_custody.mirrored_by_connection_ids(session, ids)

        super().__init__(load_fn=load)


class ExchangeFillsByOrderIdLoader(DataLoader[int, list[ExchangeFill]]):
    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[list[ExchangeFill]]:
            async with rt.reads() as session:
                return await exchange_orders.fills_by_order_ids(session, ids)

        super().__init__(load_fn=load)


class ExchangeLastSyncByConnectionIdLoader(DataLoader[int, ExchangeSync | None]):
    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[ExchangeSync | None]:
            async with rt.reads() as session:
                return await exchange_custody.last_syncs_by_connection_ids(session, ids)

        super().__init__(load_fn=load)


class Loaders:
    """This request's DataLoaders, each created on first use (most requests need one
    or none, and building all of them showed up in the profile of small queries)."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    @cached_property
    def user_by_id(self) -> UserByIdLoader:
        return UserByIdLoader(self._rt)

    @cached_property
    def wallets_by_user_id(self) -> WalletsByUserIdLoader:
        return WalletsByUserIdLoader(self._rt)

    @cached_property
    def transfer_by_id(self) -> TransferByIdLoader:
        return TransferByIdLoader(self._rt)

    @cached_property
    def withdrawal_by_id(self) -> WithdrawalByIdLoader:
        return WithdrawalByIdLoader(self._rt)

    @cached_property
    def deposit_by_id(self) -> DepositByIdLoader:
        return DepositByIdLoader(self._rt)

    @cached_property
    def staking_product_by_id(self) -> StakingProductByIdLoader:
        return StakingProductByIdLoader(self._rt)

    @cached_property
    def stake_by_id(self) -> StakeByIdLoader:
        return StakeByIdLoader(self._rt)

    @cached_property
    def active_stakes_by_user_id(self) -> ActiveStakesByUserIdLoader:
        return ActiveStakesByUserIdLoader(self._rt)

    @cached_property
    def market_by_id(self) -> MarketByIdLoader:
        return MarketByIdLoader(self._rt)

    @cached_property
    def order_by_id(self) -> OrderByIdLoader:
        return OrderByIdLoader(self._rt)

    @cached_property
    def fill_by_id(self) -> FillByIdLoader:
        return FillByIdLoader(self._rt)

    @cached_property
    def fills_by_order_id(self) -> FillsByOrderIdLoader:
        return FillsByOrderIdLoader(self._rt)

    @cached_property
    def leader_by_id(self) -> LeaderByIdLoader:
        return LeaderByIdLoader(self._rt)

    @cached_property
    def leader_stats_by_key(self) -> LeaderStatsByKeyLoader:
        return LeaderStatsByKeyLoader(self._rt)

    @cached_property
    def follow_by_id(self) -> FollowByIdLoader:
        return FollowByIdLoader(self._rt)

    @cached_property
    def follow_statistics_by_id(self) -> FollowStatisticsByIdLoader:
        return FollowStatisticsByIdLoader(self._rt, self.follow_by_id)

    @cached_property
    def notification_by_id(self) -> NotificationByIdLoader:
        return NotificationByIdLoader(self._rt)

    @cached_property
    def risk_limit_by_id(self) -> RiskLimitByIdLoader:
        return RiskLimitByIdLoader(self._rt)

    @cached_property
    def price_alert_by_id(self) -> PriceAlertByIdLoader:
        return PriceAlertByIdLoader(self._rt)

    @cached_property
    def copy_by_id(self) -> CopyByIdLoader:
        return CopyByIdLoader(self._rt)

    @cached_property
    def settlement_by_id(self) -> SettlementByIdLoader:
        return SettlementByIdLoader(self._rt)

    @cached_property
    def backtest_by_id(self) -> BacktestByIdLoader:
        return BacktestByIdLoader(self._rt)

    @cached_property
    def backtest_decision_page_by_key(self) -> PageByKeyLoader[BacktestDecision]:
        return PageByKeyLoader(self._rt, backtests.decision_pages)

    @cached_property
    def backtest_risk_event_page_by_key(self) -> PageByKeyLoader[BacktestRiskEvent]:
        return PageByKeyLoader(self._rt, backtests.risk_event_pages)

    @cached_property
    def backtest_equity_page_by_key(self) -> PageByKeyLoader[BacktestEquityPoint]:
        return PageByKeyLoader(self._rt, backtests.equity_point_pages)

    @cached_property
    def backtest_trade_page_by_key(self) -> PageByKeyLoader[BacktestTrade]:
        return PageByKeyLoader(self._rt, backtests.trade_pages)

    @cached_property
    def paper_account_by_id(self) -> PaperAccountByIdLoader:
        return PaperAccountByIdLoader(self._rt)

    @cached_property
    def exchange_last_price_by_market(self) -> ExchangeLastPriceByMarketLoader:
        return ExchangeLastPriceByMarketLoader(self._rt)

    @cached_property
    def paper_balances_by_account_id(self) -> PaperBalancesByAccountIdLoader:
        return PaperBalancesByAccountIdLoader(self._rt)

    @cached_property
    def paper_orders_page_by_key(self) -> PageByKeyLoader[PaperOrder]:
        return PageByKeyLoader(self._rt, paper_accounts.orders_pages)

    @cached_property
    def paper_fills_page_by_key(self) -> PageByKeyLoader[PaperFill]:
        return PageByKeyLoader(self._rt, paper_accounts.fills_pages)

    @cached_property
    def exchange_orders_page_by_key(self) -> PageByKeyLoader[ExchangeOrder]:
        return PageByKeyLoader(self._rt, exchange_orders.orders_pages)

    @cached_property
    def exchange_mirror_by_connection_id(self) -> ExchangeMirrorByConnectionIdLoader:
        return ExchangeMirrorByConnectionIdLoader(self._rt)

    @cached_property
    def exchange_fills_by_order_id(self) -> ExchangeFillsByOrderIdLoader:
        return ExchangeFillsByOrderIdLoader(self._rt)

    @cached_property
    def exchange_last_sync_by_connection_id(self) -> ExchangeLastSyncByConnectionIdLoader:
        return ExchangeLastSyncByConnectionIdLoader(self._rt)

    @cached_property
    def exchange_syncs_page_by_key(self) -> PageByKeyLoader[ExchangeSync]:
        return PageByKeyLoader(self._rt, exchange_custody.sync_pages)

    @cached_property
    def bots(self) -> BotLoaders:
        return BotLoaders(self._rt)


def build_loaders(rt: Runtime, *, signed_in: User | None = None) -> Loaders:
    loaders = Loaders(rt)
    if signed_in is not None:
        loaders.user_by_id.prime(signed_in.id, signed_in)
    return loaders
