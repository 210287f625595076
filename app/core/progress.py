"""Progress of a long command-line run (a backtest, a sweep, a backfill): a bar redrawn in
place on a terminal, a line now and then otherwise (a log file, CI, ``kubectl logs``).

    with Progress(total=len(bars), label="backtest") as progress:
        for bar in bars:
            ...
            progress.advance()

Standard library only; writes to stderr unless told otherwise, so stdout stays for output.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TextIO


class Progress:
    """``total`` steps; ``advance(n)`` after each. On a TTY the bar is redrawn at most every
    ``redraw`` seconds; elsewhere a line is written at most every ``every`` seconds. The
    last state is always written on ``close()`` (or leaving the ``with`` block)."""

    def __init__(
        self,
        total: int,
        *,
        label: str = "",
        stream: TextIO | None = None,
        every: float = 10.0,
        redraw: float = 0.1,
        width: int = 30,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if total < 0:
            raise ValueError("total is not negative")
        self.total = total
        self.done = 0
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = width
        self._interval = redraw if self.tty else every
        self._clock = clock
        self._started = clock()
        self._last_write: float | None = None
        self._closed = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def advance(self, steps: int = 1) -> None:
        self.done = min(self.total, self.done + steps)
        now = self._clock()
        if self._last_write is None or now - self._last_write >= self._interval:
            self._write(now)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._write(self._clock(), final=True)

    def line(self, now: float | None = None, *, final: bool = False) -> str:
        """The text shown for the current state."""
        now = self._clock() if now is None else now
        elapsed = now - self._started
        share = self.done / self.total if self.total else 1.0
        counts = f"{self.done}/{self.total} ({share:.0%})"
        if final:
            timing = f"in {_clock_text(elapsed)}"
        elif self.done:
            timing = f"eta {_clock_text(elapsed / self.done * (self.total - self.done))}"
        else:
            timing = "eta ?"
        prefix = f"{self.label} " if self.label else ""
        if self.tty:
            filled = int(share * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            return f"{prefix}[{bar}] {counts} {timing}"
        return f"{prefix}{counts} {timing}"

    def _write(self, now: float, *, final: bool = False) -> None:
        self._last_write = now
        text = self.line(now, final=final)
        if self.tty:
            self.stream.write("\r\x1b[K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def _clock_text(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))
