"""The SQL of the request side of trading: storing commands in sequence (``ENQUEUE_SQL``),
locking a batch's traders (``TRADERS_SQL``) and writing a batch of orders with their holds
and commands (``PLACE_SQL``); ``ORDER_COLUMNS``, an order as the engine loads it."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from app.ledger import journal as ledger
from app.risk.sql import share_scopes
from app.trading.domain.orders import LIVE_STATUSES
from db.models import Currency, Hold, Order, OrderCommand
from db.raw import Arrays, bind_select

LIVE_STATUS_VALUES = [s.value for s in LIVE_STATUSES]


class CommandRow(NamedTuple):
    """A command as ``ENQUEUE_SQL`` stores it (its market and seq are the statement's)."""

    kind: str
    order_id: int | None
    user_id: int | None
    args: str  # JSON


COMMANDS = Arrays("app.trading.sql.COMMANDS", CommandRow, OrderCommand)
_E = 2 + len(COMMANDS)  # the channel, then the holds' (order id, hold id) arrays
# the commands ($2.., the first the kinds: their count) in sequence, with the wake-up
ENQUEUE_SQL = f"""
    WITH seq AS (
        UPDATE markets SET next_seq = next_seq + cardinality($2::text[]) WHERE id = $1
        RETURNING next_seq
    ), commands AS (
        INSERT INTO order_commands (market_id, seq, {COMMANDS.names})
        SELECT $1, seq.next_seq - cardinality($2::text[]) + c.n,
               {", ".join(f"c.{field}" for field in COMMANDS.fields)}
        FROM seq, unnest({COMMANDS.parameters(2)})
             WITH ORDINALITY AS c({COMMANDS.names}, n)
        RETURNING seq
    ), wake AS (
        SELECT pg_notify(${_E}, $1::text)
    ), held AS (
        UPDATE orders o SET hold_id = h.hold_id
        FROM unnest(${_E + 1}::bigint[], ${_E + 2}::bigint[]) AS h(order_id, hold_id)
        WHERE o.id = h.order_id
        RETURNING o.id
    )
    SELECT (SELECT max(seq) FROM commands) AS last, (SELECT count(*) FROM wake) AS woken,
           (SELECT count(*) FROM held) AS held
"""  # noqa: S608 (no input in the text: column names and parameter numbers)


# ``generic``: the rest of the placement transaction (markets, accounts, ``PLACE_SQL``)
# runs on generic plans. Those statements come again and again with arrays of other
# lengths, and under the default plan_cache_mode PostgreSQL plans each execution afresh
# (a custom plan), which cost more than running them (``PLACE_SQL``: ~0.4 ms of ~1 ms).
# Set for the transaction only (``is_local``), from its first statement (no extra round
# trip), which itself is planned before it takes effect: its live-orders count keeps the
# partial index that a custom plan can prove from ``$3``.
#
# The traders' rows are locked with their owners' (a bot's sub-account is its owner's,
# ``users.owner_id``) in one statement, in id order, FOR NO KEY UPDATE: the owner's
# USER limits and state bind their bots' orders and count them, so an owner's and their
# bots' placements take turns on the owner's row. Every writer that locks several user
# rows (placements, ``app.risk.triggers``) locks them in one statement in id order, so
# none waits for another in a cycle.
#
# First of all, the markets' and the platform's risk scope locks, shared ($4: the
# batch's symbols; $5: the risk checks are on): ``app.risk.sql.share_scopes``.
TRADERS_SQL = f"""
    WITH generic AS MATERIALIZED (
        SELECT set_config('plan_cache_mode', 'force_generic_plan', true) AS mode
    ), {share_scopes("$5::boolean", "symbol = ANY($4::text[])")}, locked AS MATERIALIZED (
        SELECT u.id, u.owner_id, u.trading_enabled FROM users u
        WHERE (SELECT n FROM scopes) >= 0 AND u.id = ANY($1::bigint[] || ARRAY(
            SELECT s.owner_id FROM users s
            WHERE s.id = ANY($1::bigint[]) AND s.owner_id IS NOT NULL))
        ORDER BY u.id
        FOR NO KEY UPDATE
    )
    SELECT w.n,
           u.trading_enabled AND coalesce(
               (SELECT o.trading_enabled FROM locked o WHERE o.id = u.owner_id), true
           ) AS trading_enabled,
           (SELECT o.id FROM orders o
            WHERE o.user_id = u.id AND o.client_order_id = w.client_order_id) AS existing_id,
           (SELECT count(*) FROM orders o
            WHERE o.user_id = u.id AND o.status = ANY($3::text[])) AS open_orders,
           nextval(pg_get_serial_sequence('orders', 'id')) AS order_id,
           nextval(pg_get_serial_sequence('holds', 'id')) AS hold_id
    FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS w(user_id, client_order_id, n)
    JOIN locked u ON u.id = w.user_id
    CROSS JOIN generic
    ORDER BY w.n
"""  # noqa: S608 (no input in the text)


class PlacedRow(NamedTuple):
    """One order as ``PLACE_SQL`` takes it: its columns (id first, hold_id last), its
    hold's currency and amount and its first command's kind."""

    id: int
    user_id: int
    market_id: int
    client_order_id: str
    request_hash: str
    side: str
    type: str
    time_in_force: str
    post_only: bool
    status: str
    quantity: Decimal
    price: Decimal | None
    book_price: Decimal
    stop_price: Decimal | None
    trailing_offset: Decimal | None
    trailing_offset_type: str | None
    activation_price: Decimal | None
    trailing_active: bool
    expires_at: datetime | None
    hold_id: int
    hold_currency: str
    hold_amount: Decimal
    kind: str


PLACED = Arrays(
    "app.trading.sql.PLACED",
    PlacedRow,
    Order,
    inserts=True,
    extra={"hold_currency": "text", "hold_amount": "numeric", "kind": "text"},
)
PLACED_COLUMNS = PLACED.columns  # the orders' columns PLACE_SQL writes


# An order as the matching engine loads it (``o`` orders, ``h`` its hold, ``c`` the hold's
# currency): read by the engine, and returned by ``PLACE_SQL`` for it
ORDER_COLUMNS = bind_select(
    "app.trading.sql.ORDER_COLUMNS",
    """
    o.id, o.user_id, o.side, o.type, o.status, o.time_in_force, o.post_only, o.quantity,
    o.filled_quantity, o.executed_value, o.fees, o.fee_numerator, o.book_price,
    o.stop_price, o.trailing_offset, o.trailing_offset_type, o.activation_price,
    o.trailing_active, o.trailing_extreme, o.expires_at, o.hold_id, o.list_id, o.list_role,
    o.priority, o.reason, h.user_id AS hold_user, h.currency AS hold_currency,
    h.amount AS hold_amount, h.remaining AS hold_remaining, h.status AS hold_status,
    c.scale AS hold_scale
""",
    {"o": Order, "h": Hold, "c": Currency},
)
# Everything a batch of orders writes, in one statement after the journal's CTEs (the
# HOLD entries, $1..$11): the holds and the orders (ids taken with the traders' lock),
# their commands in sequence per market, the engines' wake-up. The markets rows locked
# here (the sequence) are held only to COMMIT. No wake-up for a market whose engine runs
# in this process and applies them in this transaction: the last two arrays, (market id,
# the seq its engine has applied); it does unless ``markets.applied_seq`` says otherwise.
_P = ledger.JOURNAL_PARAMETERS + 1  # the first of this statement's own parameters
_C = _P + len(PLACED)  # the channel, then the engines here
PLACE_SQL = f"""
    WITH {ledger.JOURNAL_CTES},
    placed AS (
        SELECT * FROM unnest({PLACED.parameters(_P)}) WITH ORDINALITY AS p({PLACED.names}, n)
    ), new_holds AS (
        INSERT INTO holds (id, user_id, currency, amount, remaining, reference, status)
        OVERRIDING SYSTEM VALUE
        SELECT hold_id, user_id, hold_currency, hold_amount, hold_amount, 'order:' || id,
               'PENDING'
        FROM placed
        RETURNING *
    ), new_orders AS (
        INSERT INTO orders ({", ".join(PLACED_COLUMNS)})
        OVERRIDING SYSTEM VALUE
        SELECT {", ".join(PLACED_COLUMNS)} FROM placed ORDER BY n
        RETURNING *
    ), per_market AS (
        SELECT market_id, count(*) AS placed FROM placed GROUP BY market_id
    ), seq AS (
        UPDATE markets m SET next_seq = m.next_seq + per_market.placed
        FROM per_market WHERE m.id = per_market.market_id
        RETURNING m.id, m.next_seq - per_market.placed AS before, m.applied_seq
    ), commands AS (
        INSERT INTO order_commands (market_id, seq, kind, order_id, user_id, args)
        SELECT p.market_id, seq.before + row_number() OVER (PARTITION BY p.market_id ORDER BY p.n),
               p.kind, p.id, p.user_id, '{{}}'::jsonb
        FROM placed p JOIN seq ON seq.id = p.market_id
        RETURNING market_id, order_id, seq, kind
    ), wake AS (
        SELECT pg_notify(${_C}, s.id::text)
        FROM seq s LEFT JOIN unnest(${_C + 1}::bigint[], ${_C + 2}::bigint[]) AS here(id, applied)
          ON here.id = s.id
        WHERE here.applied IS DISTINCT FROM s.applied_seq
    )
    SELECT cmd.market_id, cmd.order_id, cmd.seq, cmd.kind, s.applied_seq, {ORDER_COLUMNS},
           {ledger.JOURNAL_COUNTS},
           (SELECT count(*) FROM new_holds) AS holds, (SELECT count(*) FROM new_orders) AS orders,
           (SELECT count(*) FROM wake) AS woken
    FROM commands cmd
    JOIN seq s ON s.id = cmd.market_id
    JOIN new_orders o ON o.id = cmd.order_id
    JOIN new_holds h ON h.id = o.hold_id
    JOIN currencies c ON c.code = h.currency
    ORDER BY cmd.seq
"""  # noqa: S608 (no input in the text: column names and parameter numbers)
