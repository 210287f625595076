"""What is measured: each scenario is one GraphQL document and its plain twin endpoint."""

from __future__ import annotations

import json
from dataclasses import dataclass

GRAPHQL_PATH = "/graphql"


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    query: str
    plain_path: str
    authenticated: bool
    min_ratio: float  # GraphQL req/s divided by plain req/s: the target (reported, not asserted)

    @property
    def body(self) -> str:
        """Both targets receive the same bytes; the plain endpoint ignores them."""
        return json.dumps({"query": self.query}, separators=(",", ":"))


SCENARIOS = (
    Scenario("serverTime", "{ serverTime }", "/server-time", authenticated=False, min_ratio=0.3),
    Scenario("me", "{ me { id email } }", "/me", authenticated=True, min_ratio=0.2),
)
MAX_TAIL_RATIO = 5.0  # p99 / p50 at half the peak load
