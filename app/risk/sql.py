"""The risk engine's SQL: what a batch of orders is checked against (``CONTEXT_SQL``, a
select-list item of the placement's markets statement: no round trip of its own), a
scope's P&L, and the writes of a transition."""

from __future__ import annotations

from app.risk.domain.limits import PRE_TRADE_KINDS
from db.models.columns import LIVE_ORDER

_LIVE = LIVE_ORDER.replace("status", "o.status", 1)
PRE_TRADE = "(" + ", ".join(sorted(f"'{k.value}'" for k in PRE_TRADE_KINDS)) + ")"
# what a trader's limits need read: how many of the latest orders, cancels, exposure
_WATCHES = """
    coalesce(max(l.threshold) FILTER (WHERE l.kind IN ('TRADES_PER_DAY', 'ORDER_RATE')), 0)
        AS cap,
    coalesce(bool_or(l.kind = 'CANCEL_RATE'), false) AS cancels,
    coalesce(bool_or(l.kind IN ('ASSET_EXPOSURE', 'TOTAL_EXPOSURE', 'CONCENTRATION')), false)
        AS exposure
"""

# The scopes of a batch: $2 its traders (ORDER and USER), $3 the follows of its copy
# orders, the markets of its symbols ($1) and the platform: their PRE_TRADE limits (the
# others act through the states) and non-ACTIVE states; per trader what those limits
# watch ($5 the start of the day, $6 a minute ago, $4 now, $7 the cash currencies, $8
# true: counts without a cap, for the status; $9 the day, YYYY-MM-DD): the latest orders
# (never more than past the largest count threshold: ``cap``), the cancels of the last
# minute, exposure (held and being acquired, USD per asset) and equity, each read only
# for a trader whose limits (or the market's, the platform's) watch it. A batch without
# limits reads the limits and states tables by key and nothing else. ``warned``: the
# (trader, limit) pairs already warned of today (``app.risk.notices``: one unique key
# each), so an order near a limit writes its warning once a day, and one far from any
# reads nothing more. As compact JSON (arrays, amounts as text, so they stay exact).
CONTEXT_SQL = f"""(
    WITH batch_markets AS (
        SELECT id FROM markets WHERE symbol = ANY($1::text[])
    ), refs AS (
        SELECT 'USER'::text AS scope, u AS scope_id FROM unnest($2::bigint[]) AS u
        UNION ALL SELECT 'ORDER', u FROM unnest($2::bigint[]) AS u
        UNION ALL SELECT 'FOLLOW', f FROM unnest($3::bigint[]) AS f
        UNION ALL SELECT 'MARKET', id FROM batch_markets
        UNION ALL SELECT 'PLATFORM', 0
    ), lim AS (
        SELECT l.id, l.scope, l.scope_id, l.kind, l.threshold, l.action, l.warn_ratio
        FROM refs r JOIN risk_limits l ON l.scope = r.scope AND l.scope_id = r.scope_id
        WHERE l.kind IN {PRE_TRADE}
    ), st AS (
        SELECT s.scope, s.scope_id, s.state, s.cooldown_until, s.reason, s.limit_id
        FROM refs r JOIN risk_states s ON s.scope = r.scope AND s.scope_id = r.scope_id
        WHERE s.state <> 'ACTIVE'
    ), own AS (
        SELECT l.scope_id AS user_id, {_WATCHES}
        FROM lim l WHERE l.scope = 'USER' GROUP BY l.scope_id
    ), every AS (
        SELECT {_WATCHES} FROM lim l WHERE l.scope IN ('MARKET', 'PLATFORM')
    ), needs AS (
        SELECT u AS id, greatest(own.cap, every.cap) AS cap,
               coalesce(own.cancels, false) OR every.cancels AS cancels,
               coalesce(own.exposure, false) OR every.exposure AS exposure
        FROM unnest($2::bigint[]) AS u
        CROSS JOIN every
        LEFT JOIN own ON own.user_id = u
        WHERE own.user_id IS NOT NULL OR every.cap > 0 OR every.cancels OR every.exposure
    ), exposed AS (
        SELECT id FROM needs WHERE exposure
    ), valued AS (
        SELECT a.user_id, a.currency AS asset, a.balance * coalesce(p.usd_price, 0) AS usd,
               true AS held
        FROM exposed x
        JOIN ledger_accounts a ON a.user_id = x.id
        LEFT JOIN reference_prices p ON p.currency = a.currency
        UNION ALL
        SELECT o.user_id, CASE WHEN o.side = 'BUY' THEN m.base ELSE m.quote END,
               (o.quantity - o.filled_quantity) * o.book_price * coalesce(q.usd_price, 0),
               false
        FROM exposed x
        JOIN orders o ON o.user_id = x.id AND {_LIVE}
        JOIN markets m ON m.id = o.market_id
        LEFT JOIN reference_prices q ON q.currency = m.quote
    ), per_asset AS (
        SELECT user_id, asset, sum(usd) AS usd, sum(usd) FILTER (WHERE held) AS held
        FROM valued GROUP BY user_id, asset
    ), exposure AS (
        SELECT user_id,
               jsonb_object_agg(asset, usd::text) FILTER (WHERE NOT asset = ANY($7::text[]))
                   AS assets,
               coalesce(sum(held), 0) AS equity
        FROM per_asset GROUP BY user_id
    ), traders AS (
        SELECT n.id, c.today, c.minute,
               CASE WHEN n.cancels THEN (
                   SELECT count(*) FROM order_commands oc
                   WHERE oc.user_id = n.id AND oc.kind IN ('CANCEL', 'CANCEL_ALL')
                     AND oc.created_at >= $6) END AS cancels,
               e.assets, e.equity
        FROM needs n
        LEFT JOIN LATERAL (
            SELECT count(*) FILTER (WHERE r.created_at >= $5) AS today,
                   count(*) FILTER (WHERE r.created_at >= $6) AS minute
            FROM (SELECT o.created_at FROM orders o WHERE o.user_id = n.id
                  ORDER BY o.id DESC
                  LIMIT CASE WHEN $8::boolean THEN NULL
                             WHEN n.cap > 0 THEN n.cap::bigint + 1 ELSE 0 END) AS r
        ) c ON true
        LEFT JOIN exposure e ON e.user_id = n.id
    ), warned AS (
        SELECT n.user_id, l.id
        FROM lim l
        JOIN notifications n ON n.user_id = l.scope_id
             AND n.source = 'risk-warning:' || l.id || ':' || $9::text
        WHERE l.scope IN ('USER', 'ORDER')
        UNION ALL
        SELECT n.user_id, l.id
        FROM lim l CROSS JOIN unnest($2::bigint[]) AS u
        JOIN notifications n ON n.user_id = u
             AND n.source = 'risk-warning:' || l.id || ':' || $9::text
        WHERE l.scope NOT IN ('USER', 'ORDER')
    ), ages AS (
        SELECT m.id, extract(epoch FROM $4::timestamptz - (
                   SELECT max(f.created_at) FROM fills f WHERE f.market_id = m.id)) AS age
        FROM batch_markets m
        WHERE EXISTS (SELECT 1 FROM lim WHERE lim.kind = 'STALE_MARKET_DATA')
    )
    SELECT jsonb_build_array(
        (SELECT jsonb_agg(jsonb_build_array(id, scope, scope_id, kind, threshold::text,
                                            action, warn_ratio::text)) FROM lim),
        (SELECT jsonb_agg(jsonb_build_array(scope, scope_id, state, cooldown_until, reason,
                                            limit_id)) FROM st),
        (SELECT jsonb_agg(jsonb_build_array(id, today, minute, cancels, equity::text,
                                            assets)) FROM traders),
        (SELECT jsonb_object_agg(id::text, age::text) FROM ages),
        (SELECT jsonb_agg(jsonb_build_array(user_id, id)) FROM warned)
    )::text
)"""  # noqa: S608 (no input in the text)

# A scope's P&L (``app.risk.domain.pnl``): realised and unrealised profit of the users'
# positions in USD, each asset at its reference price.
PNL_SQL = """
    SELECT p.user_id, sum(p.realized_pnl_usd) AS realised,
           sum(p.realized_pnl_usd + p.quantity * coalesce(r.usd_price, 0) - p.cost_usd) AS pnl
    FROM positions p
    LEFT JOIN reference_prices r ON r.currency = p.currency
    WHERE p.user_id = ANY($1::bigint[])
    GROUP BY p.user_id
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
