"""GraphQL enums derived from the domain's: one declaration of the members, in the domain.

``derived_enum(DomainEnum, name=...)`` is a strawberry enum with the domain enum's members
(names, values and order), so the two cannot drift apart. The domain enum itself stays
untouched (no strawberry in domain code); a resolver converts by value
(``OrderStatus(row.status)``). A GraphQL enum that deliberately differs from its domain
enum (fewer members) is written out beside its types instead."""

from __future__ import annotations

from enum import Enum
from typing import Any

import strawberry


def derived_enum(
    domain: type[Enum],
    *,
    name: str,
    description: str | None = None,
    values: dict[str, str] | None = None,
) -> Any:
    """A strawberry enum ``name`` copying ``domain`` member for member; ``values`` gives
    some members a description."""
    described = values or {}
    unknown = set(described) - set(domain.__members__)
    if unknown:
        raise ValueError(f"{domain.__name__} has no members {sorted(unknown)}")
    members = {
        member.name: (
            strawberry.enum_value(member.value, description=described[member.name])
            if member.name in described
            else member.value
        )
        for member in domain
    }
    return strawberry.enum(Enum(name, members), description=description)  # type: ignore[misc]
