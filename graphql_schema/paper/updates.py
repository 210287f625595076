"""The ``paperUpdates`` subscription's types: a fill or an order update of one of your paper
accounts (the nodes ``paperAccount { fills orders }`` shows, with the values the step
wrote), and the account as it is when the update is sent (read through the loaders,
which are fresh for each event)."""

from __future__ import annotations

from typing import Annotated, TypeAlias

import strawberry
from strawberry.types import Info

from app.events.topics import PaperFilled, PaperOrderUpdated
from graphql_schema.errors import NotFound
from graphql_schema.paper.types import (
    PaperAccountNode,
    PaperFillNode,
    PaperOrderNode,
    paper_account_gid,
)


@strawberry.type
class PaperUpdateFields:
    """What every paper update carries (not a schema type of its own)."""

    paper_account_id: strawberry.ID = strawberry.field(
        description="The global ID (type PaperAccount) of the account."
    )
    resets: int = strawberry.field(description="The account's run (its resets) it belongs to.")
    sequence: int = strawberry.field(
        description="The account's venue event number in its run: updates come in this"
        " order; a fill and the order update it caused share it."
    )
    account_pk: strawberry.Private[int]

    @strawberry.field(description="The account now (balances, equity ...), as the update is sent.")
    async def paper_account(self, info: Info) -> PaperAccountNode | None:
        return await PaperAccountNode.load(info, self.account_pk)


@strawberry.type
class PaperFillUpdate(PaperUpdateFields):
    """A fill of one of the account's orders."""

    fill: PaperFillNode

    @classmethod
    def from_event(cls, p: PaperFilled) -> PaperFillUpdate:
        return cls(
            paper_account_id=paper_account_gid(p.paper_account_id), resets=p.resets,
            sequence=p.number, account_pk=p.paper_account_id, fill=PaperFillNode.from_row(p),
        )  # fmt: skip


@strawberry.type
class PaperOrderUpdate(PaperUpdateFields):
    """An order of the account placed or changed (status, filled quantity, reason)."""

    order: PaperOrderNode

    @classmethod
    def from_event(cls, p: PaperOrderUpdated) -> PaperOrderUpdate:
        return cls(
            paper_account_id=paper_account_gid(p.paper_account_id), resets=p.resets,
            sequence=p.sequence, account_pk=p.paper_account_id,
            order=PaperOrderNode.from_row(p),
        )  # fmt: skip


PaperUpdate: TypeAlias = Annotated[
    PaperFillUpdate | PaperOrderUpdate | NotFound, strawberry.union("PaperUpdate")
]
