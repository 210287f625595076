"""Operational endpoints: /livez, /readyz, /startupz, /metrics."""

from __future__ import annotations

import asyncio
import hmac
import logging

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.core import metrics as m
from app.core.settings import Settings
from app.runtime import Runtime

CHECK_TIMEOUT_SECONDS = 2.0
log = logging.getLogger(__name__)

_ENGINE_LAG = text("SELECT symbol, next_seq - applied_seq FROM markets")
_OUTBOX = text(
    "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)"
    " FROM outbox WHERE published_at IS NULL"
)


def _runtime(request: Request) -> Runtime | None:
    return getattr(request.app.state, "rt", None)


async def livez(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def startupz(request: Request) -> Response:
    started = _runtime(request) is not None
    return JSONResponse(
        {"status": "ok" if started else "starting"}, status_code=200 if started else 503
    )


async def _check_postgres(rt: Runtime) -> None:
    async with rt.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def _check(name: str, probe: object) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT_SECONDS)  # type: ignore[arg-type]
    except Exception as error:
        return name, f"error: {type(error).__name__}"
    return name, "ok"


async def readyz(request: Request) -> Response:
    rt = _runtime(request)
    if rt is None or getattr(request.app.state, "shutting_down", False):
        return JSONResponse({"status": "unavailable"}, status_code=503)
    checks = dict(
        await asyncio.gather(
            _check("postgres", _check_postgres(rt)), _check("redis", rt.redis.ping())
        )
    )
    down = [name for name, result in checks.items() if result != "ok"]
    if not down:
        return JSONResponse({"status": "ok", "checks": checks})
    reason = " and ".join(down) + (" is" if len(down) == 1 else " are") + " unreachable"
    return JSONResponse(
        {"status": "unavailable", "checks": checks, "reason": reason}, status_code=503
    )


def _scrape_refusal(request: Request, settings: Settings) -> Response | None:
    """With METRICS_TOKEN set, only ``Authorization: Bearer <token>`` may scrape (401
    otherwise); production without one refuses every scrape (403)."""
    if settings.metrics_token is None:
        if settings.is_production:
            return JSONResponse({"error": "metrics need METRICS_TOKEN"}, status_code=403)
        return None
    expected = f"Bearer {settings.metrics_token.get_secret_value()}".encode()
    if hmac.compare_digest(request.headers.get("authorization", "").encode(), expected):
        return None
    return JSONResponse(
        {"error": "unauthorized"}, status_code=401, headers={"www-authenticate": "Bearer"}
    )


async def _read_database_gauges(rt: Runtime) -> None:
    async with rt.engine.connect() as connection:
        for symbol, lag in (await connection.execute(_ENGINE_LAG)).all():
            m.ENGINE_LAG.labels(symbol).set(lag)
        backlog, oldest = (await connection.execute(_OUTBOX)).one()
    m.OUTBOX_BACKLOG.set(backlog)
    m.OUTBOX_OLDEST_AGE.set(float(oldest))


def _read_hub_gauges(request: Request) -> None:
    hub = getattr(request.app.state, "hub", None)
    if hub is None:
        return
    m.HUB_CHANNELS.set(hub.channel_count())
    m.HUB_SUBSCRIBERS.set(hub.subscriber_count())
    for kind, value in vars(hub.stats).items():
        m.HUB_EVENTS.labels(kind).set(value)


async def metrics(request: Request) -> Response:
    rt = _runtime(request)
    settings = rt.settings if rt is not None else Settings()
    if (refusal := _scrape_refusal(request, settings)) is not None:
        return refusal
    if rt is not None:
        pool = rt.engine.pool
        m.DB_POOL_CHECKED_OUT.set(pool.checkedout())  # type: ignore[attr-defined]
        m.DB_POOL_SIZE.set(pool.size())  # type: ignore[attr-defined]
        try:  # a scrape still answers (with the last values) when PostgreSQL does not
            await asyncio.wait_for(_read_database_gauges(rt), CHECK_TIMEOUT_SECONDS)
        except Exception as error:
            log.warning("metrics: database gauges not read: %s", type(error).__name__)
    _read_hub_gauges(request)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
