"""Relay paging helpers shared by every keyset connection."""

from __future__ import annotations

from typing import Any

from strawberry import relay

from db.queries import Page


def page_info(page: Page[Any]) -> relay.PageInfo:
    """Relay page info of one keyset page (the one place that builds it)."""
    return relay.PageInfo(
        has_next_page=page.has_next_page,
        has_previous_page=page.has_previous_page,
        start_cursor=page.items[0][0] if page.items else None,
        end_cursor=page.items[-1][0] if page.items else None,
    )
