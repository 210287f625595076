"""Rate limits in Redis, consistent across every server process.

One algorithm, GCRA (the generic cell rate algorithm), in one Lua script: a budget of
``limit`` units per ``period`` seconds refills continuously; a request of cost ``c``
passes when the budget holds ``c`` units, and nothing is drawn when it does not. Redis
keeps one number per key (the "theoretical arrival time") with a TTL, and the script
reads the clock with ``TIME`` on the Redis server, so several processes (and machines
with skewed clocks) share one budget exactly. A cost above the whole budget counts as the
whole budget: it passes only when the budget is full, and empties it. One call of the
script draws from several budgets in order and stops at the first that refuses, so a
request charged to two budgets costs one round trip, and the second is charged only
when the first allowed.

Budgets (sizes in ``Settings``):

- ``api``: every GraphQL request draws its computed query cost, per client IP for
  anonymous requests and per user (session) or per API key otherwise;
- ``orders``: each order placement additionally draws one unit, per user or key;
- ``persisted-queries``: each automatic persisted query stored draws one unit, per client
  (IP, user or key), ``persisted_query_registrations`` per hour;
- ``login-ip`` / ``login-account``: each login attempt draws one unit per client IP
  and per account (the normalised email, hashed; unknown addresses count the same);
  after ``login_backoff_after_failures`` consecutive failures an account also backs off
  exponentially (1 s, 2 s, 4 s ... up to ``login_backoff_max_seconds``) until a
  successful login;
- ``mail-address``: each account mail (verification, reset, registration notice, email
  change) draws one unit per recipient address (hashed like the account subject),
  whether or not the address has an account; over the budget the mail is not sent.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import NoScriptError

from app.accounts.domain.emails import normalise_email
from app.core.coalesce import Coalescer
from app.core.errors import RateLimited, ValidationFailed
from app.runtime import Runtime

# KEYS: one per budget; ARGV: limit, period (ms), cost for each key in turn. Returns one
# {allowed, remaining, retry ms, reset ms} per budget drawn, up to the first refusal.
_GCRA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
local results = {}
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[3 * i - 2])
  local period = tonumber(ARGV[3 * i - 1])
  local cost = math.min(tonumber(ARGV[3 * i]), limit)
  local interval = period / limit
  local tat = math.max(tonumber(redis.call('GET', key) or '0'), now)
  local new_tat = tat + cost * interval
  local allow_at = new_tat - period
  if allow_at > now then
    results[i] = {0, math.floor((now - (tat - period)) / interval), math.ceil(allow_at - now),
                  math.ceil(tat - now)}
    return results
  end
  redis.call('SET', key, string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now) + 1)
  results[i] = {1, math.floor((now - allow_at) / interval), 0, math.ceil(new_tat - now)}
end
return results
"""
_GCRA_SHA = hashlib.sha1(_GCRA.encode()).hexdigest()  # noqa: S324 (Redis names scripts by SHA-1)


@dataclass(frozen=True, slots=True)
class Budget:
    name: str
    limit: int  # units per period, also the largest burst
    period: float  # seconds


@dataclass(frozen=True, slots=True)
class Decision:
    budget: str
    allowed: bool
    limit: int
    remaining: int
    retry_after: float  # seconds until the refused cost would pass; 0 when allowed
    reset_after: float  # seconds until the budget is full again

    def refuse(self, message: str | None = None) -> RateLimited:
        return RateLimited(message, retry_after=self.retry_after)


@dataclass(frozen=True, slots=True)
class Caller:
    """Whose budget a request draws from: ``ip``, ``user`` or ``key`` plus its id."""

    kind: str
    id: str

    @property
    def anonymous(self) -> bool:
        return self.kind == "ip"


async def draw(rt: Runtime, budget: Budget, subject: str, cost: int) -> Decision:
    """Take ``cost`` units from ``subject``'s budget if it holds them (atomically)."""
    [decision] = await draw_in_order(rt, [(budget, subject, cost)])
    return decision


async def draw_in_order(rt: Runtime, charges: Sequence[tuple[Budget, str, int]]) -> list[Decision]:
    """Draw each ``(budget, subject, cost)`` in turn, in one round trip, stopping at the
    first budget that refuses: the decisions up to and including that one (a budget after
    a refusal is not charged)."""
    keys = tuple(rt.redis_key("rl", budget.name, subject) for budget, subject, _ in charges)
    args = tuple(
        arg
        for budget, _, cost in charges
        for arg in (budget.limit, budget.period * 1000, max(cost, 0))
    )
    draws = rt.coalescer("rate_limit_draws", lambda: Coalescer(_draws(rt), max_batch=500))
    results = await draws.submit((keys, args))
    return [
        _decision(budget, result) for (budget, _, _), result in zip(charges, results, strict=False)
    ]


def _decision(budget: Budget, result: Sequence[Any]) -> Decision:
    allowed, remaining, retry_ms, reset_ms = (int(v) for v in result)
    return Decision(
        budget=budget.name,
        allowed=bool(allowed),
        limit=budget.limit,
        remaining=max(remaining, 0),
        retry_after=retry_ms / 1000,
        reset_after=reset_ms / 1000,
    )


Draw = tuple[tuple[str, ...], tuple[float, ...]]  # keys, script arguments (3 per key)


def _draws(rt: Runtime) -> Callable[[list[Draw]], Awaitable[list[Any]]]:
    """The draws of the requests of the same moment, in order, in one round trip (a
    pipeline of the script; loaded first if Redis does not have it)."""

    async def run(draws: list[Draw]) -> list[Any]:
        for _ in range(2):
            async with rt.redis.pipeline(transaction=False) as pipe:
                for keys, args in draws:
                    pipe.evalsha(_GCRA_SHA, len(keys), *keys, *args)
                results = await pipe.execute(raise_on_error=False)
            if not any(isinstance(r, NoScriptError) for r in results):
                break
            await rt.redis.script_load(_GCRA)
        return list(results)

    return run


def api_budget(rt: Runtime, caller: Caller) -> Budget:
    s = rt.settings
    limit = s.rate_limit_anonymous if caller.anonymous else s.rate_limit_authenticated
    return Budget("api", limit, s.rate_limit_window_seconds)


def orders_budget(rt: Runtime) -> Budget:
    return Budget("orders", rt.settings.rate_limit_orders, rt.settings.rate_limit_window_seconds)


async def draw_request(rt: Runtime, *, caller: Caller, cost: int, orders: int = 0) -> Decision:
    """One GraphQL request: its query cost from the caller's ``api`` budget, then one unit
    per order placement from the ``orders`` budget (only when the ``api`` budget allowed),
    in one round trip. Returns the refusing decision, or the ``api`` one when both allow
    (for the response headers)."""
    subject = f"{caller.kind}:{caller.id}"
    charges = [(api_budget(rt, caller), subject, cost)]
    if orders:
        charges.append((orders_budget(rt), subject, orders))
    decisions = await draw_in_order(rt, charges)
    return decisions[-1] if not decisions[-1].allowed else decisions[0]


REGISTRATION_WINDOW_SECONDS = 3600.0


async def draw_registration(rt: Runtime, *, caller: Caller) -> Decision:
    """One automatic persisted query stored for ``caller``."""
    budget = Budget(
        "persisted-queries", rt.settings.persisted_query_registrations, REGISTRATION_WINDOW_SECONDS
    )
    return await draw(rt, budget, f"{caller.kind}:{caller.id}", 1)


# login attempts


def _account_subject(email: str) -> str:
    try:
        email = normalise_email(email)
    except ValidationFailed:
        email = email.strip().lower()
    return hashlib.sha256(email.encode()).hexdigest()[:32]


async def begin_login(rt: Runtime, *, email: str, client_ip: str | None) -> None:
    """Refuse the attempt (``RateLimited``) while the account backs off after failures,
    or when the IP's or the account's login budget is spent."""
    s = rt.settings
    account = _account_subject(email)
    backoff_ms = await rt.redis.pttl(rt.redis_key("login-backoff", account))
    if backoff_ms > 0:
        raise RateLimited(
            "Too many failed logins for this account: try again later",
            retry_after=backoff_ms / 1000,
        )
    if client_ip:
        per_ip = Budget("login-ip", s.login_attempts_per_ip, s.login_window_seconds)
        decision = await draw(rt, per_ip, client_ip, 1)
        if not decision.allowed:
            raise decision.refuse("Too many login attempts from this address")
    per_account = Budget("login-account", s.login_attempts_per_account, s.login_window_seconds)
    decision = await draw(rt, per_account, account, 1)
    if not decision.allowed:
        raise decision.refuse("Too many login attempts for this account")


async def login_failed(rt: Runtime, *, email: str) -> None:
    """Count a consecutive failure; from the configured number on, back off 1 s, 2 s,
    4 s ... (capped)."""
    s = rt.settings
    account = _account_subject(email)
    failures_key = rt.redis_key("login-failures", account)
    async with rt.redis.pipeline(transaction=True) as pipe:
        pipe.incr(failures_key)
        pipe.expire(failures_key, 86400)
        failures, _ = await pipe.execute()
    excess = int(failures) - s.login_backoff_after_failures
    if excess >= 0:
        seconds = min(s.login_backoff_max_seconds, 2.0 ** min(excess, 32))
        await rt.redis.set(
            rt.redis_key("login-backoff", account), b"1", px=max(1, math.ceil(seconds * 1000))
        )


async def login_succeeded(rt: Runtime, *, email: str) -> None:
    await rt.redis.delete(rt.redis_key("login-failures", _account_subject(email)))


# account mails


async def draw_mail(rt: Runtime, *, to: str) -> Decision:
    """One account mail to ``to``: allowed while the address's budget lasts."""
    s = rt.settings
    budget = Budget("mail-address", s.mail_per_address_limit, s.mail_per_address_window_seconds)
    return await draw(rt, budget, _account_subject(to), 1)
