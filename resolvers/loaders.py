"""DataLoaders, created fresh for every request (never shared across requests)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from strawberry.dataloader import DataLoader

from app.runtime import Runtime
from app.services.wallets import Wallet, wallets_by_user_ids
from db.models import Transfer, User
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


@dataclass(frozen=True, slots=True)
class Loaders:
    user_by_id: UserByIdLoader
    wallets_by_user_id: WalletsByUserIdLoader
    transfer_by_id: TransferByIdLoader


def build_loaders(rt: Runtime, *, signed_in: User | None = None) -> Loaders:
    loaders = Loaders(
        user_by_id=UserByIdLoader(rt),
        wallets_by_user_id=WalletsByUserIdLoader(rt),
        transfer_by_id=TransferByIdLoader(rt),
    )
    if signed_in is not None:
        loaders.user_by_id.prime(signed_in.id, signed_in)
    return loaders
