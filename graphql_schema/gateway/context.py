"""The typed per-request context, built in ``GraphQLView.get_context``."""

from __future__ import annotations

import math
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from app.accounts.api_keys import ApiKeyAuth
from app.accounts.rate_limits import Caller
from app.accounts.sessions import Authenticated
from app.core.errors import Forbidden, NotAuthenticated, RateLimited
from app.runtime import Runtime
from db.models import User
from resolvers.loaders import Loaders, build_loaders

T = TypeVar("T")


@dataclass
class Context:
    rt: Runtime
    request: Request | WebSocket
    response: Response | WebSocket | None
    loaders: Loaders  # per request; per event of a subscription (``renew_loaders``)
    request_id: str
    auth: Authenticated | None = None  # a signed-in session (access token)
    api_key: ApiKeyAuth | None = None  # or an API key (X-API-Key); never both
    client_ip: str | None = None
    connection_params: dict[str, Any] = field(default_factory=dict)
    mail_field_seen: bool = False  # a mail-sending mutation field ran in this request

    @property
    def user(self) -> User | None:
        if self.auth is not None:
            return self.auth.user
        return self.api_key.user if self.api_key is not None else None

    @property
    def user_id(self) -> int | None:
        user = self.user
        return user.id if user is not None else None

    @property
    def is_admin(self) -> bool:
        """Admin powers need a signed-in session: never through an API key."""
        return self.auth is not None and self.auth.user.role == "ADMIN"

    @property
    def caller(self) -> Caller:
        """Whose rate-limit budget this request draws from."""
        if self.api_key is not None:
            return Caller("key", str(self.api_key.key.id))
        if self.auth is not None:
            return Caller("user", str(self.auth.user.id))
        return Caller("ip", self.client_ip or "unknown")

    def renew_loaders(self) -> None:
        """Fresh DataLoaders (empty caches) for what executes next: every event of a
        subscription reads the values as of that event, not as of the first one."""
        self.loaders = build_loaders(self.rt)

    def require_user(self) -> User:
        user = self.user
        if user is None:
            raise NotAuthenticated()
        return user

    def require_admin(self) -> User:
        user = self.require_user()
        if not self.is_admin:
            raise Forbidden()
        return user

    def can_see_user(self, user_id: int) -> bool:
        return self.is_admin or self.user_id == user_id

    def claim_mail_field(self) -> None:
        """At most one mail-sending mutation field per request (aliases included): the
        second raises ``RateLimited`` (a typed error for that field only)."""
        if self.mail_field_seen:
            raise RateLimited("Only one mail-sending mutation per request", retry_after=0)
        self.mail_field_seen = True

    async def rate_limited(self, call: Awaitable[T]) -> T:
        """Await ``call``; when a rate limit refuses it, the HTTP answer is 429 with
        ``Retry-After`` (the typed ``RateLimited`` error is in the body)."""
        try:
            return await call
        except RateLimited as error:
            if isinstance(self.response, Response):
                self.response.status_code = 429
                self.response.headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
            raise
