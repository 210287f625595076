"""The HTML report (app/backtesting/report.py): one self-contained, well-formed file with
the metrics, two charts and the trades; escaped; the same bytes for the same input; and
matplotlib loaded only when a report is drawn."""

from __future__ import annotations

import base64
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

from app.backtesting import (
    ClosedTrade,
    EquityPoint,
    SweepSummary,
    backtest_result,
    render_report,
    write_report,
)
from app.backtesting.report import summary_rows

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2024, 3, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
VOID = {"meta", "img", "br", "hr", "link", "input"}


def small_result(trades: int = 3):
    equities = ["1000", "1010", "990", "970", "1005", "1020", "1015", "1040"]
    closes = ["50", "51", "49", "48", "50", "52", "51", "53"]
    curve = [
        EquityPoint(at=T0 + i * HOUR, equity=Decimal(e), close=Decimal(c), in_market=i % 2 == 1)
        for i, (e, c) in enumerate(zip(equities, closes, strict=True))
    ]
    closed = [
        ClosedTrade(
            entry_at=T0 + i * HOUR,
            exit_at=T0 + (i + 1) * HOUR,
            side="long",
            quantity=Decimal("0.5"),
            entry_price=Decimal("50.00"),
            exit_price=Decimal("52.00"),
            pnl=Decimal("0.95") if i % 2 else Decimal("-1.05"),
            fees=Decimal("0.05"),
        )
        for i in range(trades)
    ]
    return backtest_result(curve, closed, interval=HOUR)


class StrictParser(HTMLParser):
    """html.parser reports tags; this checks that every element is closed in order."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.images: list[str] = []
        self.cells: list[str] = []
        self.doctype = False

    def handle_decl(self, decl):
        self.doctype = decl.lower() == "doctype html"

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"unexpected </{tag}>")

    def handle_data(self, data):
        if self.stack and self.stack[-1] in ("td", "th", "title", "h1", "p"):
            self.cells.append(data)


def parse(html: str) -> StrictParser:
    parser = StrictParser()
    parser.feed(html)
    parser.close()
    assert parser.doctype and parser.errors == [] and parser.stack == []
    return parser


def test_the_report_has_the_metrics_two_charts_and_the_trades(tmp_path):
    result = small_result()
    path = write_report(tmp_path / "report.html", result, title="SMA cross", currency="USDT")
    html = path.read_text(encoding="utf-8")
    parsed = parse(html)
    rows = dict(summary_rows(result.metrics, "USDT"))
    assert rows["Total return"] == "4.00%" and rows["Buy and hold return"] == "6.00%"
    assert rows["Maximum drawdown"] == "3.96%"  # 1010 -> 970
    assert rows["Trades"] == "3" and rows["Fees paid"] == "0.15 USDT"
    for label, text in rows.items():
        assert label in parsed.cells and text in parsed.cells, label
    assert len(parsed.images) == 2
    for src in parsed.images:
        prefix = "data:image/svg+xml;base64,"
        assert src.startswith(prefix)
        svg = base64.b64decode(src[len(prefix) :]).decode()
        assert "<svg" in svg and "<path" in svg
    assert "-1.05" in parsed.cells and "0.95" in parsed.cells  # the trades
    assert "http://" not in html.replace("http://www.w3.org/", "")  # nothing to fetch


def test_the_same_input_gives_the_same_bytes(tmp_path):
    first = write_report(tmp_path / "a.html", small_result()).read_bytes()
    second = write_report(tmp_path / "b.html", small_result()).read_bytes()
    assert first == second


def test_every_string_is_escaped():
    html = render_report(
        small_result(),
        title="<script>alert(1)</script>",
        parameters={"name": '"><img src=x onerror=alert(1)>', "fast": 10},
    )
    parsed = parse(html)
    assert "<script>" not in html and "<img src=x" not in html
    assert "<script>alert(1)</script>" in parsed.cells  # shown as text
    assert '"><img src=x onerror=alert(1)>' in parsed.cells
    assert len(parsed.images) == 2


def test_a_long_trade_list_is_cut_with_a_note():
    html = render_report(small_result(trades=7), max_trades=5)
    assert "Showing the first 5 of 7 trades." in parse(html).cells
    trades_table = html.split("<h2>Trades</h2>")[1]
    assert trades_table.count("<tr>") == 1 + 5  # the header and five trades


def test_no_trades_and_a_sweep():
    sweep = SweepSummary(variants_tried=48, best_sharpe=Decimal("1.734"), deflated_sharpe=0.41)
    parsed = parse(render_report(small_result(trades=0), sweep=sweep))
    assert "No closed trades." in parsed.cells
    assert {"Variants tried", "48", "1.73", "0.4100"} <= set(parsed.cells)
    assert parsed.cells.count("n/a") >= 3  # win rate, profit factor, expectancy


def test_matplotlib_is_loaded_only_when_a_report_is_drawn():
    code = (
        "import sys, app.asgi, app.backtesting\n"
        "print('matplotlib' in sys.modules)\n"
        "from app.backtesting import render_report\n"
        "from tests.backtesting.test_report import small_result\n"
        "render_report(small_result())\n"
        "print('matplotlib' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.split() == ["False", "True"]
