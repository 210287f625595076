"""The HTML report of a backtest: one self-contained file (no network, no scripts) with the
metrics, the equity curve beside buy-and-hold, the drawdown (underwater) chart with the
maximum drawdown's span marked, the trades, and for a run under risk limits its refusals
and the changes of its risk state.

The charts are drawn by matplotlib (Agg, no display) as SVG, embedded as base64
``data:`` images so that each chart keeps its own ids. matplotlib is imported inside
``render_report`` only: its import cost (about a second) never lands on the API server.
Plotting converts the Decimal equities to floats, for drawing only: every figure printed
in the report comes from the Decimals.

The same input gives the same bytes: the SVG carries no date (``metadata={"Date": None}``)
and its ids come from a fixed ``svg.hashsalt``.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from html import escape
from pathlib import Path
from typing import Any

from app.backtesting.domain.metrics import (
    BacktestMetrics,
    BacktestResult,
    ClosedTrade,
    EquityPoint,
)
from app.backtesting.domain.protections import REFUSED, WARNED, RiskEvent

MAX_TRADES_SHOWN = 200
_HASH_SALT = "cryptoorchestrator-backtest-report"
_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1d2330}
h1{font-size:1.5rem;margin-bottom:.25rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;font-size:.9rem}
td,th{border-bottom:1px solid #dde1e8;padding:.3rem .7rem;text-align:right}
th{background:#f3f5f8}td:first-child,th:first-child{text-align:left}
.chart{max-width:100%;height:auto;display:block}.note{color:#5b6475;font-size:.85rem}
"""


@dataclass(frozen=True, slots=True)
class SweepSummary:
    """A parameter sweep behind this run: how many variants were tried, the best one's
    annualised Sharpe ratio and its deflated Sharpe ratio (a probability, see
    ``deflated_sharpe_ratio``)."""

    variants_tried: int
    best_sharpe: Decimal | None
    deflated_sharpe: float | None


def write_report(path: Path | str, result: BacktestResult, **options: Any) -> Path:
    """Write the report to ``path`` (UTF-8) and return the path; ``options`` are those of
    ``render_report``."""
    target = Path(path)
    target.write_text(render_report(result, **options), encoding="utf-8")
    return target


def render_report(
    result: BacktestResult,
    *,
    title: str = "Backtest",
    currency: str = "",
    parameters: Mapping[str, object] | None = None,
    sweep: SweepSummary | None = None,
    max_trades: int = MAX_TRADES_SHOWN,
    risk_events: Sequence[RiskEvent] | None = None,
) -> str:
    """The report as one HTML document; every string from the input is escaped.
    ``parameters`` (the strategy's settings), ``sweep`` and ``risk_events`` (a run under
    risk limits: the refusals counted, each transition) are shown when given; the trades
    table stops after ``max_trades`` rows, with a note."""
    metrics = result.metrics
    period = f"{_when(metrics.start)} to {_when(metrics.end)}, {metrics.bars} bars"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="note">{escape(period)}</p>',
    ]
    if parameters:
        parts += ["<h2>Parameters</h2>", _table(["Parameter", "Value"], parameters.items())]
    parts += ["<h2>Summary</h2>", _table(["Metric", "Value"], summary_rows(metrics, currency))]
    if sweep is not None:
        parts += ["<h2>Parameter sweep</h2>", _table(["", ""], _sweep_rows(sweep))]
    if risk_events is not None:
        parts += ["<h2>Risk limits</h2>", _risk(risk_events, max_trades)]
    equity_svg, drawdown_svg = _charts(metrics, result.curve)
    parts += [
        "<h2>Equity</h2>",
        _image(equity_svg, "Equity curve and buy-and-hold"),
        "<h2>Drawdown</h2>",
        _image(drawdown_svg, "Drawdown from the running peak"),
        "<h2>Trades</h2>",
        _trades(result.trades, max_trades),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def summary_rows(metrics: BacktestMetrics, currency: str = "") -> list[tuple[str, str]]:
    """The summary table's label and text for each metric, as the report shows them."""
    dd = metrics.max_drawdown
    unit = f" {currency}" if currency else ""
    return [
        ("Starting equity", _money(metrics.starting_equity) + unit),
        ("Final equity", _money(metrics.final_equity) + unit),
        ("Total return", _percent(metrics.total_return)),
        ("Buy and hold return", _percent(metrics.buy_and_hold_return)),
        ("CAGR", _percent(metrics.cagr)),
        ("Volatility (annualised)", _percent(metrics.volatility)),
        ("Sharpe ratio", _ratio(metrics.sharpe)),
        ("Sortino ratio", _ratio(metrics.sortino)),
        ("Calmar ratio", _ratio(metrics.calmar)),
        ("Maximum drawdown", _percent(dd.depth)),
        ("Drawdown peak", _when(dd.peak_at)),
        ("Drawdown trough", _when(dd.trough_at)),
        ("Drawdown recovered", _when(dd.recovered_at, none="not recovered" if dd.depth else "")),
        ("Trades", str(metrics.trades)),
        ("Win rate", _percent(metrics.win_rate)),
        ("Profit factor", _ratio(metrics.profit_factor)),
        ("Expectancy per trade", _money(metrics.expectancy) + unit),
        ("Exposure", _percent(metrics.exposure)),
        ("Fees paid", _money(metrics.fees_paid) + unit),
    ]


def _sweep_rows(sweep: SweepSummary) -> list[tuple[str, str]]:
    deflated = "n/a" if sweep.deflated_sharpe is None else f"{sweep.deflated_sharpe:.4f}"
    return [
        ("Variants tried", str(sweep.variants_tried)),
        ("Best Sharpe ratio", _ratio(sweep.best_sharpe)),
        ("Deflated Sharpe ratio (probability)", deflated),
    ]


def _charts(metrics: BacktestMetrics, curve: Sequence[EquityPoint]) -> tuple[bytes, bytes]:
    import matplotlib
    from matplotlib import dates as mdates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    times = [p.at for p in curve]
    equity = [float(p.equity) for p in curve]
    base_close = curve[0].close
    hold = [float(curve[0].equity * p.close / base_close) for p in curve]
    underwater, peak = [], curve[0].equity
    for point in curve:
        peak = max(peak, point.equity)
        underwater.append(float((point.equity / peak - 1) * 100))

    def axes_for(figure: Any) -> Any:
        FigureCanvasAgg(figure)  # the Agg backend, without pyplot's global state
        ax = figure.add_subplot()
        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.grid(True, alpha=0.3)
        return ax

    with matplotlib.rc_context({"svg.hashsalt": _HASH_SALT, "svg.fonttype": "path"}):
        figure = Figure(figsize=(10, 4), layout="constrained")
        ax = axes_for(figure)
        ax.plot(times, equity, label="Strategy", color="#1f5fbf", linewidth=1.4)
        ax.plot(times, hold, label="Buy and hold", color="#9099a8", linewidth=1.1)
        ax.set_ylabel("Equity")
        ax.legend(loc="upper left")
        equity_svg = _svg(figure)

        figure = Figure(figsize=(10, 3), layout="constrained")
        ax = axes_for(figure)
        ax.fill_between(times, underwater, 0, color="#c0392b", alpha=0.35, linewidth=0)
        ax.plot(times, underwater, color="#c0392b", linewidth=1)
        dd = metrics.max_drawdown
        if dd.peak_at is not None and dd.trough_at is not None:
            end = dd.recovered_at or times[-1]
            ax.axvspan(dd.peak_at, end, color="#f1c40f", alpha=0.25, label="Maximum drawdown")
            ax.plot([dd.trough_at], [-float(dd.depth * 100)], "v", color="#7b241c")
            ax.legend(loc="lower left")
        ax.set_ylabel("Drawdown (%)")
        drawdown_svg = _svg(figure)
    return equity_svg, drawdown_svg


def _svg(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def _image(svg: bytes, alt: str) -> str:
    data = base64.b64encode(svg).decode("ascii")
    return f'<img class="chart" alt="{escape(alt)}" src="data:image/svg+xml;base64,{data}">'


def _trades(trades: Sequence[ClosedTrade], limit: int) -> str:
    if not trades:
        return '<p class="note">No closed trades.</p>'
    header = ["#", "Side", "Entry", "Exit", "Quantity", "Entry price", "Exit price"]
    rows = [
        (
            str(number),
            t.side,
            _when(t.entry_at),
            _when(t.exit_at),
            str(t.quantity),
            str(t.entry_price),
            str(t.exit_price),
            str(t.fees),
            str(t.pnl),
        )
        for number, t in enumerate(trades[:limit], start=1)
    ]
    table = _table([*header, "Fees", "PnL (net)"], rows)
    if len(trades) > limit:
        note = f"Showing the first {limit} of {len(trades)} trades."
        return f'<p class="note">{escape(note)}</p>\n{table}'
    return table


def _risk(events: Sequence[RiskEvent], limit: int) -> str:
    """The refusals and warnings counted, then each transition of the account's state."""
    refused = sum(1 for e in events if e.action == REFUSED)
    warned = sum(1 for e in events if e.action == WARNED)
    moves = [e for e in events if e.action not in (REFUSED, WARNED)]
    note = (
        f'<p class="note">Orders refused by the risk limits: {refused}.'
        f" Warnings of a limit near: {warned}.</p>"
    )
    if not moves:
        return note + '\n<p class="note">No change of the risk state.</p>'
    rows = [(_when(e.at), str(e.candle), e.action, e.state.value, e.reason) for e in moves]
    table = _table(["At", "Candle", "Event", "State after", "Reason"], rows[:limit])
    if len(moves) > limit:
        table += f'\n<p class="note">The first {limit} of {len(moves)} changes.</p>'
    return note + "\n" + table


def _table(header: Sequence[str], rows: Any) -> str:
    head = "".join(f"<th>{escape(str(cell))}</th>" for cell in header)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _percent(value: Decimal | None) -> str:
    return "n/a" if value is None else f"{value * 100:,.2f}%"


def _ratio(value: Decimal | None) -> str:
    return "n/a" if value is None else f"{value:,.2f}"


def _money(value: Decimal | None) -> str:
    return "n/a" if value is None else f"{value:,.2f}"


def _when(value: datetime | None, *, none: str = "") -> str:
    return none if value is None else value.isoformat(sep=" ")
