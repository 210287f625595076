"""Pre-flight figures of a bot's settings at a price (pure): what ``createBot`` answers.

DCA (``dca_preflight``), for a deal whose base order fills at ``price``: one row for the
base order and one per safety order, each as the bot would place it (prices on the
tick, quantities in whole lots), with what the deal holds and has paid once it filled
(fees included: the taker fee for the base order, the maker fee for the resting safety
orders, rounded up per order), the average entry price, the breakeven price (selling
everything for what it cost after the exit fee: maker for a resting take-profit, taker
for a trailing one) and the first take-profit price. The worst-case capital is what one
deal spends when every safety order fills and its base order fills at its worst price;
``all_deals_capital`` is that for ``max_active_deals`` deals.

Grid (``grid_preflight``): its lines, the quantity each level trades when it starts at
``price``, and each level's profit for a round trip of it, net of both maker fees
(rounded up per order), with the fraction per unit (``grid_settings.level_profits``);
``problem`` says why it would not start at that price (None when it would).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from app.bots.domain.dca_settings import DcaSettings, base_order, safety_deviation, safety_order
from app.bots.domain.grid_settings import (
    GridSettings,
    LevelProfit,
    grid_opening,
    level_profits,
    opening_problem,
    quantity_profit,
)
from app.bots.domain.runtime import ZERO, ceil_to, fee_of
from app.trading.domain.orders import MarketSpec


@dataclass(frozen=True, slots=True)
class LadderRow:
    order: int  # 0: the base order, then safety orders 1, 2 ...
    deviation: Decimal  # below the entry
    price: Decimal
    quantity: Decimal
    value: Decimal  # quote, fees not included
    fee: Decimal
    position: Decimal  # base held once it filled
    cost: Decimal  # quote paid for it all, fees included
    average_entry: Decimal  # fees not included
    breakeven: Decimal  # fees included, the exit's too
    take_profit: Decimal  # the first take-profit step's price


@dataclass(frozen=True, slots=True)
class DcaPreflight:
    rows: tuple[LadderRow, ...]
    worst_case_capital: Decimal  # one deal, every order filled, fees included
    all_deals_capital: Decimal  # max_active_deals of them


def dca_preflight(settings: DcaSettings, market: MarketSpec, price: Decimal) -> DcaPreflight:
    quantity, worst = base_order(settings, market, price)
    orders = [(0, ZERO, price, quantity, market.taker_fee)]
    for n in range(1, settings.max_safety_orders + 1):
        so_price, so_quantity = safety_order(settings, market, price, n)
        orders.append((n, safety_deviation(settings, n), so_price, so_quantity, market.maker_fee))
    exit_fee = market.maker_fee if settings.trailing_deviation is None else market.taker_fee
    profit = settings.take_profit[0].profit
    rows: list[LadderRow] = []
    held = paid = cost = ZERO
    for n, deviation, at, size, rate in orders:
        value = at * size
        fee = fee_of(market, value, rate)
        held, paid, cost = held + size, paid + value, cost + value + fee
        if not held:
            continue
        average = paid / held
        rows.append(
            LadderRow(
                order=n, deviation=deviation, price=at, quantity=size, value=value, fee=fee,
                position=held, cost=cost, average_entry=average,
                breakeven=cost / (held * (1 - exit_fee)),
                take_profit=ceil_to(average * (1 + profit), market.tick_size),
            )
        )  # fmt: skip
    base_worst = worst * quantity
    safety_cost = sum(
        (at * size + fee_of(market, at * size, rate) for _, _, at, size, rate in orders[1:]), ZERO
    )
    worst_case = base_worst + fee_of(market, base_worst, market.taker_fee) + safety_cost
    return DcaPreflight(tuple(rows), worst_case, worst_case * settings.max_active_deals)


@dataclass(frozen=True, slots=True)
class GridPreflight:
    lines: tuple[Decimal, ...]
    per_unit: tuple[LevelProfit, ...]  # each level's profit per unit of the base
    quantity: Decimal  # what each level trades, starting at the price
    round_trips: tuple[Decimal, ...]  # each level's profit for a round trip of it (quote)
    problem: str | None  # why it would not start at the price


def grid_preflight(settings: GridSettings, market: MarketSpec, price: Decimal) -> GridPreflight:
    opening = grid_opening(settings, market, price)
    per_unit = level_profits(settings, market)
    return GridPreflight(
        lines=opening.lines,
        per_unit=per_unit,
        quantity=opening.quantity,
        round_trips=tuple(
            quantity_profit(market, p.buy, p.sell, opening.quantity) for p in per_unit
        ),
        problem=opening_problem(opening, settings, market),
    )
