"""The loader of keyset pages under parent rows, shared by every domain's loaders (its
own module: ``resolvers.loaders`` imports the domains' loaders, which need it too)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.dataloader import DataLoader

from app.runtime import Runtime
from db.queries import Page, PageKey

R = TypeVar("R")


class PageByKeyLoader(DataLoader[PageKey, Page[R]]):
    """Pages of the rows under parent rows (a backtest's decisions, a paper account's
    orders, a bot's decisions, ...), all the pages a request asks for in one statement
    (``db.queries.keyset_pages``)."""

    def __init__(
        self,
        rt: Runtime,
        pages: Callable[[AsyncSession, Sequence[PageKey]], Awaitable[list[Page[R]]]],
    ) -> None:
        async def load(keys: Sequence[PageKey]) -> list[Page[R]]:
            async with rt.reads() as session:
                return await pages(session, keys)

        super().__init__(load_fn=load)
