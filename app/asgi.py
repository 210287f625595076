"""The Starlette application: routes, middleware, lifespan."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send

from app.background import default_jobs
from app.backtesting.backtests import stop_worker as stop_backtests
from app.bots.domain import alerts
from app.core.logs import configure_logging
from app.core.settings import Settings
from app.events.pubsub import PubSubHub
from app.http import links, ops, webhooks
from app.http.middleware import EdgeMiddleware, SizeLimits
from app.jobs import add_withdrawal_jobs
from app.runtime import Runtime, build_runtime
from app.trading.engine.runner import EngineSet
from app.trading.market_maker import MarketMaker
from graphql_schema.gateway.view import GraphQLView
from graphql_schema.schema import schema

log = logging.getLogger(__name__)


class _ViewSlot:
    """ASGI endpoint for /graphql; the view is built once resources exist (lifespan)."""

    view: GraphQLView | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.view is None:
            raise RuntimeError("the GraphQL view is not ready: lifespan did not run")
        await self.view(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    *,
    database_url: str | None = None,
    redis_url: str | None = None,
    runtime: Runtime | None = None,
) -> Starlette:
    """Build the app. Resources come from ``runtime`` (tests) or are built at start-up
    from the URLs (default: the settings' DATABASE_URL and REDIS_URL)."""
    settings = settings or (runtime.settings if runtime else Settings())
    database_url = database_url or settings.database_url
    redis_url = redis_url or settings.redis_url
    if runtime is None and not (database_url and redis_url):
        raise RuntimeError("DATABASE_URL and REDIS_URL are required (or use `python -m app serve`)")

    graphql = _ViewSlot()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        rt = runtime or build_runtime(
            settings, database_url=database_url or "", redis_url=redis_url or ""
        )
        graphql.view = GraphQLView(schema=schema, rt=rt)
        app.state.rt = rt
        app.state.shutting_down = False
        # one pub/sub connection per process, opened by the first subscription
        app.state.hub = (
            PubSubHub.from_url(redis_url, client_name=rt.redis_key("pubsub"))
            if redis_url
            else PubSubHub(rt.redis)
        )
        # Start-up leaves ~100k long-lived objects; freezing them keeps full GC passes
        # (and the p99 pauses they cause) short.
        gc.collect()
        gc.freeze()
        jobs = add_withdrawal_jobs(default_jobs(rt))
        if settings.background_jobs_enabled:  # else `python -m app worker` runs them
            jobs.start()
        engines = EngineSet(rt)
        if settings.trading_engine_enabled:
            await engines.start()  # standby where another process owns a market
        maker = MarketMaker(rt)
        if settings.market_maker_enabled:
            maker.start()
        log.info("started", extra={"env": settings.env.value})
        try:
            yield
        finally:
            app.state.shutting_down = True
            await app.state.hub.aclose()  # ends every subscription with Dropped(SHUTDOWN)
            await maker.stop()  # withdraws its quotes while the engines still run
            await jobs.stop()  # a job placing orders (copies) finishes with the engines up
            await stop_backtests()  # running backtests handed back, for the next server
            await engines.stop()
            if runtime is None:
                await rt.aclose()
            log.info("stopped")

    if runtime is not None:  # no lifespan under test transports: wire up now
        graphql.view = GraphQLView(schema=schema, rt=runtime)

    middleware = [
        Middleware(EdgeMiddleware, hsts=settings.is_production),
        Middleware(
            SizeLimits,
            max_request_bytes=settings.max_request_bytes,
            max_ws_message_bytes=settings.ws_max_message_bytes,
            # Stripe's events are not ours to size, and one refused is retried, then lost
            path_limits={"/webhooks/stripe": webhooks.MAX_BODY_BYTES},
            prefix_limits={webhooks.BOT_HOOKS: alerts.MAX_BODY_BYTES},
        ),
        Middleware(GZipMiddleware, minimum_size=1024),
    ]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST"],
                allow_headers=["authorization", "content-type", "x-request-id", "x-api-key"],
                expose_headers=[
                    "retry-after",
                    "ratelimit-limit",
                    "ratelimit-remaining",
                    "ratelimit-reset",
                    "ratelimit-policy",
                ],
            )
        )
    app = Starlette(
        routes=[
            Route("/graphql", graphql),
            WebSocketRoute("/graphql", graphql),
            Route("/livez", ops.livez),
            Route("/readyz", ops.readyz),
            Route("/startupz", ops.startupz),
            Route("/metrics", ops.metrics),
            Route("/verify-email", links.verify_email_page),
            Route("/confirm-email-change", links.confirm_email_change_page),
            Route("/reset-password", links.reset_password_page, methods=["GET", "POST"]),
            Route("/webhooks/stripe", webhooks.stripe_webhook, methods=["POST"]),
            Route(webhooks.BOT_HOOKS + "{token}", webhooks.bot_alert_webhook, methods=["POST"]),
        ],
        middleware=middleware,
        lifespan=lifespan,
    )
    if runtime is not None:
        app.state.rt = runtime
        app.state.shutting_down = False
    return app


def create_app_from_env() -> Starlette:
    """``uvicorn app.asgi:create_app_from_env --factory`` (the Docker image)."""
    settings = Settings()
    configure_logging(level=settings.log_level, json_output=settings.log_json)
    return create_app(settings)
