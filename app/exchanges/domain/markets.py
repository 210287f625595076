"""An exchange's market (as the ccxt edge hands it over: Decimals, converted once) and
the platform's ``MarketSpec`` made from it: tick, lot and minimum notional as the
exchange states them; the currencies' scales are the finest the market needs."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from app.trading.domain.orders import MarketSpec, MarketStatus


@dataclass(frozen=True, slots=True)
class ExchangeMarket:
    symbol: str  # ccxt's unified symbol, e.g. BTC/USDT
    exchange_symbol: str  # the exchange's own id, e.g. BTCUSDT, XXBTZUSD, BTC-USDT
    base: str
    quote: str
    tick_size: Decimal
    lot_size: Decimal
    min_amount: Decimal | None
    min_notional: Decimal | None
    maker_fee: Decimal
    taker_fee: Decimal
    active: bool


def _places(step: Decimal) -> int:
    exponent = step.normalize().as_tuple().exponent
    assert isinstance(exponent, int)  # finite: a positive step
    return max(0, -exponent)


def market_spec(market: ExchangeMarket) -> MarketSpec:
    """The platform's rules for ``market``. A minimum amount the exchange states instead
    of a minimum notional is not one: the lot size already bounds the amount."""
    return MarketSpec(
        symbol=market.symbol,
        base=market.base,
        quote=market.quote,
        base_scale=_places(market.lot_size),
        quote_scale=_places(market.tick_size * market.lot_size),
        tick_size=market.tick_size,
        lot_size=market.lot_size,
        min_notional=market.min_notional or Decimal(0),
        maker_fee=market.maker_fee,
        taker_fee=market.taker_fee,
        status=MarketStatus.OPEN if market.active else MarketStatus.HALTED,
    )
