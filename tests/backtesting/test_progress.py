"""The progress reporter of long command-line runs (app/core/progress.py): a bar redrawn in
place on a terminal, a throttled line per interval otherwise, the final state always."""

from __future__ import annotations

import io

import pytest

from app.core.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_line_per_interval_and_the_final_state():
    clock, out = Clock(), io.StringIO()
    with Progress(total=100, label="backtest", stream=out, every=10, clock=clock) as progress:
        for _ in range(100):
            clock.now += 0.5  # 50 s in all: a line at the start and every 10 s
            progress.advance()
    lines = out.getvalue().splitlines()
    assert lines[0] == "backtest 1/100 (1%) eta 0:00:50"
    assert lines[1] == "backtest 21/100 (21%) eta 0:00:40"
    assert lines[-1] == "backtest 100/100 (100%) in 0:00:50"
    assert len(lines) == 5 + 1  # at 0.5, 10.5, 20.5, 30.5 and 40.5 s, then the close
    assert "\r" not in out.getvalue()


def test_a_terminal_gets_a_bar_redrawn_in_place():
    clock, out = Clock(), Terminal()
    progress = Progress(total=4, stream=out, width=8, redraw=0, clock=clock)
    for _ in range(4):
        clock.now += 1
        progress.advance()
    progress.close()
    progress.close()  # once only
    frames = out.getvalue().split("\r\x1b[K")[1:]
    assert frames[0] == "[##------] 1/4 (25%) eta 0:00:03"
    assert frames[2] == "[######--] 3/4 (75%) eta 0:00:01"
    assert frames[-1] == "[########] 4/4 (100%) in 0:00:04\n"
    assert out.getvalue().count("\n") == 1


def test_edges():
    out = io.StringIO()
    with Progress(total=0, stream=out, clock=Clock()):
        pass
    assert out.getvalue() == "0/0 (100%) in 0:00:00\n"
    progress = Progress(total=3, stream=io.StringIO(), clock=Clock())
    progress.advance(10)
    assert progress.done == 3  # never past the total
    assert progress.line() == "3/3 (100%) eta 0:00:00"
    with pytest.raises(ValueError):
        Progress(total=-1)
