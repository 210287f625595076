"""``python -m bench.sql_rows``: the cost of building an engine batch's rows by name.

The engine's batch write (app.trading.engine.sql) once built its rows as positional
tuples; now as NamedTuples by keyword (app.trading.engine.rows, through ``Arrays.row``,
a keyword-only constructor), so that the ``unnest`` arrays take their order from one
declaration. This times building 1,000 fills and 1,000 order changes each way, then
turning them into the statement's arrays (``columns``), and prints both and the ratio
(best of ``--repeat`` runs of ``--number`` batches); and, for the fills, calling the
NamedTuple itself with keywords (what ``Arrays.row`` saves). No database.
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable
from decimal import Decimal

from app.trading.engine.rows import FILLS, ORDERS, FillRow
from db.raw import columns

ROWS = 1000
_P, _Q, _V, _F = Decimal("90000.5"), Decimal("0.001"), Decimal("90.0005"), Decimal("0.09")


def fills_by_position() -> list[list[object]]:
    rows = [(n, n + 7, 2 * n, n % 97, "BUY", "MAKER", _P, _Q, _V, _F, n // 2) for n in range(ROWS)]
    return columns(rows, 11)


def _fills(make: Callable[..., FillRow]) -> list[list[object]]:
    rows = [
        make(
            trade_id=n,
            seq=n + 7,
            order_id=2 * n,
            user_id=n % 97,
            side="BUY",
            liquidity="MAKER",
            price=_P,
            quantity=_Q,
            quote_amount=_V,
            fee=_F,
            entry=n // 2,
        )
        for n in range(ROWS)
    ]
    return FILLS.arrays(rows)


def fills_by_name() -> list[list[object]]:
    return _fills(FILLS.row)


def fills_by_namedtuple_keywords() -> list[list[object]]:
    return _fills(FillRow)


def orders_by_position() -> list[list[object]]:
    rows = [
        (n, "FILLED", _Q, _Q, _V, _F, Decimal(n), _P, n + 7, None, n, False, None)
        for n in range(ROWS)
    ]
    return columns(rows, 13)


def orders_by_name() -> list[list[object]]:
    rows = [
        ORDERS.row(
            id=n,
            status="FILLED",
            quantity=_Q,
            filled_quantity=_Q,
            executed_value=_V,
            fees=_F,
            fee_numerator=Decimal(n),
            book_price=_P,
            priority=n + 7,
            reason=None,
            hold_id=n,
            trailing_active=False,
            trailing_extreme=None,
        )
        for n in range(ROWS)
    ]
    return ORDERS.arrays(rows)


def _best(function, number: int, repeat: int) -> float:
    """Seconds per call, the best of ``repeat``."""
    return min(timeit.repeat(function, number=number, repeat=repeat)) / number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    assert fills_by_position() == fills_by_name()
    assert orders_by_position() == orders_by_name()
    assert fills_by_position() == fills_by_namedtuple_keywords()
    for what, before, after in (
        ("fills", fills_by_position, fills_by_name),
        ("order changes", orders_by_position, orders_by_name),
        ("fills (FillRow(**keywords))", fills_by_position, fills_by_namedtuple_keywords),
    ):
        old = _best(before, args.number, args.repeat)
        new = _best(after, args.number, args.repeat)
        print(
            f"{ROWS} {what} + arrays: by position {old * 1e3:.3f} ms, by name "
            f"{new * 1e3:.3f} ms, ratio {new / old:.2f} "
            f"({(new - old) / ROWS * 1e9:+.0f} ns a row)"
        )


if __name__ == "__main__":
    main()
