"""Operational endpoints: /livez, /readyz, /startupz, /metrics."""

from __future__ import annotations

import asyncio

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.metrics import DB_POOL_CHECKED_OUT, DB_POOL_SIZE
from app.runtime import Runtime

CHECK_TIMEOUT_SECONDS = 2.0


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


async def metrics(request: Request) -> Response:
    rt = _runtime(request)
    if rt is not None:
        pool = rt.engine.pool
        DB_POOL_CHECKED_OUT.set(pool.checkedout())  # type: ignore[attr-defined]
        DB_POOL_SIZE.set(pool.size())  # type: ignore[attr-defined]
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
