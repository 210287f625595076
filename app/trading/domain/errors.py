"""Trading errors and their stable codes (issue 4), next to the tree in ``app.core.errors``.

    UserError                  fix the input and try again; nothing was changed
    ├── UnknownMarket / MarketHalted
    ├── InvalidOrder           parameters that do not fit the order type (``field`` says which)
    ├── PriceOffTick / QuantityOffLotSize / BelowMinimumNotional
    ├── PriceOutsideBand / StopPriceWrongSide
    ├── PostOnlyWouldTake / FokNotFillable     (refused by the matching engine)
    ├── OrderStatusConflict    the order's status does not allow this
    │   ├── OrderNotCancellable
    │   └── OrderNotAmendable
    ├── InvalidAmend           an amendment the order cannot take (quantity not above filled)
    ├── TradingDisabled        the user's kill switch is on
    ├── TooManyOpenOrders / OrderTooLarge          pre-trade risk limits
    ├── ClientOrderIdReused    the same clientOrderId with other parameters
    └── OrderNotFound          no such order of yours

The matching engine reports refusals as ``RejectReason`` values equal to these codes
(``app.trading.domain.matching.rejection_error`` maps one to the other). Codes are part of the
public API: never rename one. A class (and its GraphQL type) reads as its code:
FOK_NOT_FILLABLE is ``FokNotFillable`` (the code is also stored as an order's reason).
"""

from __future__ import annotations

from app.core.errors import UserError


class UnknownMarket(UserError):
    code = "UNKNOWN_MARKET"
    description = "No market with that symbol."
    default_message = "There is no such market"


class MarketHalted(UserError):
    code = "MARKET_HALTED"
    description = "The market takes no new orders for now."
    default_message = "Trading on this market is halted"


class InvalidOrder(UserError):
    code = "INVALID_ORDER"
    description = "Parameters that do not fit the order type."
    default_message = "These order parameters do not fit the order type"


class PriceOffTick(UserError):
    code = "PRICE_OFF_TICK"
    description = "The price is not a multiple of the tick size."
    default_message = "The price is not a multiple of the market's tick size"


class QuantityOffLotSize(UserError):
    code = "QUANTITY_OFF_LOT_SIZE"
    description = "The quantity is not a multiple of the lot size."
    default_message = "The quantity is not a multiple of the market's lot size"


class BelowMinimumNotional(UserError):
    code = "BELOW_MIN_NOTIONAL"
    description = "The order is worth less than the market's minimum."
    default_message = "The order's value is below the market's minimum"


class PriceOutsideBand(UserError):
    code = "PRICE_OUTSIDE_BAND"
    description = "Too far from the last price."
    default_message = "The price is too far from the last price"


class StopPriceWrongSide(UserError):
    code = "STOP_PRICE_WRONG_SIDE"
    description = "The trigger price is on the wrong side of the last price."
    default_message = "The trigger price is on the wrong side of the market"


class PostOnlyWouldTake(UserError):
    code = "POST_ONLY_WOULD_TAKE"
    description = "A post-only order would trade."
    default_message = "A post-only order may not trade on arrival"


class FokNotFillable(UserError):
    code = "FOK_NOT_FILLABLE"
    description = "A fill-or-kill order could not fill completely."
    default_message = "A fill-or-kill order could not be filled completely"


class OrderStatusConflict(UserError):
    code = "ORDER_STATUS_CONFLICT"
    default_message = "The order is not in a state that allows this"


class OrderNotCancellable(OrderStatusConflict):
    code = "ORDER_NOT_CANCELLABLE"
    description = "The order is no longer open."
    default_message = "The order is no longer open"


class OrderNotAmendable(OrderStatusConflict):
    code = "ORDER_NOT_AMENDABLE"
    description = "Only a resting LIMIT order (not in a list) can be amended."
    default_message = "Only an open order resting on the book can be amended"


class InvalidAmend(UserError):
    code = "INVALID_AMEND"
    description = "The new quantity must stay above the filled."
    default_message = "The new quantity must stay above what is already filled"


class TradingDisabled(UserError):
    code = "TRADING_DISABLED"
    description = "Your kill switch is on."
    default_message = "Trading is disabled for this account"


class TooManyOpenOrders(UserError):
    code = "TOO_MANY_OPEN_ORDERS"
    description = "Too many open orders."
    default_message = "You have reached the maximum number of open orders"


class OrderTooLarge(UserError):
    code = "ORDER_TOO_LARGE"
    description = "The order is worth more than the maximum."
    default_message = "The order's value is above the maximum"


class ClientOrderIdReused(UserError):
    code = "CLIENT_ORDER_ID_REUSED"
    description = "The client id was used for a different order."
    default_message = "This clientOrderId was used for a different order"


class OrderNotFound(UserError):
    code = "ORDER_NOT_FOUND"
    description = "You have no order with that id."
    default_message = "There is no such order"
