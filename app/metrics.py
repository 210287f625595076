"""Prometheus metrics (exposed at /metrics)."""

from __future__ import annotations

import re

from prometheus_client import Counter, Gauge, Histogram

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
