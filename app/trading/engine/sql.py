"""The SQL of the engine: what it reads (live orders, commands, orders by id) and the two
statements that write a batch (``LOCK_SQL``, then ``WRITE_SQL``), with their parameters."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from itertools import accumulate
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import InvariantViolation
from app.events import outbox
from app.events.engine_signals import APPLIED_CHANNEL
from app.ledger import journal as ledger
from app.trading.domain import orders as rules
from app.trading.domain.positions import Position
from app.trading.engine import rows
from app.trading.engine.events import events_of
from app.trading.engine.market import MarketState
from app.trading.engine.settlement import CASH, decimal_amount, settle_positions
from app.trading.engine.state import Batch
from app.trading.sql import ORDER_COLUMNS
from db.raw import Arrays, columns

_D = Decimal

_ORDER_FROM = """
    FROM orders o
    LEFT JOIN holds h ON h.id = o.hold_id
    LEFT JOIN currencies c ON c.code = h.currency
"""

# ``own_priority``: the order got its place in the queue from a command of its own (its
# PLACE or AMEND), not as a consequence of another order's command (a stop it triggered,
# a bracket's take-profit): see ``MarketEngine.restore``.
LIVE_ORDERS_SQL = " ".join(
    (
        "SELECT",
        ORDER_COLUMNS,
        ", EXISTS (SELECT 1 FROM order_commands pc WHERE pc.market_id = o.market_id",
        "AND pc.seq = o.priority AND pc.order_id = o.id) AS own_priority",
        _ORDER_FROM,
        "WHERE o.market_id = $1",
        # the statuses as constants (not a parameter): the engine's connection plans
        # generically (``_own``), and a generic plan cannot prove a partial index's
        # predicate from a parameter
        "AND o.status IN (" + ", ".join(sorted(f"'{s.value}'" for s in rules.LIVE_STATUSES)) + ")",
        "ORDER BY o.id",
    )
)
# The orders and every order of their lists (a bracket's exits come with its entry).
COMMANDS_SQL = (
    "SELECT seq, kind, order_id, user_id, args FROM order_commands"
    " WHERE market_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
)
ORDERS_BY_ID_SQL = " ".join(
    (
        "SELECT",
        ORDER_COLUMNS,
        _ORDER_FROM,
        # one indexed lookup per id and per list: ``id = ANY OR list_id IN (...)`` was a
        # scan of every order ever placed
        "WHERE o.id IN (SELECT unnest($1::bigint[]) UNION SELECT l.id FROM orders f",
        "JOIN orders l ON l.list_id = f.list_id WHERE f.id = ANY($1::bigint[])) ORDER BY o.id",
    )
)

_POSITIONS_SQL_BODY = """
    SELECT p.user_id, p.currency, p.quantity, p.cost_usd, p.realized_pnl_usd
    FROM positions p
    JOIN unnest($4::bigint[], $5::text[]) AS k(user_id, currency)
      ON p.user_id = k.user_id AND p.currency = k.currency
    ORDER BY p.user_id, p.currency
    FOR UPDATE OF p
"""
# What a batch settles, locked in one statement before it is written: the accounts of its
# journal entries ($1..$3, ``ledger.ACCOUNT_CTES``: made if new, the others in primary-key
# order), its positions ($4, $5: made if new, the others in key order) and the quote
# currency's USD rate ($6). A row another transaction makes after this statement's
# snapshot is missing from the answer (locked by a statement after it).
_LOCK_SQL = f"""
    WITH {ledger.ACCOUNT_CTES},
    new_positions AS (
        INSERT INTO positions (user_id, currency)
        SELECT * FROM unnest($4::bigint[], $5::text[])
        ON CONFLICT DO NOTHING
        RETURNING user_id, currency, quantity, cost_usd, realized_pnl_usd
    ), old_positions AS (
        {_POSITIONS_SQL_BODY}
    )
    SELECT 'account' AS row, a.id, a.user_id, a.currency, a.kind, a.balance,
           NULL::numeric AS quantity, NULL::numeric AS cost_usd,
           NULL::numeric AS realized_pnl_usd
    FROM ({ledger.ACCOUNTS_LOCKED}) AS a
    UNION ALL
    SELECT 'position', NULL, user_id, currency, NULL, NULL, quantity, cost_usd,
           realized_pnl_usd
    FROM new_positions
    UNION ALL
    SELECT 'position', NULL, user_id, currency, NULL, NULL, quantity, cost_usd,
           realized_pnl_usd
    FROM old_positions
    UNION ALL
    SELECT 'rate', NULL, NULL, currency, NULL, usd_price, NULL, NULL, NULL
    FROM reference_prices WHERE currency = $6
"""  # noqa: S608 (no input in the text)
_POSITIONS_SQL = _POSITIONS_SQL_BODY.replace("$4", "$1").replace("$5", "$2")

# Everything a batch writes, in one statement after the journal's CTEs ($1..$11): its
# fills (with their journal entry, by number), the orders, holds and positions it changed,
# its outbox events, its commands' outcomes, the market's sequence and last price (and
# the base currency's reference price after a trade in a USD market), and the NOTIFY
# that tells waiting API processes the commands are applied (delivered at COMMIT).
_WRITE_ARRAYS: dict[str, Arrays] = {
    "fills": rows.FILLS,
    "orders": rows.ORDERS,
    "holds": rows.HOLDS,
    "positions": rows.POSITIONS,
    "events": outbox.EVENTS,
    "outcomes": rows.OUTCOMES,
}
_W = ledger.JOURNAL_PARAMETERS + 1  # market id, fee currency, now; then the arrays
_A = dict(
    zip(
        _WRITE_ARRAYS,
        accumulate((len(t) for t in _WRITE_ARRAYS.values()), initial=_W + 3),
        strict=False,
    )
)
_M = _W + 3 + sum(len(t) for t in _WRITE_ARRAYS.values())  # the market's row, then NOTIFY
_WRITE_SQL = f"""
    WITH {ledger.JOURNAL_CTES},
    new_fills AS (
        INSERT INTO fills (market_id, trade_id, seq, order_id, user_id, side, liquidity,
                           price, quantity, quote_amount, fee, entry_id, fee_currency,
                           created_at)
        SELECT ${_W}, f.trade_id, f.seq, f.order_id, f.user_id, f.side, f.liquidity, f.price,
               f.quantity, f.quote_amount, f.fee, ids.id, ${_W + 1}, ${_W + 2}
        FROM unnest({rows.FILLS.parameters(_A["fills"])})
             WITH ORDINALITY AS f({rows.FILLS.names}, n)
        JOIN ids ON ids.n = f.entry
        ORDER BY f.n
        RETURNING 1
    ), changed_orders AS (
        UPDATE orders o SET status = v.status, quantity = v.quantity,
               filled_quantity = v.filled_quantity, executed_value = v.executed_value,
               fees = v.fees, fee_numerator = v.fee_numerator, book_price = v.book_price,
               priority = v.priority, reason = v.reason, hold_id = v.hold_id,
               trailing_active = v.trailing_active, trailing_extreme = v.trailing_extreme,
               updated_at = ${_W + 2}
        FROM unnest({rows.ORDERS.parameters(_A["orders"])}) AS v({rows.ORDERS.names})
        WHERE o.id = v.id
        RETURNING 1
    ), changed_holds AS (
        UPDATE holds h SET amount = v.amount, remaining = v.remaining, status = v.status,
               resolved_at = CASE WHEN v.status = 'PENDING' THEN NULL ELSE now() END
        FROM unnest({rows.HOLDS.parameters(_A["holds"])}) AS v({rows.HOLDS.names})
        WHERE h.id = v.id
        RETURNING 1
    ), changed_positions AS (
        UPDATE positions p SET quantity = v.quantity, cost_usd = round(v.cost_usd, 18),
               realized_pnl_usd = round(v.realized_pnl_usd, 18), updated_at = now()
        FROM unnest({rows.POSITIONS.parameters(_A["positions"])}) AS v({rows.POSITIONS.names})
        WHERE p.user_id = v.user_id AND p.currency = v.currency
        RETURNING 1
    ), new_events AS (
        {outbox.insert_sql(_A["events"])}
        RETURNING 1
    ), command_outcomes AS (
        UPDATE order_commands c SET outcome = v.outcome
        FROM unnest({rows.OUTCOMES.parameters(_A["outcomes"])}) AS v({rows.OUTCOMES.names})
        WHERE c.market_id = ${_W} AND c.seq = v.seq
        RETURNING 1
    ), market AS (
        UPDATE markets SET applied_seq = ${_M}, book_seq = ${_M + 1},
               last_trade_id = ${_M + 2}, last_price = ${_M + 3}::numeric
        WHERE id = ${_W} AND applied_seq <= ${_M}
        RETURNING id
    ), price AS (
        UPDATE reference_prices SET usd_price = ${_M + 3}::numeric, updated_at = now()
        WHERE currency = ${_M + 4} AND ${_M + 5}::boolean
        RETURNING 1
    ), applied AS (
        SELECT pg_notify(${_M + 6}, ${_M + 7}) FROM market
    )
    SELECT {ledger.JOURNAL_COUNTS},
           (SELECT count(*) FROM new_fills) AS fills,
           (SELECT count(*) FROM changed_orders) AS orders,
           (SELECT count(*) FROM changed_holds) AS holds,
           (SELECT count(*) FROM changed_positions) AS positions,
           (SELECT count(*) FROM new_events) AS events,
           (SELECT count(*) FROM command_outcomes) AS outcomes,
           (SELECT count(*) FROM market) AS market,
           (SELECT count(*) FROM price) AS priced,
           (SELECT count(*) FROM applied) AS announced
"""  # noqa: S608 (no input in the text: column names and parameter numbers)


async def write(
    pg: Any, session: AsyncSession, state: MarketState, batch: Batch, now: datetime
) -> None:
    """The batch in two statements: lock what it settles (``_lock``), then write it
    all (``_WRITE_SQL``: journal, fills, orders, holds, positions, events, command
    outcomes, the market's sequence and price, the NOTIFY of what is applied)."""
    spec = state.spec
    positions = await _lock(pg, batch, spec.quote)
    # what another transaction made after _LOCK_SQL's snapshot is locked here
    await batch.journal.lock_and_settle(session)
    pending = batch.journal.take()
    journal = pending.parameters if pending else columns([], ledger.JOURNAL_PARAMETERS)
    events = events_of(state, batch, now)
    book_seq = state.applied if batch.levels else state.book_seq
    last_price = None if state.last_price is None else spec.price(state.last_price)
    assert state.book is not None
    written_rows: dict[str, list[Any]] = {
        "fills": batch.fills,
        "orders": _order_rows(spec, batch),
        "holds": [
            rows.HOLDS.row(
                id=h.id,
                amount=decimal_amount(spec, h.currency, h.amount),
                remaining=decimal_amount(spec, h.currency, h.remaining),
                status=h.status,
            )
            for h in batch.holds.values()
        ],
        "positions": positions,
        "events": events,
        "outcomes": [
            rows.OUTCOMES.row(seq=seq, outcome=outcome) for seq, outcome in batch.outcomes.items()
        ],
    }
    written = await pg.fetchrow(
        _WRITE_SQL,
        *journal,
        state.market_id,
        spec.quote,
        now,
        *(
            parameter
            for name, arrays in _WRITE_ARRAYS.items()
            for parameter in arrays.arrays(written_rows[name])
        ),
        state.applied,
        book_seq,
        state.book.last_trade_id,
        last_price,
        spec.base,
        bool(batch.trades and spec.quote in CASH and last_price is not None),
        APPLIED_CHANNEL,
        f"{state.market_id}:{state.applied}",
    )
    if pending is not None:
        pending.check(written)
    if written["market"] != 1:
        raise InvariantViolation("another engine moved this market on")
    if any(written[name] != len(written_rows[name]) for name in _WRITE_ARRAYS):
        raise InvariantViolation(f"the engine's batch was not written exactly once: {written}")
    state.book_seq = book_seq


async def _lock(pg: Any, batch: Batch, quote: str) -> list[rows.PositionChange]:
    """Lock what the batch settles, in one statement (``_LOCK_SQL``): the accounts of
    its deferred journal entries (primary-key order, as every locker of accounts) and
    its positions, with the quote currency's USD rate; the positions' new rows."""
    journal = batch.journal
    refs = list(journal.unlocked())
    keys = sorted({(user, asset) for user, asset, *_ in batch.positions})
    if not refs and not keys:
        return []
    locked = await pg.fetch(
        _LOCK_SQL,
        *ledger.lock_accounts_parameters(refs),
        [k[0] for k in keys],
        [k[1] for k in keys],
        quote,
    )
    journal.adopt(ledger.locked_accounts(r for r in locked if r["row"] == "account"))
    positions = [r for r in locked if r["row"] == "position"]
    have = {(r["user_id"], r["currency"]) for r in positions}
    if late := [k for k in keys if k not in have]:
        # made by another transaction after this statement's snapshot: locked now
        positions += await pg.fetch(_POSITIONS_SQL, [k[0] for k in late], [k[1] for k in late])
    current = {
        (r["user_id"], r["currency"]): Position(r["quantity"], r["cost_usd"], r["realized_pnl_usd"])
        for r in positions
    }
    rate = next((r["balance"] for r in locked if r["row"] == "rate"), _D(0))
    settle_positions(current, batch.positions, rate)
    return [
        rows.POSITIONS.row(
            user_id=user_id,
            currency=currency,
            quantity=(p := current[user_id, currency]).quantity,
            cost_usd=p.cost,
            realized_pnl_usd=p.realized_pnl,
        )
        for user_id, currency in keys
    ]


def _order_rows(spec: rules.MarketSpec, batch: Batch) -> list[rows.OrderChange]:
    q = lambda units: _D(units).scaleb(-spec.quote_scale)  # noqa: E731
    changes = []
    for o in batch.orders.values():
        state = o.trailing_state
        changes.append(
            rows.ORDERS.row(
                id=o.id,
                status=o.status.value,
                quantity=spec.quantity(o.quantity),
                filled_quantity=spec.quantity(o.filled),
                executed_value=q(o.executed),
                fees=q(o.fees),
                fee_numerator=_D(o.fee_numerator),
                book_price=spec.price(o.price),
                priority=o.priority,
                reason=o.reason,
                hold_id=o.hold_id,
                trailing_active=bool(state and state.active),
                trailing_extreme=(
                    None if state is None or state.extreme is None else spec.price(state.extreme)
                ),
            )
        )
    return changes
