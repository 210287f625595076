"""The baseline: plain Starlette endpoints returning the same JSON as the GraphQL queries.

``/me`` does the same I/O as the GraphQL path by calling the same service function
(``authenticate``: JWT decode and verify, Redis EXISTS on the revoked-jti key, the user
row from PostgreSQL), so the ratio measures what GraphQL and the app's middleware add.

Served by ``uvicorn bench.plain:create_app --factory`` with the app's environment.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.accounts.sessions import authenticate
from app.core.errors import InvalidToken
from app.core.logs import configure_logging
from app.core.settings import Settings
from app.runtime import Runtime, build_runtime


def global_id(type_name: str, node_id: int) -> str:
    """The relay global ID strawberry gives a node: base64 of ``Type:id``."""
    return base64.b64encode(f"{type_name}:{node_id}".encode()).decode()


async def server_time(request: Request) -> JSONResponse:
    return JSONResponse({"data": {"serverTime": datetime.now(UTC).isoformat()}})


async def me(request: Request) -> JSONResponse:
    rt: Runtime = request.app.state.rt
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return JSONResponse({"data": {"me": None}})
    try:
        auth = await authenticate(rt=rt, access_token=token)
    except InvalidToken as error:
        return JSONResponse({"errors": [{"message": error.message}]}, status_code=401)
    user = auth.user
    return JSONResponse({"data": {"me": {"id": global_id("User", user.id), "email": user.email}}})


def create_app() -> Starlette:
    settings = Settings()
    configure_logging(level=settings.log_level, json_output=settings.log_json)
    if not (settings.database_url and settings.redis_url):
        raise RuntimeError("DATABASE_URL and REDIS_URL are required")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        rt = build_runtime(
            settings, database_url=settings.database_url or "", redis_url=settings.redis_url or ""
        )
        app.state.rt = rt
        try:
            yield
        finally:
            await rt.aclose()

    routes = [
        Route("/server-time", server_time, methods=["GET", "POST"]),
        Route("/me", me, methods=["GET", "POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
