"""What an API key may call, declared on every root field (a test checks each has one):

    extensions=requires_scope(Scope.READ_ACCOUNT)   a key needs this scope
    extensions=public()                             no scope needed
    extensions=session_only()                       never with an API key

A signed-in session (JWT) holds every scope; anonymous requests are not restricted here
(resolvers that need a user say so). Admission checks the root fields of each operation
of an API key before anything runs (HTTP 403 / a WebSocket error, code
``INSUFFICIENT_SCOPE``), refusing undeclared fields; the extension checks again when
the field resolves (``schema.execute`` without the transport).

``session_only`` covers account security (password, two-factor, sessions, API keys, the
security log), money movement (transfers, deposits, withdrawals) and administration.
Fields below the root are reached only through a root field, so its scope covers them.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from strawberry.extensions import FieldExtension
from strawberry.types import Info

from app.accounts.api_keys import ApiKeyAuth
from app.accounts.domain.api_keys import Scope
from app.core.errors import InsufficientScope


class Access(FieldExtension):
    def __init__(self, *, scope: Scope | None = None, session_only: bool = False) -> None:
        self.scope = scope
        self.session_only = session_only

    def check(self, info: Info) -> None:
        reason = denial(getattr(info.context, "api_key", None), self, info.field_name)
        if reason is not None:
            raise InsufficientScope(reason)

    def resolve(self, next_: Callable[..., Any], source: Any, info: Info, **kwargs: Any) -> Any:
        self.check(info)
        return next_(source, info, **kwargs)

    async def resolve_async(
        self, next_: Callable[..., Awaitable[Any]], source: Any, info: Info, **kwargs: Any
    ) -> Any:
        self.check(info)
        result = next_(source, info, **kwargs)
        return await result if inspect.isawaitable(result) else result  # a subscription's stream


def requires_scope(scope: Scope) -> list[FieldExtension]:
    return [Access(scope=scope)]


def public() -> list[FieldExtension]:
    return [Access()]


def session_only() -> list[FieldExtension]:
    return [Access(session_only=True)]


def denial(api_key: ApiKeyAuth | None, access: Access | None, field_name: str) -> str | None:
    """Why ``api_key`` may not use the field, or None when it may (or there is no key).
    An undeclared field is refused to keys."""
    if api_key is None:
        return None
    if access is None or access.session_only:
        return f"{field_name} is not available with an API key: sign in instead"
    if access.scope is not None and access.scope not in api_key.scopes:
        return f"This API key lacks the {access.scope.value} scope (needed by {field_name})"
    return None


def field_access(field: Any) -> Access | None:
    """The declaration on a graphql-core field of this schema (None: undeclared)."""
    definition = field.extensions.get("strawberry-definition")
    found = [e for e in getattr(definition, "extensions", ()) if isinstance(e, Access)]
    return found[0] if found else None
