"""Test helpers: a GraphQL client over HTTP, a captured SMTP mailbox, SQL and Redis
command counting."""

from __future__ import annotations

import base64
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller
from redis.asyncio import ConnectionPool, Redis


def die_with_parent() -> None:
    """``preexec_fn`` for a child process: the kernel kills it when the test worker that
    started it dies (a worker killed by the timeout leaves no engine running behind)."""
    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


ROOT = Path(__file__).resolve().parents[2]


def gid(type_name: str, pk: int) -> str:
    """The Relay global ID of ``type_name`` row ``pk``."""
    return base64.b64encode(f"{type_name}:{pk}".encode()).decode()


def pk(global_id: str) -> int:
    """The row id inside a Relay global ID."""
    return int(base64.b64decode(global_id).decode().split(":")[1])


@contextmanager
def app_processes(
    rt: Any, folder: Path, command: str, env: Mapping[str, str]
) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    """``start(name)`` runs ``python -m app <command>`` on the test's database and Redis
    (output in ``folder/<name>.log``); every process started is killed on exit, which
    fixtures reach before the tables are emptied."""
    started: list[tuple[subprocess.Popen[bytes], Any]] = []

    def start(name: str) -> subprocess.Popen[bytes]:
        output = (folder / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "app", command],
            cwd=ROOT,
            env={
                **os.environ,
                **env,
                "DATABASE_URL": rt.settings.database_url,
                "REDIS_URL": rt.settings.redis_url,
                "REDIS_PREFIX": rt.settings.redis_prefix,
                "DATA_DIR": str(folder / name),
            },
            stdout=output,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        started.append((process, output))
        return process

    try:
        yield start
    finally:
        for process, output in started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
            output.close()


class GraphQLClient:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def __call__(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        expect_status: int = 200,
    ) -> dict[str, Any]:
        all_headers = dict(headers or {})
        if token:
            all_headers["authorization"] = f"Bearer {token}"
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=all_headers
        )
        assert response.status_code == expect_status, response.text
        return response.json()

    async def data(self, query: str, variables: dict[str, Any] | None = None, **kw: Any) -> dict:
        body = await self(query, variables, **kw)
        assert "errors" not in body, body
        return body["data"]


@dataclass
class Mailbox:
    url: str = ""
    messages: list[Message] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()

    def to(self, address: str) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if m["To"] == address]

    def last_link(self, address: str, path: str) -> str:
        mails = self.to(address)
        assert mails, f"no mail to {address}"
        body = mails[-1].get_payload(decode=True).decode()
        links = re.findall(rf"https?://\S+{re.escape(path)}\?token=\S+", body)
        assert links, body
        return links[-1]

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_smtp_server() -> tuple[Mailbox, Controller]:
    mailbox = Mailbox()
    port = _free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    mailbox.url = f"smtp://127.0.0.1:{port}"
    return mailbox, controller


@dataclass
class QueryCounter:
    statements: list[str] = field(default_factory=list)

    def record(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(statement)

    def reset(self) -> None:
        self.statements.clear()

    @property
    def count(self) -> int:
        return len(self.statements)


@dataclass
class RedisCommands:
    """What a real Redis client sends: one list of command names per write to the socket
    (a pipeline is one write, so one round trip). ``before_reply``, when set, is awaited
    before each reply is read."""

    sends: list[list[str]] = field(default_factory=list)
    before_reply: Callable[[], Awaitable[None]] | None = None

    def client(self, like: Redis) -> Redis:
        """A client with ``like``'s connection settings whose connections report here."""
        pool = like.connection_pool
        recorder = self

        class Recording(pool.connection_class):
            def pack_command(self, *args: Any) -> Any:
                self.__dict__.setdefault("packed", []).append(str(args[0]).upper())
                return super().pack_command(*args)

            async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
                recorder.sends.append(self.__dict__.pop("packed", []))  # before a reconnect
                await super().send_packed_command(command, check_health)

            async def read_response(self, *args: Any, **kwargs: Any) -> Any:
                if recorder.before_reply is not None:
                    await recorder.before_reply()
                return await super().read_response(*args, **kwargs)

        return Redis.from_pool(ConnectionPool(connection_class=Recording, **pool.connection_kwargs))

    def sent(self, *names: str) -> list[list[str]]:
        """The writes that carried any of these commands (only those commands of each)."""
        wanted = {n.upper() for n in names}
        return [[c for c in send if c in wanted] for send in self.sends if wanted & set(send)]
