"""An exchange bot's market: checked at its owner's connected account when the bot is
previewed or made (``preview``), kept on the bot's row (``bots.market_specs``) so its
steps size orders by the exchange's tick, lot and minimum notional without asking the
exchange in their transaction.

Refusals, nothing written: an account that is not the user's or is disconnected
(``NotFound`` on ``exchangeAccountId``), suspended (``ValidationFailed``), at an
exchange without orders (``UnsupportedExchange``); a bot of several markets
(REBALANCE: ``ValidationFailed`` on ``exchangeAccountId``); a symbol the exchange does
not list (``UnknownMarket`` on ``symbol``), one it halted (``MarketHalted``), one quoted
in a currency the platform does not know (``ValidationFailed`` on ``symbol``)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select

from app.core.errors import NotFound, UserError, ValidationFailed
from app.exchanges import market_data
from app.exchanges.accounts import ACTIVE, accounts_by_ids, binding_of, sealed_of
from app.exchanges.domain.catalogue import ExchangeId
from app.exchanges.domain.errors import UnsupportedExchange
from app.exchanges.domain.markets import market_spec
from app.exchanges.domain.orders import ORDER_EXCHANGES
from app.runtime import Runtime
from app.trading.domain.errors import MarketHalted, UnknownMarket
from app.trading.domain.orders import MarketSpec, MarketStatus
from db.models import Currency

FIELD = "exchangeAccountId"


@dataclass(frozen=True, slots=True)
class ExchangeMarket:
    exchange: ExchangeId
    spec: MarketSpec
    last_price: Decimal | None  # the exchange's ticker now (None: not known)


async def exchange_market(
    rt: Runtime, *, user_id: int, account_id: int, symbol: str
) -> ExchangeMarket:
    """The market ``symbol`` at the user's connected account ``account_id``."""
    async with rt.reads() as session:
        found = await accounts_by_ids(session, user_id=user_id, ids=[account_id])
    connection = found.get(account_id)
    if connection is None:
        raise NotFound("No such exchange account of yours", field=FIELD)
    exchange = ExchangeId(connection.exchange)
    if exchange not in ORDER_EXCHANGES:
        raise UnsupportedExchange(f"Orders at {exchange.value} are not available yet", field=FIELD)
    if connection.status != ACTIVE:
        raise ValidationFailed("This exchange account is suspended", field=FIELD)
    wanted = symbol.strip().upper()
    sealed, binding = sealed_of(connection), binding_of(connection)
    async with rt.exchanges.sealed_session(exchange, sealed, binding) as session:
        markets = {m.symbol: m for m in await session.markets()}
    if wanted not in markets:
        raise UnknownMarket("The exchange has no spot market of this symbol", field="symbol")
    spec = market_spec(markets[wanted])
    if spec.status is not MarketStatus.OPEN:
        raise MarketHalted(field="symbol")
    async with rt.reads() as db:
        known = await db.scalar(select(Currency.code).where(Currency.code == spec.quote))
    if known is None:
        raise ValidationFailed(f"A bot's quote currency must be one the platform knows;"
                               f" {spec.quote} is not", field="symbol")  # fmt: skip
    return ExchangeMarket(exchange, spec, await _last_price(rt, exchange, spec.symbol))


async def _last_price(rt: Runtime, exchange: ExchangeId, symbol: str) -> Decimal | None:
    try:
        ticker = await market_data.ticker(rt, exchange=exchange, symbol=symbol)
    except UserError:
        return None
    return ticker.last


def one_market(symbols: tuple[str, ...]) -> str:
    if len(symbols) != 1:
        raise ValidationFailed("A bot on an exchange account trades one market", field=FIELD)
    return symbols[0]
