"""Risk errors and their stable codes, next to the tree in ``app.core.errors``.

    UserError
    ├── RiskLimitReached       the order would take a limit's figure beyond its threshold
    ├── RiskHalted             a scope of the order is HALTED: cancels only
    ├── RiskReducing           a scope of the order is REDUCING: only orders that reduce
    │                          exposure
    ├── InvalidRiskLimit       a limit that cannot be set (kind, scope, action, threshold)
    ├── RiskLimitNotFound      no such limit of yours
    └── RiskStateConflict      the transition is not in the table (a reset of an ACTIVE
                               scope)

Codes are part of the public API: never rename one. Each message names the binding limit
or state (its scope and kind), so a client can say why without another request.
"""

from __future__ import annotations

from app.core.errors import UserError


class RiskLimitReached(UserError):
    code = "RISK_LIMIT_REACHED"
    description = "The order would take a risk limit beyond its threshold."
    default_message = "The order would exceed a risk limit"


class RiskHalted(UserError):
    code = "RISK_HALTED"
    description = "Trading is halted by a risk limit: only cancels are accepted."
    default_message = "Trading is halted by a risk limit: only cancels are accepted"


class RiskReducing(UserError):
    code = "RISK_REDUCING"
    description = "Only orders that reduce exposure are accepted for now."
    default_message = "Only orders that reduce exposure are accepted"


class InvalidRiskLimit(UserError):
    code = "INVALID_RISK_LIMIT"
    description = "A limit that cannot be set at this scope with this action."
    default_message = "This risk limit cannot be set"


class RiskLimitNotFound(UserError):
    code = "RISK_LIMIT_NOT_FOUND"
    description = "No risk limit with that id is yours to change."
    default_message = "There is no such risk limit"


class RiskStateConflict(UserError):
    code = "RISK_STATE_CONFLICT"
    description = "The scope's risk state does not allow this transition."
    default_message = "The risk state does not allow this"
