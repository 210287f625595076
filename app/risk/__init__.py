"""The risk engine (issue 22): limits at every scope, each scope's state, and the actions
that protect.

    domain/      pure: scopes and the state table (``states``), limit kinds, figures and
                 actions (``limits``), ``check_order`` (``checks``), P&L marks (``pnl``),
                 the typed errors (``errors``)
    gate         the check in the placement (and amendment) transaction (one more
                 select item of the placement's markets statement; no round trip of its
                 own), and the warnings of limits it nears
    notices      the warning a limit near its threshold gives (once a day per limit)
    limits       set, remove, reset (two-factor for a user's own scopes), admin states
    status       a user's status and the what-if check (``riskCheck``)
    transitions  the one writer of a scope's state, and its audit trail
    triggers     the ``risk-triggers`` consumer of the fills: P&L limits move states,
                 cancel orders, sell positions, notify
    sql          their statements

The same domain code runs in backtests: ``app.backtesting.domain.protections``.

Scopes by id: ORDER and USER the user's, FOLLOW a follow's (its copy orders name it in
their clientOrderId), MARKET a market's, PLATFORM 0, BOT a bot's. A bot trades as a
sub-account of its owner (``users.owner_id``): the placement's context statement learns
each sub-account's bot and owner (``Gate.bots``, ``Gate.owners``), so a bot's orders meet
its BOT scope and its owner's ORDER and USER scopes, whose figures count every bot's;
its amendments meet them as its orders do, and its warnings go to its owner. After
fills, a USER scope's P&L counts every live bot's sub-account too (``triggers``).
"""
