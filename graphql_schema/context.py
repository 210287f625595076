"""The typed per-request context, built in ``GraphQLView.get_context``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from app.errors import Forbidden, NotAuthenticated
from app.runtime import Runtime
from app.services.sessions import Authenticated
from db.models import User
from resolvers.loaders import Loaders


@dataclass
class Context:
    rt: Runtime
    request: Request | WebSocket
    response: Response | WebSocket | None
    loaders: Loaders
    request_id: str
    auth: Authenticated | None = None
    connection_params: dict[str, Any] = field(default_factory=dict)

    @property
    def user(self) -> User | None:
        return self.auth.user if self.auth else None

    @property
    def user_id(self) -> int | None:
        return self.auth.user.id if self.auth else None

    @property
    def is_admin(self) -> bool:
        return self.auth is not None and self.auth.user.role == "ADMIN"

    def require_user(self) -> User:
        if self.auth is None:
            raise NotAuthenticated()
        return self.auth.user

    def require_admin(self) -> User:
        user = self.require_user()
        if user.role != "ADMIN":
            raise Forbidden()
        return user

    def can_see_user(self, user_id: int) -> bool:
        return self.is_admin or self.user_id == user_id
