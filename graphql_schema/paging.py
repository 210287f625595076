"""Relay paging helpers shared by every keyset connection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from strawberry import relay

from db.queries import Page

N = TypeVar("N")
R = TypeVar("R")


def page_info(page: Page[Any]) -> relay.PageInfo:
    """Relay page info of one keyset page (the one place that builds it)."""
    return relay.PageInfo(
        has_next_page=page.has_next_page,
        has_previous_page=page.has_previous_page,
        start_cursor=page.items[0][0] if page.items else None,
        end_cursor=page.items[-1][0] if page.items else None,
    )


def to_connection(
    connection_cls: type[relay.Connection[N]], page: Page[R], node: Callable[[R], N]
) -> relay.Connection[N]:
    return connection_cls(
        edges=[relay.Edge(cursor=cursor, node=node(item)) for cursor, item in page.items],
        page_info=page_info(page),
    )
