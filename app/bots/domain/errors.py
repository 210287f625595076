"""Bot errors and their stable codes, next to the tree in ``app.core.errors``.

    UserError
    ├── GridSpacingBelowFees   a grid level's round trip would not cover its maker fees
    ├── BotNotFound            no bot of yours has that id
    └── BotStopped             the bot has stopped: nothing more to do with it

Settings that are out of range are ``ValidationFailed`` naming the field. Codes are part
of the public API: never rename one. (The GraphQL types come when ``graphql_schema/
errors.py`` lists this module among its ``HOMES``.)
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
