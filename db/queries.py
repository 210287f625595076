"""Shared reads and the named row-lock helpers (locks are taken only through these)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ARRAY, BigInteger, Select, any_, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased

from app.core.errors import ValidationFailed
from db.models import User

T = TypeVar("T")
MAX_PAGE_SIZE = 100
BIGINT = 2**63  # keys are PostgreSQL BIGINTs: -BIGINT <= key < BIGINT


M = TypeVar("M")


async def rows_by_ids(session: AsyncSession, model: type[M], ids: Sequence[int]) -> list[M | None]:
    """Rows of ``model`` in the order of ``ids`` (None where missing): one query, the same
    statement however many ids (``= ANY(array)``, where ``IN`` would be compiled and
    prepared again for every count)."""
    wanted = bindparam("ids", list(ids), type_=ARRAY(BigInteger))
    rows = (await session.scalars(select(model).where(model.id == any_(wanted)))).all()  # type: ignore[attr-defined]
    found = {row.id: row for row in rows}  # type: ignore[attr-defined]
    return [found.get(i) for i in ids]


async def users_by_ids(session: AsyncSession, ids: Sequence[int]) -> list[User | None]:
    return await rows_by_ids(session, User, ids)


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == email))


async def lock_user(session: AsyncSession, user_id: int) -> User | None:
    """SELECT ... FOR NO KEY UPDATE on one user row: serializes a user's operations but,
    unlike FOR UPDATE, does not block the KEY SHARE locks that inserting a row which
    references the user takes (an idempotency key, a transfer, an outbox event). With
    FOR UPDATE, two requests that each inserted such a row first deadlock on the user."""
    return await session.scalar(
        select(User)
        .where(User.id == user_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[tuple[str, T]]  # (cursor, item)
    has_next_page: bool
    has_previous_page: bool


def encode_cursor(key: int, *, kind: str) -> str:
    """An opaque cursor bound to its list: ``kind`` names what the list pages over (a
    table), and a cursor of another kind is refused."""
    return base64.urlsafe_b64encode(f"{kind}:{key}".encode()).decode()


def decode_cursor(cursor: str, *, kind: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        prefix, value = text.rsplit(":", 1)
        key = int(value)
    except (ValueError, binascii.Error) as error:  # UnicodeError is a ValueError
        raise ValidationFailed("Invalid cursor", field="after") from error
    if prefix != kind:
        raise ValidationFailed("The cursor belongs to another list", field="after")
    if not -BIGINT <= key < BIGINT:
        raise ValidationFailed("Invalid cursor", field="after")
    return key


def cursor_kind(key: InstrumentedAttribute[int]) -> str:
    """The kind of the cursors of a list keyed on ``key``: its table."""
    return key.class_.__tablename__  # type: ignore[no-any-return]


def check_page_size(first: int) -> None:
    if not 0 <= first <= MAX_PAGE_SIZE:
        raise ValidationFailed(f"first must be between 0 and {MAX_PAGE_SIZE}", field="first")


async def keyset_page(
    session: AsyncSession,
    statement: Select[tuple[T]],
    *,
    key: InstrumentedAttribute[int],
    first: int,
    after: str | None,
    descending: bool = False,
) -> Page[T]:
    """One page of ``statement`` ordered by a unique integer ``key`` (keyset, no OFFSET)."""
    statement = _after(statement, key=key, first=first, after=after, descending=descending)
    statement = statement.order_by(_order(key, descending)).limit(first + 1)
    rows = list((await session.scalars(statement)).all())
    return _page(rows, key=key, first=first, after=after)


async def keyset_pages(
    session: AsyncSession,
    statement: Select[tuple[T]],
    *,
    key: InstrumentedAttribute[int],
    group: InstrumentedAttribute[int],
    groups: Sequence[int],
    first: int,
    after: str | None,
    descending: bool = False,
) -> list[Page[T]]:
    """``keyset_page`` of several lists in one statement: ``statement``'s rows of each
    value of ``groups`` (a column of the row, ``group``), a page per group, in the order
    of ``groups``; the same ``first`` and ``after`` for each (a window numbers each
    group's rows)."""
    statement = _after(statement, key=key, first=first, after=after, descending=descending)
    wanted = bindparam("groups", list(groups), type_=ARRAY(BigInteger))
    rank = func.row_number().over(partition_by=group, order_by=_order(key, descending))
    ranked = statement.where(group == any_(wanted)).add_columns(rank.label("rank")).subquery()
    entity = aliased(key.class_, ranked)
    found = await session.scalars(
        select(entity).where(ranked.c.rank <= first + 1).order_by(ranked.c.rank)
    )
    by_group: dict[int, list[T]] = {g: [] for g in groups}
    for row in found:
        by_group[getattr(row, group.key)].append(row)
    return [_page(by_group[g], key=key, first=first, after=after) for g in groups]


def _after(
    statement: Select[tuple[T]],
    *,
    key: InstrumentedAttribute[int],
    first: int,
    after: str | None,
    descending: bool,
) -> Select[tuple[T]]:
    """``statement`` from the row after the cursor ``after`` on (arguments checked)."""
    check_page_size(first)
    if after is None:
        return statement
    boundary = decode_cursor(after, kind=cursor_kind(key))
    return statement.where(key < boundary if descending else key > boundary)


def _order(key: InstrumentedAttribute[int], descending: bool) -> Any:
    return key.desc() if descending else key.asc()


def _page(
    rows: list[T], *, key: InstrumentedAttribute[int], first: int, after: str | None
) -> Page[T]:
    """The page of ``rows`` (up to ``first`` + 1, in order: one more means a next page)."""
    kind = cursor_kind(key)
    return Page(
        items=[(encode_cursor(getattr(row, key.key), kind=kind), row) for row in rows[:first]],
        has_next_page=len(rows) > first,
        has_previous_page=after is not None,
    )


async def list_users(session: AsyncSession, *, first: int, after: str | None) -> Page[User]:
    """Every account, newest first (admin listing)."""
    return await keyset_page(
        session, select(User), key=User.id, first=first, after=after, descending=True
    )
