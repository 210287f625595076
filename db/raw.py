"""The asyncpg connection under a session's transaction, for hot paths; and the column
lists that raw SQL spells out, bound to their tables.

Two ways to talk to PostgreSQL. SQLAlchemy (Core and ORM, ``text()`` for what they cannot
say) is the default. Raw asyncpg (``driver``: the session's own connection, in the same
transaction, ``$n`` parameters, prepared statements cached by asyncpg) is for where a
request's latency or a batch's throughput is mostly statements: SQLAlchemy costs ~100 µs
of Python per statement, and the money write path measured ~4x faster raw
(docs/architecture.md). It exists for the hot writes: placement, the engine's batch,
the ledger's journal, the outbox. The other modules below are allowed as they are: each
saves statements or round trips on a frequent path, and none is worth the risk of a
rewrite. These modules import ``db.raw``, and only these (a test compares this list
with the importers, tests/platform/test_sql_columns.py: a new one is added here, with
its reason, on purpose):

Raw users:
    app.trading.placement       placement: a batch of orders in five round trips
    app.trading.sql             its statements (PLACE_SQL: journal, holds, orders, commands)
    app.trading.pretrade        the open-orders count, in the placement transaction
    app.trading.engine.sql      the engine's batch: lock, then one write statement
    app.trading.engine.rows     the rows of that write (declarations only)
    app.trading.engine.runner   the engine's reads (live orders, commands) per batch
    app.trading.commands        cancel / amend: commands and their outcomes per request
    app.trading.command_queue   storing commands in sequence (one statement)
    app.trading.markets         markets by symbol with USD rates, on every placement
    app.trading.reads           the book, trades and portfolio: the most frequent reads
    app.trading.market_maker    topping up the makers' balances through the journal
    app.ledger.journal          the ledger's journal: a batch of entries in one statement
    app.ledger.holds            holds, with the placement's journal
    app.ledger.idempotency      the idempotency key of every money request
    app.events.outbox           the outbox: events written with the change that made them
    app.events.event_log        the event log's consumers (locked checkpoint, next events)
    app.wallets.wallets         the enabled currency, read by every money request
    app.wallets.transfers       a transfer's parties in one statement
    app.social.copy_planning    copying a batch of leader fills (hot: every leader fill)
    app.social.copy_placement   placing a batch of copies and marking them
    app.social.follow_positions a batch of follower fills into follow positions
    app.social.follow_close     a follow's positions sold in one pass
    app.social.exchange_close   a follow's positions closed at its exchange account
    app.social.follows          follow statistics in three statements for any number
    app.social.leaderboard      the leaderboard's one ranking statement
    app.social.profit_share     profit share settlement, a follow per statement
    app.paper.ledger            paper balances, per paper step
    app.paper.live              the paper consumer's pass over live trades
    app.paper.state             a paper step's write
    app.staking.accrual         a day's accrual for every due stake in one statement
    app.notifications.notifications  notifications written with the outbox
    app.notifications.price_alerts   firing a batch of alerts
    app.marketdata.importer     candles imported by unnest arrays
    app.marketdata.store        candles and trades fetched from exchanges, upserted by unnest
    app.marketdata.trade_importer  trades imported by COPY, then one upsert
    app.marketdata.reads        candle reads (charts)
    app.backtesting.runs        a run's points, trades and decisions: thousands of rows by unnest
    app.backtesting.leader_history  a leader's fills and positions before each sell
    app.bots.runner             a batch of bots' steps: one read per table, one write per table
    app.bots.worker             which bots a batch of events wakes (an index per price bound)
    app.bots.venues             an exchange bot's budget: its orders and fills in one read
    app.risk.gate               the risk context of a batch, in the placement's markets statement
    app.risk.transitions        a scope's state locked and moved, its transition recorded
    app.risk.triggers           the fills consumer: a batch's limits, locks, P&L, cancels
    app.exchanges.orders        the user's row locked before an exchange order's risk check
    app.exchanges.following     reconciling an exchange account: thousands of orders by unnest
    app.exchanges.order_events  the column lists reconciliation's changes return, for events

(bench/ and tests/ use it too; they are not listed.) Everything else uses SQLAlchemy.

Column lists: SQL text names columns; when a list is longer than a few names, or its
rows are built in Python, the SQL module declares it with a helper of this one (``Arrays``
for the rows of an ``unnest``, ``bind`` for a literal list, ``bind_select`` for a select
list), which registers it in ``COLUMN_LISTS`` by its name, so that a test checks
every name against the table (tests/platform/test_sql_columns.py), and rows are
NamedTuples whose fields are the list: reordering one cannot shift the values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from keyword import iskeyword
from typing import Any

from sqlalchemy import BigInteger, Boolean, Date, DateTime, Integer, Numeric, SmallInteger, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession


async def driver(session: AsyncSession) -> Any:
    """The ``asyncpg.Connection`` running ``session``'s current transaction.

    SQLAlchemy's asyncpg adapter sends BEGIN lazily, on its own first statement; a raw
    statement before that would run in autocommit and survive a rollback. So start the
    adapter's transaction here if it has not started (tests/platform/test_raw.py guards this)."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    adapter = raw.dbapi_connection
    if adapter._transaction is None and adapter.isolation_level != "autocommit":
        async with adapter._execute_mutex:
            if adapter._transaction is None:
                try:
                    await adapter._start_transaction()
                except BaseException:
                    # Cut between BEGIN and its answer (a cancelled request): PostgreSQL may
                    # be in a transaction that SQLAlchemy never learnt of and asyncpg half
                    # remembers (it would make every later BEGIN on this connection a
                    # savepoint, and every COMMIT commit nothing). Closed now, its
                    # transaction ends with it; the pool replaces it (db/session.py).
                    raw.driver_connection.terminate()
                    raise
    return raw.driver_connection


def columns(rows: Iterable[Sequence[Any]], width: int | None = None) -> list[list[Any]]:
    """Rows as columns: the arrays of one ``unnest`` statement (rather than a statement
    per row). ``width``: how many columns there are, so that no rows give that many
    empty arrays (for a statement that takes them whether or not there are rows)."""
    table = [list(column) for column in zip(*rows, strict=True)]
    if width is not None and not table:
        return [[] for _ in range(width)]
    if width is not None and len(table) != width:
        raise ValueError(f"{len(table)} columns, not {width}")
    return table


def unnest_parameters(first: int, types: Sequence[str]) -> str:
    """``$first::type[], ...``: the array parameters of an ``unnest``."""
    return ", ".join(f"${first + n}::{kind}[]" for n, kind in enumerate(types))


@dataclass(frozen=True, slots=True)
class ColumnList:
    """A list of columns that SQL text spells out: its name (``module.NAME``, where it is
    declared), the (table, column) pairs it names, and the table it inserts into, if it is
    an INSERT's list (then every NOT NULL column without a default must be in it)."""

    name: str
    columns: tuple[tuple[str, str], ...]
    inserts: str | None = None


# every declared list, by name: tests/platform/test_sql_columns.py checks each one
COLUMN_LISTS: dict[str, ColumnList] = {}


def _register(name: str, columns: Iterable[tuple[str, str]], inserts: str | None) -> None:
    known = COLUMN_LISTS.get(name)
    listed = ColumnList(name, tuple(columns), inserts)
    if known is not None and known != listed:
        raise ValueError(f"two column lists are called {name}")
    COLUMN_LISTS[name] = listed


def _table(model: Any) -> Any:
    return model.__table__


def columns_of(model: Any, *, exclude: Iterable[str] = ()) -> tuple[str, ...]:
    """The names of ``model``'s columns in the table's order, but ``exclude`` (each of
    which must be one of them)."""
    names = tuple(_table(model).columns.keys())
    left_out = set(exclude)
    if unknown := left_out - set(names):
        raise ValueError(f"not columns of {_table(model).name}: {sorted(unknown)}")
    return tuple(name for name in names if name not in left_out)


def bind(name: str, model: Any, names: Sequence[str], *, inserts: bool = False) -> tuple[str, ...]:
    """``names`` (columns of ``model``), declared under ``name`` for the test that checks
    them; ``inserts``: they are an INSERT's list."""
    table = _table(model).name
    _register(name, ((table, column) for column in names), table if inserts else None)
    return tuple(names)


def bind_select(name: str, text: str, tables: Mapping[str, Any]) -> str:
    """A select list (``alias.column [AS name], ...``) declared under ``name``; ``tables``:
    its aliases' models. The text, unchanged."""
    pairs = []
    for item in text.split(","):
        source = item.split()[0]
        alias, _, column = source.partition(".")
        pairs.append((_table(tables[alias]).name, column))
    _register(name, pairs, None)
    return text


# the array type of an unnest parameter for a column's type (the first that matches)
_ARRAY_TYPES: tuple[tuple[type, str], ...] = (
    (BigInteger, "bigint"),
    (SmallInteger, "smallint"),
    (Integer, "integer"),
    (Numeric, "numeric"),  # unconstrained, as every cast here: rounding is the SQL's
    (Boolean, "boolean"),
    (DateTime, "timestamptz"),
    (Date, "date"),
    (JSONB, "jsonb"),
    (String, "text"),
)


def sql_type(model: Any, column: str) -> str:
    """The SQL type of ``model``'s ``column`` for an ``unnest`` array of it."""
    kind = _table(model).columns[column].type
    for python_type, name in _ARRAY_TYPES:
        if isinstance(kind, python_type):
            if name == "timestamptz" and not kind.timezone:
                return "timestamp"
            return name
    raise TypeError(f"no array type for {_table(model).name}.{column}: {kind!r}")


class Arrays:
    """The arrays of one ``unnest``, from ``row``, the NamedTuple of one of its rows: its
    fields name them in order (columns of ``model``, or ``extra``: name -> SQL type for
    those that are not), their types are the columns' (``sql_type``; or ``types``: name ->
    SQL type, for a column sent as another, JSON as text). Rows are built by
    name as ``row`` tuples; ``arrays`` turns them into the statement's parameters, in the
    one order the SQL text also takes from here (``parameters``, ``names``). ``row(...)``
    builds one, by keyword only (``keyword_constructor``)."""

    __slots__ = ("columns", "fields", "name", "row", "types")

    def __init__(
        self,
        name: str,
        row: Any,
        model: Any,
        *,
        inserts: bool = False,
        extra: Mapping[str, str] | None = None,
        types: Mapping[str, str] | None = None,
    ) -> None:
        extra = dict(extra or {})
        given = {**(types or {}), **extra}
        self.name = name
        self.fields: tuple[str, ...] = tuple(row._fields)
        if unknown := set(extra) - set(self.fields):
            raise ValueError(f"{name}: extra names that are not fields: {sorted(unknown)}")
        self.columns = tuple(field for field in self.fields if field not in extra)
        self.types = tuple(
            given[field] if field in given else sql_type(model, field) for field in self.fields
        )
        self.row = keyword_constructor(row)
        bind(name, model, self.columns, inserts=inserts)

    def __len__(self) -> int:
        return len(self.fields)

    def parameters(self, first: int) -> str:
        """``$first::type[], ...``: the statement's array parameters, from ``$first``."""
        return unnest_parameters(first, self.types)

    @property
    def names(self) -> str:
        """The fields, comma separated: the ``unnest``'s column aliases."""
        return ", ".join(self.fields)

    def arrays(self, rows: Iterable[Sequence[Any]]) -> list[list[Any]]:
        """The rows (of this ``row`` type) as the statement's arrays."""
        return columns(rows, len(self.fields))


def keyword_constructor(row: Any) -> Callable[..., Any]:
    """A constructor of the NamedTuple ``row`` that takes its fields by keyword only, so
    that no row is built by position; and at ~1/3 of the cost of calling ``row`` with
    keywords (bench/sql_rows.py): the engine builds thousands a second. Made as
    ``collections.namedtuple`` makes ``__new__``: from the fields' names (identifiers)."""
    fields = tuple(row._fields)
    if not all(f.isidentifier() and not iskeyword(f) and not f.startswith("_") for f in fields):
        raise ValueError(f"{row.__name__}: its fields are not plain identifiers")
    names = ", ".join(fields)
    source = f"lambda *, {names}: _new(_row, ({names},))"
    made = eval(source, {"__builtins__": {}, "_new": tuple.__new__, "_row": row})  # noqa: S307 (field names only)
    made.__name__ = made.__qualname__ = f"{row.__name__}_by_name"
    made.__doc__ = f"A {row.__name__}, its fields by keyword."
    return made
