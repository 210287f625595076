"""DataLoaders, created fresh for every request (never shared across requests)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from strawberry.dataloader import DataLoader

from app.domain.staking import utc_day
from app.runtime import Runtime
from app.services.deposits import deposits_by_ids
from app.services.staking import (
    Product,
    active_stakes_by_user_ids,
    products_by_ids,
    stakes_by_ids,
)
from app.services.wallets import Wallet, wallets_by_user_ids
from db.models import Deposit, Stake, Transfer, User, Withdrawal
from db.queries import rows_by_ids, users_by_ids


class UserByIdLoader(DataLoader[int, User | None]):
    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[User | None]:
            async with rt.sessions() as session:
                return await users_by_ids(session, ids)

        super().__init__(load_fn=load)


class WalletsByUserIdLoader(DataLoader[int, list[Wallet]]):
    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[list[Wallet]]:
            async with rt.sessions() as session:
                return await wallets_by_user_ids(session, ids)

        super().__init__(load_fn=load)


class TransferByIdLoader(DataLoader[int, Transfer | None]):
    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[Transfer | None]:
            async with rt.sessions() as session:
                return await rows_by_ids(session, Transfer, ids)

        super().__init__(load_fn=load)


class WithdrawalByIdLoader(DataLoader[int, Withdrawal | None]):
    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[Withdrawal | None]:
            async with rt.sessions() as session:
                return await rows_by_ids(session, Withdrawal, ids)

        super().__init__(load_fn=load)


class DepositByIdLoader(DataLoader[int, Deposit | None]):
    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[Deposit | None]:
            async with rt.sessions() as session:
                return await deposits_by_ids(session, ids)

        super().__init__(load_fn=load)


class StakingProductByIdLoader(DataLoader[int, Product | None]):
    """Products with the rates in force on the day of the request (UTC)."""

    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[Product | None]:
            async with rt.sessions() as session:
                return await products_by_ids(session, ids, today=utc_day(rt.now()))

        super().__init__(load_fn=load)


class StakeByIdLoader(DataLoader[int, Stake | None]):
    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[Stake | None]:
            async with rt.sessions() as session:
                return await stakes_by_ids(session, ids)

        super().__init__(load_fn=load)


class ActiveStakesByUserIdLoader(DataLoader[int, list[Stake]]):
    def __init__(self, rt: Runtime) -> None:
        async def load(ids: Sequence[int]) -> list[list[Stake]]:
            async with rt.sessions() as session:
                return await active_stakes_by_user_ids(session, ids)

        super().__init__(load_fn=load)


@dataclass(frozen=True, slots=True)
class Loaders:
    user_by_id: UserByIdLoader
    wallets_by_user_id: WalletsByUserIdLoader
    transfer_by_id: TransferByIdLoader
    withdrawal_by_id: WithdrawalByIdLoader
    deposit_by_id: DepositByIdLoader
    staking_product_by_id: StakingProductByIdLoader
    stake_by_id: StakeByIdLoader
    active_stakes_by_user_id: ActiveStakesByUserIdLoader


def build_loaders(rt: Runtime, *, signed_in: User | None = None) -> Loaders:
    loaders = Loaders(
        user_by_id=UserByIdLoader(rt),
        wallets_by_user_id=WalletsByUserIdLoader(rt),
        transfer_by_id=TransferByIdLoader(rt),
        withdrawal_by_id=WithdrawalByIdLoader(rt),
        deposit_by_id=DepositByIdLoader(rt),
        staking_product_by_id=StakingProductByIdLoader(rt),
        stake_by_id=StakeByIdLoader(rt),
        active_stakes_by_user_id=ActiveStakesByUserIdLoader(rt),
    )
    if signed_in is not None:
        loaders.user_by_id.prime(signed_in.id, signed_in)
    return loaders
