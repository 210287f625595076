"""Prometheus metrics (exposed at /metrics)."""

from __future__ import annotations

import re
from collections.abc import Awaitable
from typing import TypeVar

from prometheus_client import Counter, Gauge, Histogram

from app.core.errors import UserError

T = TypeVar("T")

GRAPHQL_REQUESTS = Counter(
    "graphql_requests_total", "GraphQL operations executed", ["operation", "type"]
)
GRAPHQL_LATENCY = Histogram(
    "graphql_request_duration_seconds",
    "GraphQL operation latency",
    ["operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
GRAPHQL_ERRORS = Counter("graphql_errors_total", "GraphQL errors by code", ["code"])
HTTP_REQUESTS = Counter("http_requests_total", "HTTP responses", ["path", "status"])
WEBSOCKETS_OPEN = Gauge("websocket_connections_open", "Open WebSocket connections")
DB_POOL_CHECKED_OUT = Gauge("db_pool_connections_checked_out", "DB connections in use")
DB_POOL_SIZE = Gauge("db_pool_connections_size", "DB connections held by the pool")

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_MAX_OPERATION_LABELS = 500
_seen_operations: set[str] = set()


def operation_label(name: str | None) -> str:
    """Operation names come from clients: bound the label set so nobody can blow it up."""
    if not name:
        return "anonymous"
    if name in _seen_operations:
        return name
    if not _NAME.match(name) or len(_seen_operations) >= _MAX_OPERATION_LABELS:
        return "other"
    _seen_operations.add(name)
    return name


# what an operator watches (README "Operations"): read from PostgreSQL at scrape time,
# so every API process reports the same database-wide values
ENGINE_LAG = Gauge(
    "engine_lag_commands",
    "Commands sequenced but not yet applied by the market's engine (next_seq - applied_seq)",
    ["market"],
)
OUTBOX_BACKLOG = Gauge("outbox_backlog", "Outbox events not yet published to Redis")
OUTBOX_OLDEST_AGE = Gauge(
    "outbox_oldest_age_seconds", "Age of the oldest unpublished outbox event (0: none)"
)
# this process's periodic background jobs (app.background.PeriodicJobs)
JOB_LAST_SUCCESS = Gauge(
    "background_job_last_success_timestamp_seconds",
    "Unix time the job last completed a run",
    ["job"],
)
JOB_FAILURES = Counter("background_job_failures_total", "Job runs that raised", ["job"])
# this process's pub/sub hub: channels subscribed in Redis and local subscribers
HUB_CHANNELS = Gauge("pubsub_hub_channels", "Redis channels this process subscribes to")
HUB_SUBSCRIBERS = Gauge(
    "pubsub_hub_subscribers", "Open subscriptions (GraphQL subscriptions) on this process's hub"
)
HUB_EVENTS = Gauge(
    "pubsub_hub_events", "Hub counters since start (delivered, dropped, gaps, ...)", ["kind"]
)
ORDERS_PLACED = Counter("orders_placed_total", "Orders accepted through placeOrder")
ORDERS_REFUSED = Counter(
    "orders_refused_total", "placeOrder calls answered with a typed error", ["code"]
)


async def count_placement(call: Awaitable[T]) -> T:
    """Await an order placement, counting it as placed or as refused by its error code."""
    try:
        value = await call
    except UserError as error:
        ORDERS_REFUSED.labels(error.code).inc()
        raise
    ORDERS_PLACED.inc()
    return value
