"""Which exceptions mean a dependency is unreachable (retry later), not a bug.

The one place that knows the vendors' connection errors: redis-py's ``ConnectionError``
and ``TimeoutError`` (not its authentication errors: those are configuration), and a
PostgreSQL connection that is refused, lost or invalidated (asyncpg's, or SQLAlchemy's
wrapper of them). The GraphQL view maps what ``as_outage`` recognises to
``DependencyUnavailable`` (HTTP 503, ``TRY_AGAIN``); everything else stays a bug.
"""

from __future__ import annotations

import asyncpg
from redis import exceptions as redis_errors
from sqlalchemy import exc as sa_errors

from app.core.errors import DependencyUnavailable

RETRY_AFTER_SECONDS = 5  # what readiness probes and reconnects need to notice, roughly

_REDIS_DOWN = (redis_errors.ConnectionError, redis_errors.TimeoutError)
_REDIS_MISCONFIGURED = (redis_errors.AuthenticationError, redis_errors.AuthorizationError)
_POSTGRES_DOWN = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionFailureError,
    sa_errors.TimeoutError,  # no pooled connection came free in time
    ConnectionRefusedError,  # asyncpg connecting to a server that is not there
    ConnectionResetError,
)
_MAX_CHAIN = 8


def _dependency(error: BaseException) -> str | None:
    if isinstance(error, _REDIS_DOWN) and not isinstance(error, _REDIS_MISCONFIGURED):
        return "redis"
    if isinstance(error, sa_errors.DBAPIError) and error.connection_invalidated:
        return "postgres"
    if isinstance(error, _POSTGRES_DOWN):
        return "postgres"
    return None


def as_outage(error: BaseException) -> DependencyUnavailable | None:
    """The ``DependencyUnavailable`` that ``error`` (or its ``__cause__`` chain: SQLAlchemy
    and redis-py raise theirs ``from`` the socket's) means, else None."""
    if isinstance(error, DependencyUnavailable):
        return error
    seen: BaseException | None = error
    for _ in range(_MAX_CHAIN):
        if seen is None:
            return None
        dependency = _dependency(seen)
        if dependency is not None:
            return DependencyUnavailable(dependency, retry_after=RETRY_AFTER_SECONDS)
        seen = seen.__cause__
    return None
