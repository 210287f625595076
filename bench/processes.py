"""Child processes: the two uvicorn servers and the load generators, always cleaned up."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
STOP_TIMEOUT_SECONDS = 10.0


class Children:
    """Every process started here runs in its own session, so a Ctrl-C reaches only us;
    on exit (normal, error, Ctrl-C, SIGTERM) each is terminated, then killed if it lingers."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Children:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for proc in reversed(self._procs):
            stop(proc)

    def start(
        self,
        command: list[str],
        *,
        env: Mapping[str, str],
        stdout: IO[Any] | int = subprocess.PIPE,
        stderr: IO[Any] | int = subprocess.PIPE,
    ) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            command, cwd=ROOT, env=dict(env), stdout=stdout, stderr=stderr, start_new_session=True
        )
        self._procs.append(proc)
        return proc

    def run(self, command: list[str], *, env: Mapping[str, str], timeout: float) -> str:
        """Run to completion and return stdout; raise with stderr when it fails."""
        proc = self.start(command, env=env)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except BaseException:  # timeout, Ctrl-C, SIGTERM: stop it before anything else
            stop(proc)
            raise
        if proc.returncode != 0:
            raise RuntimeError(
                f"{command[0]} failed ({proc.returncode}): {stderr.decode()[-2000:]}"
            )
        return stdout.decode()


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def uvicorn_command(factory: str, *, port: int) -> list[str]:
    """The same settings for both servers: one worker, uvloop, httptools, no access log."""
    return [
        sys.executable, "-m", "uvicorn", factory, "--factory",
        "--host", HOST, "--port", str(port), "--workers", "1",
        "--loop", "uvloop", "--http", "httptools",
        "--no-access-log", "--log-level", "warning", "--lifespan", "on",
    ]  # fmt: skip


def post_json(
    port: int, path: str, body: str, *, authorization: str | None = None
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    request = urllib.request.Request(
        f"http://{HOST}:{port}{path}", data=body.encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def wait_until_serving(proc: subprocess.Popen[bytes], port: int, *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not start within {timeout:.0f}s")


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def run_main(run: Callable[[Any], int], args: Any) -> int:
    """A benchmark's ``main``: SIGTERM and Ctrl-C end it through its cleanup (the servers
    it started are stopped), quiet logging, then ``run(args)``."""
    from app.core.logs import configure_logging

    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    configure_logging(level="WARNING", json_output=False)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("\ninterrupted: servers stopped", file=sys.stderr)
        return 130
