"""The expected failures of connected exchange accounts, grouped by what the caller
should do (app/core/errors.py has the tree they hang from):

    UserError
    ├── UnsupportedExchange        pick one of the five (``SUPPORTED``)
    ├── PassphraseRequired         OKX keys have a passphrase: send it
    ├── ExchangeKeyInvalid         the exchange refused the key or its signature
    ├── ExchangePermissionDenied   the key may not do this (e.g. read balances)
    ├── ExchangeKeyAllowsWithdrawals   refused: make a key without withdrawals
    ├── ExchangeRateLimited        the exchange's own rate limit: wait, then retry
    ├── ExchangeInsufficientFunds  the exchange account lacks the funds
    ├── ExchangeRejected           the exchange refused the request for another reason
    ├── ExchangeSymbolUnknown      the exchange lists no such market
    ├── ExchangeUnavailable        the exchange did not answer (after retries): later
    ├── ExchangeAmendNotAvailable  a bot's amend at an exchange: cancel and place again
    └── ExchangeOrdersStillOpen    a disconnect that could not cancel the platform's
                                   orders at the exchange: retry, or leave them open

The ccxt edge (app/exchanges/ccxt_edge.py) converts ccxt's errors into these, once."""

from __future__ import annotations

from app.core.errors import UserError


class UnsupportedExchange(UserError):
    code = "UNSUPPORTED_EXCHANGE"
    description = "Not one of the exchanges accounts can be connected at."
    default_message = "This exchange is not supported"


class PassphraseRequired(UserError):
    code = "PASSPHRASE_REQUIRED"
    description = "This exchange's API keys come with a passphrase: send it."
    default_message = "This exchange needs the API key's passphrase as well"


class ExchangeKeyInvalid(UserError):
    code = "EXCHANGE_KEY_INVALID"
    description = "The exchange refused the API key, its secret or its passphrase."
    default_message = "The exchange refused this API key"


class ExchangePermissionDenied(UserError):
    code = "EXCHANGE_PERMISSION_DENIED"
    description = "The API key lacks a permission this needs (reading balances at least)."
    default_message = "The API key is not allowed to do this at the exchange"


class ExchangeKeyAllowsWithdrawals(UserError):
    code = "EXCHANGE_KEY_ALLOWS_WITHDRAWALS"
    description = "Refused: the API key may withdraw funds. Create one without withdrawals."
    default_message = (
        "This API key allows withdrawals: create a key without the withdrawal permission"
    )


class ExchangeRateLimited(UserError):
    code = "EXCHANGE_RATE_LIMITED"
    description = "The exchange's rate limit was reached: wait and retry."
    default_message = "The exchange asks to slow down: try again in a minute"


class ExchangeInsufficientFunds(UserError):
    code = "EXCHANGE_INSUFFICIENT_FUNDS"
    description = "The exchange account does not hold enough for this."
    default_message = "Insufficient funds at the exchange"


class ExchangeRejected(UserError):
    code = "EXCHANGE_REJECTED"
    description = "The exchange refused the request."
    default_message = "The exchange refused the request"


class ExchangeUnavailable(UserError):
    code = "EXCHANGE_UNAVAILABLE"
    description = "The exchange did not answer: try again later."
    default_message = "The exchange is unavailable, try again later"


class ExchangeOrderTypeNotAvailable(UserError):
    code = "EXCHANGE_ORDER_TYPE_NOT_AVAILABLE"
    description = (
        "This order type is not native at this exchange and the platform does not emulate it yet."
    )
    default_message = "This exchange has no native order of this type"


class ExchangeOrderNotCancellable(UserError):
    code = "EXCHANGE_ORDER_NOT_CANCELLABLE"
    description = "The order has ended (filled, canceled or rejected) or is not placed yet."
    default_message = "This order can no longer be canceled"


class ExchangeOrderNotFound(UserError):
    """The exchange knows no such order (raised by the edge; the service looks further)."""

    code = "EXCHANGE_ORDER_NOT_FOUND"
    default_message = "The exchange knows no such order"


class ExchangeOutcomeUnknown(UserError):
    """A write whose answer was lost (a timeout, a dropped connection): the exchange may
    or may not have done it. Never re-sent; the order is looked up by its client id."""

    code = "EXCHANGE_OUTCOME_UNKNOWN"
    default_message = "The exchange did not answer: the order's outcome is being checked"


class ExchangeSymbolUnknown(UserError):
    code = "EXCHANGE_SYMBOL_UNKNOWN"
    description = "The exchange lists no market of this symbol (spot, BASE/QUOTE)."
    default_message = "The exchange has no market of this symbol"


class ExchangeAmendNotAvailable(UserError):
    """The venue interface's amend on a connected account: not done (an exchange's
    amend is not atomic everywhere; cancel and place again instead)."""

    code = "EXCHANGE_AMEND_NOT_AVAILABLE"
    description = "Orders on a connected exchange account are not amended: cancel and place."
    default_message = "Orders at an exchange cannot be amended here: cancel and place again"


class ExchangeOrdersStillOpen(UserError):
    """A disconnect refused: orders the platform placed are still open at the exchange
    and could not be canceled (the key refused, the exchange away); nothing changed."""

    code = "EXCHANGE_ORDERS_STILL_OPEN"
    description = (
        "Orders placed through the platform are still open at the exchange and could not be"
        " canceled: try again, or disconnect with cancelOpenOrders false to leave them open."
    )
    default_message = (
        "Some of your orders are still open at the exchange and could not be canceled: try"
        " again, or disconnect leaving them open"
    )
