"""Shared reads and the named row-lock helpers (locks are taken only through these)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Integer,
    ScalarSelect,
    Select,
    any_,
    bindparam,
    column,
    func,
    select,
    true,
)
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


async def rows_grouped_by(
    session: AsyncSession, key: InstrumentedAttribute[int], ids: Sequence[int]
) -> list[list[Any]]:
    """The rows whose ``key`` (a column such as ``Fill.order_id``) is each of ``ids``, in
    the order of ``ids`` (each group oldest first by the table's ``id``): one query."""
    model = key.class_
    wanted = bindparam("ids", list(ids), type_=ARRAY(BigInteger))
    query = select(model).where(key == any_(wanted)).order_by(model.id)
    rows = (await session.scalars(query)).all()
    grouped: dict[int, list[Any]] = {i: [] for i in ids}
    for row in rows:
        grouped[getattr(row, key.key)].append(row)
    return [grouped[i] for i in ids]


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
    return encode_cursor_keys((key,), kind=kind)


def decode_cursor(cursor: str, *, kind: str) -> int:
    return decode_cursor_keys(cursor, kind=kind, count=1)[0]


def encode_cursor_keys(keys: Sequence[int], *, kind: str) -> str:
    """A cursor of a list ordered by several integer keys (a time in µs, then an id)."""
    return base64.urlsafe_b64encode(":".join((kind, *map(str, keys))).encode()).decode()


def decode_cursor_keys(cursor: str, *, kind: str, count: int) -> tuple[int, ...]:
    """The ``count`` keys of a cursor of ``kind``, or ValidationFailed (field ``after``)."""
    invalid = ValidationFailed("Invalid cursor", field="after")
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (ValueError, binascii.Error) as error:  # UnicodeError is a ValueError
        raise invalid from error
    prefix, separator, rest = text.partition(":")
    if not separator:
        raise invalid
    if prefix != kind:
        raise ValidationFailed("The cursor belongs to another list", field="after")
    values = rest.split(":")
    try:
        keys = tuple(int(value) for value in values)
    except ValueError as error:
        raise invalid from error
    if len(keys) != count or not all(-BIGINT <= key < BIGINT for key in keys):
        raise invalid
    return keys


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
    check_page_size(first)
    kind = cursor_kind(key)
    if after is not None:
        boundary = decode_cursor(after, kind=kind)
        statement = statement.where(key < boundary if descending else key > boundary)
    statement = statement.order_by(key.desc() if descending else key.asc()).limit(first + 1)
    rows = list((await session.scalars(statement)).all())
    return _page(rows, key=key, first=first, after=after)


def _page(rows: list[T], *, key: InstrumentedAttribute[int], first: int, after: object) -> Page[T]:
    """A page of ``rows`` (up to ``first + 1``: one more means there is a next page)."""
    kind = cursor_kind(key)
    return Page(
        items=[(encode_cursor(getattr(row, key.key), kind=kind), row) for row in rows[:first]],
        has_next_page=len(rows) > first,
        has_previous_page=after is not None,
    )


@dataclass(frozen=True, slots=True)
class PageKey:
    """One page of the rows under a parent row: the first ``first`` after the key
    ``after`` (None: from the start). A DataLoader's key (``keyset_pages``)."""

    parent: int
    first: int
    after: int | None


def page_key(
    parent: int, *, first: int, after: str | None, key: InstrumentedAttribute[int]
) -> PageKey:
    """The checked request of a page of the list keyed on ``key`` (``ValidationFailed``
    for a page size or a cursor ``keyset_page`` would refuse)."""
    check_page_size(first)
    boundary = None if after is None else decode_cursor(after, kind=cursor_kind(key))
    return PageKey(parent, first, boundary)


async def keyset_pages(
    session: AsyncSession,
    model: type[M],
    *,
    parent: InstrumentedAttribute[int],
    key: InstrumentedAttribute[int],
    wanted: Sequence[PageKey],
    rows: Select[tuple[M]] | None = None,
    descending: bool = False,
) -> list[Page[M]]:
    """The pages ``wanted`` of ``model``'s rows under their parents (``parent`` the
    column naming it), each in ``key`` order (``descending``: newest first), as
    ``keyset_page`` gives them: one statement however many pages, each with its own size
    and cursor (a keyset scan per page, LATERAL). ``rows`` narrows the rows (a join, a
    filter; default every row of ``model``)."""
    pages = func.unnest(
        bindparam("parents", [w.parent for w in wanted], type_=ARRAY(BigInteger)),
        bindparam("afters", [_edge(w.after, descending) for w in wanted], type_=ARRAY(BigInteger)),
        bindparam("limits", [w.first + 1 for w in wanted], type_=ARRAY(Integer)),
    ).table_valued(
        column("parent", BigInteger),
        column("after", BigInteger),
        column("n", Integer),
        with_ordinality="page",
    )
    pages = pages.render_derived(name="pages")
    beyond = key < pages.c.after if descending else key > pages.c.after
    items = (
        (select(model) if rows is None else rows)
        .where(parent == pages.c.parent, beyond)
        .order_by(key.desc() if descending else key.asc())
        .limit(pages.c.n)
        .lateral("items")
    )
    order = items.c[key.key].desc() if descending else items.c[key.key].asc()
    statement = (
        select(pages.c.page, aliased(model, items))
        .join(items, true())
        .order_by(pages.c.page, order)
    )
    found: list[list[M]] = [[] for _ in wanted]
    for page, row in await session.execute(statement):
        found[page - 1].append(row)
    return [
        _page(rows_, key=key, first=w.first, after=w.after)
        for w, rows_ in zip(wanted, found, strict=True)
    ]


def _edge(after: int | None, descending: bool) -> int:
    """The cursor's key, or beyond every key when there is none."""
    if after is None:
        return BIGINT - 1 if descending else -BIGINT
    return after


async def list_users(session: AsyncSession, *, first: int, after: str | None) -> Page[User]:
    """Every account, newest first (admin listing)."""
    return await keyset_page(
        session, select(User), key=User.id, first=first, after=after, descending=True
    )


def filled_so_far(fill: Any) -> ScalarSelect[Any]:
    """The quantity of a fill's order filled up to and including that fill (``fill``: a
    fills table's model with ``id``, ``order_id`` and ``quantity``), for a select of it."""
    earlier = aliased(fill)
    return (
        select(func.sum(earlier.quantity))
        .where(earlier.order_id == fill.order_id, earlier.id <= fill.id)
        .scalar_subquery()
    )
