"""The risk engine's SQL: what a batch of orders is checked against (``CONTEXT_SQL``, a
select-list item of the placement's markets statement: no round trip of its own), a
scope's P&L, and the writes of a transition."""

from __future__ import annotations

from app.risk.domain.limits import PRE_TRADE_KINDS
from app.risk.domain.states import PLATFORM_ID
from db.models.columns import LIVE_ORDER

_LIVE = LIVE_ORDER.replace("status", "o.status", 1)

# The MARKET and PLATFORM scopes' advisory locks (class ``SCOPE_LOCK``; key: the market's
# id, the platform's ``PLATFORM_ID``). A placement holds those of its markets and the
# platform's shared, from its first statement (``share_scopes``, before the traders' rows
# are locked) to its commit; a change of such a scope's state or limits takes them
# exclusive (``LOCK_SCOPES_SQL``, before anything else it locks). So the change waits for
# the placements that read the state it replaces, and those after it read the new one:
# no order passes a market's or the platform's halt or limit that flips at that moment.
# Shared holders do not wait for each other (no row is written: the lock manager only).
SCOPE_LOCK = 0x5253


def share_scopes(on: str, markets: str) -> str:
    """A CTE taking the shared locks of the platform and of the markets ``markets`` (a
    condition on ``markets``' columns) picks, in key order, where ``on`` (false with the
    risk checks off: none); its ``n`` is how many."""
    return f"""scopes AS MATERIALIZED (
        SELECT count(pg_advisory_xact_lock_shared({SCOPE_LOCK}, s.k)) AS n FROM (
            SELECT {PLATFORM_ID} AS k WHERE {on}
            UNION SELECT id::int FROM markets WHERE {on} AND ({markets})
            ORDER BY 1
        ) s
    )"""  # noqa: S608 (no input in the text)


# the exclusive locks of $1 (keys, sorted)
LOCK_SCOPES_SQL = (
    f"SELECT count(pg_advisory_xact_lock({SCOPE_LOCK}, k)) FROM unnest($1::int[]) AS k"  # noqa: S608
)
PRE_TRADE = "(" + ", ".join(sorted(f"'{k.value}'" for k in PRE_TRADE_KINDS)) + ")"
# what a trader's limits need read: how many of the latest orders, cancels, exposure
_WATCHES = """
    coalesce(max(l.threshold) FILTER (WHERE l.kind IN ('TRADES_PER_DAY', 'ORDER_RATE')), 0)
        AS cap,
    coalesce(bool_or(l.kind = 'CANCEL_RATE'), false) AS cancels,
    coalesce(bool_or(l.kind IN ('ASSET_EXPOSURE', 'TOTAL_EXPOSURE', 'CONCENTRATION')), false)
        AS exposure
"""

# The scopes of a batch: $2 its traders, each as a person (``coalesce(owner_id, id)``: a
# bot's sub-account is its owner's) whose ORDER and USER scopes its orders meet, and a
# bot (``bots.account_id``) for a sub-account; $3 the follows of its copy orders, the
# markets of its symbols ($1) and the platform: their PRE_TRADE limits (the others act
# through the states) and non-ACTIVE states. Per subject (a person: themselves and
# every sub-account of theirs; a bot: its sub-account) what those limits watch ($5 the
# start of the day, $6 a minute ago, $4 now, $7 the cash currencies, $8 true: counts
# without a cap, for the status; $9 the day, YYYY-MM-DD): today's orders, newest first
# (per account, ``ix_orders_user_id_created_at``; never more than past the largest count
# threshold: ``cap``, of which the last minute's), the cancels of the last minute,
# exposure (held and being acquired, USD per asset) and equity, each read only for a
# subject whose limits (or, for a person, the market's, the platform's) watch it. A
# batch without limits reads the traders' rows, the limits and states tables by key and
# nothing else. ``warned``: the (person, limit) pairs already warned of today
# (``app.risk.notices``: one unique key each; a bot's warnings go to its owner), so an
# order near a limit writes its warning once a day, and one far from any reads nothing
# more. As compact JSON (arrays, amounts as text, so they stay exact; ``json``, not
# ``jsonb``: built once and sent as text, never queried).
#
# Limits and states are looked up by key, per scope of the batch: the lateral subquery's
# ``OFFSET 0`` keeps it a subquery (an index lookup per scope), where the planner would
# otherwise hash-join it with a scan of every user's limits (a generic plan, whose
# estimates favour the scan; its filter cost grows with every user who sets a limit). A
# non-ACTIVE state comes from ``ix_risk_states_not_active``.
CONTEXT_SQL = f"""(
    WITH batch_markets AS (
        SELECT id FROM markets WHERE symbol = ANY($1::text[])
    ), who AS (
        SELECT u.id AS trader, coalesce(u.owner_id, u.id) AS person, b.id AS bot
        FROM users u LEFT JOIN bots b ON b.account_id = u.id
        WHERE u.id = ANY($2::bigint[])
    ), refs AS (
        SELECT DISTINCT 'USER'::text AS scope, person AS scope_id FROM who
        UNION ALL SELECT DISTINCT 'ORDER', person FROM who
        UNION ALL SELECT 'BOT', bot FROM who WHERE bot IS NOT NULL
        UNION ALL SELECT 'FOLLOW', f FROM unnest($3::bigint[]) AS f
        UNION ALL SELECT 'MARKET', id FROM batch_markets
        UNION ALL SELECT 'PLATFORM', {PLATFORM_ID}
    ), lim AS (
        SELECT l.* FROM refs r CROSS JOIN LATERAL (
            SELECT l.id, l.scope, l.scope_id, l.kind, l.threshold, l.action, l.warn_ratio
            FROM risk_limits l
            WHERE l.scope = r.scope AND l.scope_id = r.scope_id AND l.kind IN {PRE_TRADE}
            OFFSET 0
        ) AS l
    ), st AS (
        SELECT s.scope, s.scope_id, s.state, s.cooldown_until, s.reason, s.limit_id
        FROM refs r JOIN risk_states s ON s.scope = r.scope AND s.scope_id = r.scope_id
        WHERE s.state <> 'ACTIVE'
    ), own AS (
        SELECT l.scope, l.scope_id, {_WATCHES}
        FROM lim l WHERE l.scope IN ('USER', 'BOT') GROUP BY l.scope, l.scope_id
    ), every AS (
        SELECT {_WATCHES} FROM lim l WHERE l.scope IN ('MARKET', 'PLATFORM')
    ), needs AS (
        SELECT 'USER'::text AS scope, p.person AS id, greatest(own.cap, every.cap) AS cap,
               coalesce(own.cancels, false) OR every.cancels AS cancels,
               coalesce(own.exposure, false) OR every.exposure AS exposure,
               p.person || ARRAY(SELECT s.id FROM users s WHERE s.owner_id = p.person)
                   AS accounts
        FROM (SELECT DISTINCT person FROM who) AS p
        CROSS JOIN every
        LEFT JOIN own ON own.scope = 'USER' AND own.scope_id = p.person
        WHERE own.scope_id IS NOT NULL OR every.cap > 0 OR every.cancels OR every.exposure
        UNION ALL
        SELECT own.scope, own.scope_id, own.cap, own.cancels, own.exposure,
               ARRAY(SELECT w.trader FROM who w WHERE w.bot = own.scope_id)
        FROM own WHERE own.scope = 'BOT'
    ), valued AS (
        SELECT n.scope, n.id, a.currency AS asset,
               a.balance * coalesce(p.usd_price, 0) AS usd, true AS held
        FROM needs n
        JOIN ledger_accounts a ON a.user_id = ANY(n.accounts)
        LEFT JOIN reference_prices p ON p.currency = a.currency
        WHERE n.exposure
        UNION ALL
        SELECT n.scope, n.id, CASE WHEN o.side = 'BUY' THEN m.base ELSE m.quote END,
               (o.quantity - o.filled_quantity) * o.book_price * coalesce(q.usd_price, 0),
               false
        FROM needs n
        JOIN orders o ON o.user_id = ANY(n.accounts) AND {_LIVE}
        JOIN markets m ON m.id = o.market_id
        LEFT JOIN reference_prices q ON q.currency = m.quote
        WHERE n.exposure
    ), per_asset AS (
        SELECT scope, id, asset, sum(usd) AS usd, sum(usd) FILTER (WHERE held) AS held
        FROM valued GROUP BY scope, id, asset
    ), exposure AS (
        SELECT scope, id,
               json_object_agg(asset, usd::text) FILTER (WHERE NOT asset = ANY($7::text[]))
                   AS assets,
               coalesce(sum(held), 0) AS equity
        FROM per_asset GROUP BY scope, id
    ), subjects AS (
        SELECT n.scope, n.id, c.today, c.minute,
               CASE WHEN n.cancels THEN (
                   SELECT count(*) FROM order_commands oc
                   WHERE oc.user_id = ANY(n.accounts) AND oc.kind IN ('CANCEL', 'CANCEL_ALL')
                     AND oc.created_at >= $6) END AS cancels,
               e.assets, e.equity
        FROM needs n
        LEFT JOIN LATERAL (
            SELECT least(sum(a.today), cap.n) AS today, least(sum(a.minute), cap.n) AS minute
            FROM (SELECT CASE WHEN $8::boolean THEN NULL
                              WHEN n.cap > 0 THEN n.cap::bigint + 1 ELSE 0 END AS n) AS cap
            CROSS JOIN unnest(n.accounts) AS m(account)
            CROSS JOIN LATERAL (
                SELECT count(*) AS today, count(*) FILTER (WHERE r.created_at >= $6) AS minute
                FROM (SELECT o.created_at FROM orders o
                      WHERE o.user_id = m.account AND o.created_at >= $5
                      ORDER BY o.created_at DESC
                      LIMIT cap.n) AS r
            ) AS a
            GROUP BY cap.n
        ) c ON true
        LEFT JOIN exposure e ON e.scope = n.scope AND e.id = n.id
    ), warned AS (
        SELECT n.user_id, l.id
        FROM lim l
        JOIN notifications n ON n.user_id = l.scope_id
             AND n.source = 'risk-warning:' || l.id || ':' || $9::text
        WHERE l.scope IN ('USER', 'ORDER')
        UNION ALL
        SELECT n.user_id, l.id
        FROM lim l CROSS JOIN (SELECT DISTINCT person FROM who) AS p
        JOIN notifications n ON n.user_id = p.person
             AND n.source = 'risk-warning:' || l.id || ':' || $9::text
        WHERE l.scope NOT IN ('USER', 'ORDER')
    ), ages AS (
        SELECT m.id, extract(epoch FROM $4::timestamptz - (
                   SELECT max(f.created_at) FROM fills f WHERE f.market_id = m.id)) AS age
        FROM batch_markets m
        WHERE EXISTS (SELECT 1 FROM lim WHERE lim.kind = 'STALE_MARKET_DATA')
    )
    SELECT json_build_array(
        (SELECT json_agg(json_build_array(id, scope, scope_id, kind, threshold::text,
                                            action, warn_ratio::text)) FROM lim),
        (SELECT json_agg(json_build_array(scope, scope_id, state, cooldown_until, reason,
                                            limit_id)) FROM st),
        (SELECT json_agg(json_build_array(scope, id, today, minute, cancels,
                                            equity::text, assets)) FROM subjects),
        (SELECT json_object_agg(id::text, age::text) FROM ages),
        (SELECT json_agg(json_build_array(trader, person, bot)) FROM who
         WHERE person <> trader OR bot IS NOT NULL),
        (SELECT json_agg(json_build_array(user_id, id)) FROM warned)
    )::text
)"""  # noqa: S608 (no input in the text)

# A USER scope's P&L (``app.risk.domain.pnl``): realised and unrealised profit in USD,
# each asset at its reference price, of the person's own positions and every
# sub-account's (``users.owner_id``: their live bots'; a paper bot has none), keyed by
# the person ($1 people).
PNL_SQL = """
    SELECT coalesce(u.owner_id, u.id) AS user_id, sum(p.realized_pnl_usd) AS realised,
           sum(p.realized_pnl_usd + p.quantity * coalesce(r.usd_price, 0) - p.cost_usd) AS pnl
    FROM users u
    JOIN positions p ON p.user_id = u.id
    LEFT JOIN reference_prices r ON r.currency = p.currency
    WHERE u.id = ANY($1::bigint[]) OR u.owner_id = ANY($1::bigint[])
    GROUP BY coalesce(u.owner_id, u.id)
"""

# A bot's P&L: its sub-account's positions, as ``PNL_SQL`` ($1 bots).
BOT_PNL_SQL = """
    SELECT b.id AS scope_id, sum(p.realized_pnl_usd) AS realised,
           sum(p.realized_pnl_usd + p.quantity * coalesce(r.usd_price, 0) - p.cost_usd) AS pnl
    FROM bots b
    JOIN positions p ON p.user_id = b.account_id
    LEFT JOIN reference_prices r ON r.currency = p.currency
    WHERE b.id = ANY($1::bigint[])
    GROUP BY b.id
"""
# A follow's P&L: its copy positions (``follow_positions``, kept by the copy-positions
# consumer in the follow's quote currency), in USD ($1 follows).
FOLLOW_PNL_SQL = """
    SELECT f.id AS scope_id, sum(fp.realized_pnl * coalesce(q.usd_price, 0)) AS realised,
           sum((fp.realized_pnl - fp.cost) * coalesce(q.usd_price, 0)
               + fp.quantity * coalesce(r.usd_price, 0)) AS pnl
    FROM follows f
    JOIN follow_positions fp ON fp.follow_id = f.id
    LEFT JOIN reference_prices q ON q.currency = f.quote
    LEFT JOIN reference_prices r ON r.currency = fp.currency
    WHERE f.id = ANY($1::bigint[])
    GROUP BY f.id
"""

STATE_COLUMNS = """
    scope, scope_id, state, since, cooldown_until, reason, limit_id, marks_day,
    day_start_pnl, week_start_pnl, peak_pnl, realised_pnl, last_pnl, consecutive_losses
"""
# The states of scopes ($1 scopes, $2 ids): made ACTIVE where missing, then locked in key
# order (a second statement, so it sees the rows another transaction made meanwhile):
# whoever changes a state holds its row until COMMIT.
MAKE_STATES_SQL = """
    INSERT INTO risk_states (scope, scope_id)
    SELECT DISTINCT * FROM unnest($1::text[], $2::bigint[]) ORDER BY 1, 2
    ON CONFLICT DO NOTHING
"""
LOCK_STATES_SQL = f"""
    SELECT {STATE_COLUMNS} FROM risk_states
    WHERE (scope, scope_id) IN (SELECT * FROM unnest($1::text[], $2::bigint[]))
    ORDER BY scope, scope_id
    FOR UPDATE
"""  # noqa: S608 (no input in the text)

TRANSITION_SQL = """
    INSERT INTO risk_transitions (scope, scope_id, from_state, to_state, reason, limit_id,
                                  actor_id)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    RETURNING id, at
"""
