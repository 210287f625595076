"""A test that runs far longer than any should leaves its evidence on the real stderr.

pytest-timeout ends a hung test by ending its worker process (``timeout_method =
"thread"``): what the test printed, captured by pytest, dies with it, and xdist reports only
"worker crashed". Before that, this watchdog writes to the stderr pytest saved (the
terminal, in an xdist worker too): the test's id, every thread's stack, every asyncio
task's stack, and what the test's database connections were doing (``pg_stat_activity``),
so that a hang seen once in CI can be explained from its log.
"""

from __future__ import annotations

import asyncio
import faulthandler
import io
import os
import threading
import time
from collections.abc import Iterator

import pytest

# Well inside pytest-timeout's 300 s, beyond what any test of the suite takes.
AFTER_SECONDS = float(os.environ.get("TEST_WATCHDOG_SECONDS", "150"))

_loop: asyncio.AbstractEventLoop | None = None


def remember_loop() -> None:
    """Called on the tests' event loop: the loop whose tasks a dump shows."""
    global _loop
    _loop = asyncio.get_running_loop()


def _saved_stderr(config: pytest.Config) -> int:
    capman = config.pluginmanager.getplugin("capturemanager")
    capturing = getattr(capman, "_global_capturing", None)
    err = getattr(capturing, "err", None)
    saved = getattr(err, "targetfd_save", None)
    return saved if isinstance(saved, int) else 2


def _tasks() -> str:
    loop = _loop
    if loop is None:
        return "(no event loop seen)\n"
    out = io.StringIO()
    for _ in range(5):  # the set may change under us: another try
        try:
            tasks = list(asyncio.all_tasks(loop))
            break
        except RuntimeError:
            time.sleep(0.01)
    else:
        return "(the tasks kept changing)\n"
    for task in tasks:
        out.write(f"--- {task!r}\n")
        task.print_stack(limit=12, file=out)
    return out.getvalue()


def _activity(database_url: str | None) -> str:
    if not database_url:
        return "(no database)\n"

    async def read() -> str:
        import asyncpg

        url = database_url.replace("postgresql+asyncpg://", "postgresql://")
        connection = await asyncio.wait_for(asyncpg.connect(url), 10)
        try:
            rows = await connection.fetch(
                "SELECT pid, state, wait_event_type, wait_event, now() - xact_start AS xact,"
                " left(query, 200) AS query FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            locks = await connection.fetch(
                "SELECT pid, relation::regclass::text AS rel, mode, granted FROM pg_locks"
                " WHERE NOT granted OR mode = 'AccessExclusiveLock' LIMIT 40"
            )
        finally:
            await connection.close()
        return "".join(f"{dict(r)}\n" for r in [*rows, *locks])

    try:
        return asyncio.run(read())
    except Exception as error:  # a dump must not fail: it says why it has no rows
        return f"(pg_stat_activity unavailable: {error!r})\n"


def _dump(config: pytest.Config, nodeid: str, started: float) -> None:
    fd = _saved_stderr(config)
    database_url = os.environ.get("CO_TEST_DATABASE_URL")
    head = f"\n\n===== WATCHDOG: {nodeid} still running after {time.monotonic() - started:.0f} s\n"
    os.write(fd, head.encode())
    os.write(fd, b"--- threads\n")
    faulthandler.dump_traceback(file=fd, all_threads=True)
    os.write(fd, f"--- asyncio tasks\n{_tasks()}".encode(errors="replace"))
    os.write(fd, f"--- database\n{_activity(database_url)}".encode(errors="replace"))
    os.write(fd, f"===== WATCHDOG END: {nodeid}\n\n".encode())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    started = time.monotonic()
    timer = threading.Timer(AFTER_SECONDS, _dump, (item.config, item.nodeid, started))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
