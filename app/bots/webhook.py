"""A bot's signal webhook (``POST /hooks/bots/{token}``): a TradingView alert checked and
queued for the bot, answered at once. It never places an order itself: the bots' worker
steps the bot on each queued alert, so the answer comes well within TradingView's 3 s.

``receive_alert`` checks, in this order, and refuses with nothing stored:

    the token names a bot that takes alerts (SIGNAL, DCA)     NotFound              404
    the caller's address is in the bot's ``ip_allowlist``     WebhookIpNotAllowed   403
      (empty: any; the address the connection gives, i.e. X-Forwarded-For only from the
      proxies ``FORWARDED_ALLOW_IPS`` trusts, as for every rate limit)
    the body is a JSON object or KEY=VALUE lines              InvalidWebhook        400
    its ``secret`` hashes to the bot's ``webhook_secret_hash``  WebhookSecretInvalid  401
    the bot runs (not stopping or stopped, not paused)        BotStopped/BotPaused  409
    the bot's alert budget (ALERTS_PER_BOT, in Redis)          RateLimited           429
    the fields are an alert                                   InvalidWebhook        400

Then: an alert whose ``time`` is more than the bot's maximum lag away from now (the
signal bot's ``max_lag``, a DCA bot's ``DcaBot.max_lag``) is STALE and not queued (the
bot would drop it: ``alerts.admit``); else one transaction inserts it into
``bot_alerts`` (once per bot and alert id: a repeat is a DUPLICATE) and NOTIFYs
``WAKE_CHANNEL`` with the bot's id. The worker reads each row with ``processed_at`` null
as a ``Signal`` received at ``received_at`` (``codec.from_json(Alert, row.alert)``).

Nothing here locks or waits on the bot: the row is read without a lock, and the insert's
foreign-key check takes KEY SHARE on it, which a running step's FOR NO KEY UPDATE (and
its UPDATE of the row) never blocks. A dry run checks the same and says what would
happen (and whether the alert names the bot's market), storing nothing.

The secret is never logged, stored or answered (``alerts.read_body`` takes it out of the
fields first); the path token is not logged either (log lines name the bot's id).
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError

from app.accounts.domain.api_keys import ip_allowed
from app.accounts.rate_limits import Budget, draw
from app.bots.domain import dca
from app.bots.domain.alerts import (
    Alert,
    admit,
    hash_secret,
    read_body,
    secret_matches,
    symbol_matches,
)
from app.bots.domain.codec import from_json, to_json
from app.bots.domain.errors import BotPaused, BotStopped, WebhookIpNotAllowed, WebhookSecretInvalid
from app.bots.domain.signal_bot import SignalSettings
from app.core.errors import NotFound
from app.runtime import Runtime
from db.models import Bot, BotAlert
from db.session import sqlstate

log = logging.getLogger(__name__)

WAKE_CHANNEL = "bot_wake"  # NOTIFY payload: the bot's id
# per bot: 60 alerts a minute, in bursts of up to 60 (TradingView fires one per alert
# and bar; a bot on one market needs far fewer)
ALERTS_PER_BOT = Budget("bot-alerts", 60, 60.0)
KINDS_TAKING_ALERTS = ("SIGNAL", "DCA")
CREDENTIAL_BYTES = 32  # token and secret: 256 bits each, 43 URL-safe characters
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{16,128}")
_FOREIGN_KEY_VIOLATION = "23503"


class Outcome(StrEnum):
    QUEUED = "queued"
    DUPLICATE = "duplicate"
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class Receipt:
    """What became of an alert (for a dry run: what would have)."""

    bot_id: int
    alert: Alert
    outcome: Outcome
    dry_run: bool = False
    reason: str | None = None  # why it is stale
    names_market: bool | None = None  # whether its symbol is the bot's market (None: no symbol)


@dataclass(frozen=True, slots=True)
class _Hook:
    """What the webhook reads of a bots row."""

    id: int
    kind: str
    status: str
    paused: bool
    symbols: list[str]
    settings: dict[str, Any]
    secret_hash: str
    ip_allowlist: list[str]


def new_webhook_credentials() -> tuple[str, str, str]:
    """A bot's new webhook credentials: (path token, secret, the secret's SHA-256 in hex).
    Store the token and the hash (``bots.webhook_token``, ``webhook_secret_hash``); show
    the secret once. Rotating is storing a new triple: the old URL and secret stop."""
    token = secrets.token_urlsafe(CREDENTIAL_BYTES)
    secret = secrets.token_urlsafe(CREDENTIAL_BYTES)
    return token, secret, hash_secret(secret)


async def receive_alert(
    *,
    rt: Runtime,
    token: str,
    body: bytes,
    content_type: str,
    client_ip: str | None,
    dry_run: bool = False,
) -> Receipt:
    """Check the delivery and queue its alert (module docstring); the typed errors there."""
    hook = await _hook(rt, token)
    if not ip_allowed(hook.ip_allowlist, client_ip):
        raise WebhookIpNotAllowed()
    read = read_body(body, content_type)
    if not secret_matches(read.secret, hook.secret_hash):
        raise WebhookSecretInvalid()
    if hook.status != "RUNNING":
        raise BotStopped()
    if hook.paused:
        raise BotPaused()
    decision = await draw(rt, ALERTS_PER_BOT, str(hook.id), 1)
    if not decision.allowed:
        raise decision.refuse("Too many alerts for this bot: slow down")
    alert = read.alert()
    now = rt.now()
    _, stale = admit((), alert, at=now, max_lag=_max_lag(hook), remember=timedelta(0))
    receipt = Receipt(
        bot_id=hook.id,
        alert=alert,
        outcome=Outcome.STALE if stale else Outcome.QUEUED,
        dry_run=dry_run,
        reason=stale,
        names_market=_names_market(hook, alert),
    )
    if stale is None:
        new = (
            not await _received_before(rt, hook.id, alert.alert_id)
            if dry_run
            else await _queue(rt, hook.id, alert, now)
        )
        receipt = receipt if new else replace(receipt, outcome=Outcome.DUPLICATE)
    _log(receipt)
    return receipt


async def _hook(rt: Runtime, token: str) -> _Hook:
    if not _TOKEN_SHAPE.fullmatch(token):
        raise NotFound("No bot webhook at this address")
    async with rt.reads() as session:
        row = (
            await session.execute(
                select(
                    Bot.id,
                    Bot.kind,
                    Bot.status,
                    Bot.paused,
                    Bot.symbols,
                    Bot.settings,
                    Bot.webhook_secret_hash,
                    Bot.ip_allowlist,
                ).where(
                    Bot.webhook_token == token,
                    Bot.webhook_secret_hash.is_not(None),
                    Bot.kind.in_(KINDS_TAKING_ALERTS),
                )
            )
        ).first()
    if row is None:
        raise NotFound("No bot webhook at this address")
    return _Hook(*row)


def _max_lag(hook: _Hook) -> timedelta:
    """How old an alert the bot still acts on: its settings' (as the codec writes them)."""
    if hook.kind == "SIGNAL":
        return from_json(SignalSettings, hook.settings).max_lag
    lag = hook.settings.get("max_lag")
    return dca.MAX_LAG if lag is None else from_json(timedelta, lag)


def _names_market(hook: _Hook, alert: Alert) -> bool | None:
    if alert.symbol is None:
        return None
    markets = [symbol.split("/") for symbol in hook.symbols if symbol.count("/") == 1]
    return any(symbol_matches(alert.symbol, base=base, quote=quote) for base, quote in markets)


async def _received_before(rt: Runtime, bot_id: int, alert_id: str) -> bool:
    async with rt.reads() as session:
        found = await session.scalar(
            select(exists().where(BotAlert.bot_id == bot_id, BotAlert.alert_id == alert_id))
        )
    return bool(found)


async def _queue(rt: Runtime, bot_id: int, alert: Alert, now: datetime) -> bool:
    """Insert the alert and wake the bot, in one transaction; False when it was queued
    before."""
    statement = (
        insert(BotAlert)
        .values(bot_id=bot_id, alert_id=alert.alert_id, alert=to_json(alert), received_at=now)
        .on_conflict_do_nothing(index_elements=[BotAlert.bot_id, BotAlert.alert_id])
        .returning(BotAlert.id)
    )
    try:
        async with rt.sessions() as session, session.begin():
            queued = await session.scalar(statement)
            if queued is not None:
                await session.execute(select(func.pg_notify(WAKE_CHANNEL, str(bot_id))))
    except IntegrityError as error:
        if sqlstate(error) != _FOREIGN_KEY_VIOLATION:
            raise
        raise NotFound("No bot webhook at this address") from None  # the bot was deleted
    return queued is not None


def _log(receipt: Receipt) -> None:
    log.info(
        "bot alert %s%s",
        receipt.outcome.value,
        " (dry run)" if receipt.dry_run else "",
        extra={
            "bot_id": receipt.bot_id,
            "alert_id": receipt.alert.alert_id,
            "action": receipt.alert.action.value,
            "outcome": receipt.outcome.value,
            "dry_run": receipt.dry_run,
            "reason": receipt.reason,
        },
    )
