"""Bot errors and their stable codes, next to the tree in ``app.core.errors``.

    UserError
    ├── GridSpacingBelowFees   a grid level's round trip would not cover its maker fees
    ├── BotNotFound            no bot of yours has that id
    ├── BotStopped             the bot has stopped: nothing more to do with it (the
    │                          webhook answers it with 409)
    └── the signal webhook's refusals (HTTP only, no GraphQL type: no description)
        ├── WebhookSecretInvalid    401: the body's secret is missing or wrong
        ├── WebhookIpNotAllowed     403: the caller is outside the bot's IP allowlist
        └── BotPaused               409: the bot takes no alerts now

Settings that are out of range are ``ValidationFailed`` naming the field. The webhook
also answers ``NotFound`` (404, no such webhook), ``InvalidWebhook`` (400, not an alert)
and ``RateLimited`` (429) from ``app.core.errors``. Codes are part of the public API:
never rename one. (The GraphQL types come from ``graphql_schema/errors.py``, which lists
this module among its ``HOMES``.)
"""

from __future__ import annotations

from typing import NoReturn

from app.core.errors import UserError, ValidationFailed


def refuse(field: str, message: str) -> NoReturn:
    """A setting out of range: ``ValidationFailed`` naming its GraphQL field."""
    raise ValidationFailed(message, field=field)


class GridSpacingBelowFees(UserError):
    code = "GRID_SPACING_BELOW_FEES"
    description = "A grid level's profit does not cover the fees: fewer levels or a wider range."
    default_message = "The grid's levels are too close: the fees eat the profit of a level"


class BotNotFound(UserError):
    code = "BOT_NOT_FOUND"
    description = "No bot of yours has that id."
    default_message = "Bot not found"


class BotStopped(UserError):
    code = "BOT_STOPPED"
    description = "The bot has stopped; create a new one to trade again."
    default_message = "The bot has stopped"


class WebhookSecretInvalid(UserError):
    code = "WEBHOOK_SECRET_INVALID"
    default_message = "The alert's secret is missing or wrong"


class WebhookIpNotAllowed(UserError):
    code = "WEBHOOK_IP_NOT_ALLOWED"
    default_message = "Alerts for this bot may not come from this address"


class BotPaused(UserError):
    code = "BOT_PAUSED"
    default_message = "The bot is paused: it takes no alerts until it resumes"
