"""``interface Error { code message field }`` and one typed error per domain error.

Expected failures are union members of each mutation's result; bugs are exceptions
and reach the client masked.

Nothing here lists the errors: every ``UserError`` subclass of the domain error modules
(``HOMES``) that declares its own ``description`` becomes a GraphQL type of the same name
and description, a module attribute here (``from graphql_schema.errors import
InsufficientFunds``). A domain error with more fields than ``Error`` (``LeaderIneligible``)
has its type written out below."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import strawberry

from app.bots.domain import errors as bots
from app.core import errors as domain
from app.exchanges.domain import errors as exchanges
from app.notifications import rules as notifications
from app.risk.domain import errors as risk
from app.social.domain import social
from app.trading.domain import errors as trading
from graphql_schema.enums import derived_enum

# Where the domain errors are declared; a new domain's error module joins here.
HOMES: tuple[ModuleType, ...] = (domain, trading, social, notifications, bots, exchanges, risk)


@strawberry.interface(name="Error", description="An expected failure. Nothing was changed.")
class Error:
    code: str = strawberry.field(description="Stable machine-readable code.")
    message: str = strawberry.field(description="Human-readable explanation.")
    field: str | None = strawberry.field(
        default=None, description="Input field at fault (camelCase argument name), if any."
    )


LeaderEligibilityRule = derived_enum(
    social.EligibilityRule,
    name="LeaderEligibilityRule",
    description="The rules of becoming a leader, in the order they are checked.",
)


@strawberry.type(description=social.LeaderIneligible.description)
class LeaderIneligible(Error):
    rule: LeaderEligibilityRule  # type: ignore[valid-type]


def typed_errors(homes: tuple[ModuleType, ...] = HOMES) -> Iterator[type[domain.UserError]]:
    """The domain errors that are GraphQL types: those declaring a ``description``."""
    for module in homes:
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, domain.UserError)
                and value.__module__ == module.__name__
                and vars(value).get("description")
            ):
                yield value


def _error_type(domain_error: type[domain.UserError]) -> type[Error]:
    """A GraphQL error type named and described after the domain error."""
    cls = type(domain_error.__name__, (Error,), {"__module__": __name__})
    return strawberry.type(cls, description=domain_error.description)


_WRITTEN_OUT: dict[type[domain.UserError], type[Error]] = {
    social.LeaderIneligible: LeaderIneligible
}
_BY_DOMAIN: dict[type[domain.UserError], type[Error]] = {
    error: _WRITTEN_OUT.get(error) or _error_type(error) for error in typed_errors()
}
_BY_NAME = {cls.__name__: cls for cls in _BY_DOMAIN.values()}
if len(_BY_NAME) != len(_BY_DOMAIN):
    raise RuntimeError("two domain errors share a name: their GraphQL types would clash")
globals().update(_BY_NAME)


def graphql_error_type(error: type[domain.UserError]) -> type[Error]:
    """The GraphQL type of a domain error; a clear failure for one that has none."""
    try:
        return _BY_DOMAIN[error]
    except KeyError:
        raise LookupError(
            f"{error.__module__}.{error.__qualname__} has no GraphQL type: give it a "
            f"one-line `description` (and declare it in a module of graphql_schema.errors.HOMES)"
        ) from None


def to_graphql_error(error: domain.UserError) -> Error:
    if isinstance(error, social.LeaderIneligible):
        return LeaderIneligible(
            code=error.code,
            message=error.message,
            rule=LeaderEligibilityRule(error.rule.value),  # type: ignore[call-arg]
        )
    cls = graphql_error_type(type(error))
    return cls(code=error.code, message=error.message, field=error.field)  # type: ignore[call-arg]
