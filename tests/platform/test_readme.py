"""The README's five-minute tour runs as written against a live server with the demo data,
and every document link in it leads to a file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from websockets.asyncio.client import connect

from app.asgi import create_app
from app.core.settings import Settings
from app.trading.market_maker import MakerConfig, MarketMaker
from tests.gateway.test_websocket import TRANSPORT_WS, LiveServer
from tests.support.trading import running_engines

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
TIMEOUT = 10.0
# <!-- tour: NAME [variables] --> followed by a fenced block
_BLOCK = re.compile(r"<!-- tour: ([\w-]+)( variables)? -->\n```(\w+)\n(.*?)\n```", re.S)


def tour() -> dict[str, str]:
    """The README's marked blocks by name (``name variables`` for a document's variables)."""
    return {
        name + (" variables" if variables else ""): body
        for name, variables, _language, body in _BLOCK.findall(README)
    }


def test_the_readme_marks_the_tour_in_order():
    names = [m.group(1) + (m.group(2) or "") for m in _BLOCK.finditer(README)]
    assert names == [
        "login",
        "funds",
        "book",
        "limit",
        "limit variables",
        "market",
        "subscription",
        "subscription-python",
        "fills",
        "curl",
    ]


def test_every_link_in_the_readme_and_the_docs_leads_to_a_file():
    links = re.findall(r"\]\(((?!https?:|#)[^)]+)\)", README)
    assert any(link.startswith("docs/") for link in links)
    missing = [link for link in links if not (ROOT / link.split("#")[0]).is_file()]
    for page in (ROOT / "docs").glob("*.md"):
        for link in re.findall(r"\]\(((?!https?:|#)[^)]+)\)", page.read_text(encoding="utf-8")):
            if not (page.parent / link.split("#")[0]).is_file():
                missing.append(f"{page.name}: {link}")
    assert missing == []


def test_every_docs_file_is_linked_from_the_readme():
    docs = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert docs and docs <= set(re.findall(r"\]\((docs/[^)#]+)", README))


def test_the_configuration_page_lists_every_setting():
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [n.upper() for n in Settings.model_fields if f"`{n.upper()}`" not in page]
    assert missing == []


def _plain(value: Any) -> str:
    """A setting's default as the configuration page writes it."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float | Decimal):
        return format(Decimal(str(value)).normalize(), "f")
    return str(getattr(value, "value", value))


def test_the_configuration_page_gives_the_real_defaults():
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    derived = {"PUBLIC_URL": "http://HOST:PORT"}
    wrong = []
    for variables, default in re.findall(
        r"^\| (`[A-Z_]+`(?: / `[A-Z_]+`)*) \| (`[^|]*) \|", page, re.M
    ):
        names = re.findall(r"`([A-Z_]+)`", variables)
        values = re.findall(r"`([^`]*)`", default.split("(")[0])
        assert len(values) == len(names), (names, default)
        for name, value in zip(names, values, strict=True):
            expected = derived.get(name) or _plain(Settings.model_fields[name.lower()].default)
            with contextlib.suppress(ArithmeticError):
                value = format(Decimal(value).normalize(), "f")
            if value != expected:
                wrong.append((name, value, expected))
    assert wrong == []


def _arguments_named_in_the_docs() -> list[tuple[str, str, set[str]]]:
    """(page, field, argument names) for every ``field(a, b: ...)`` in inline code."""
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for code in re.findall(r"`([^`]+)`", page.read_text(encoding="utf-8")):
            code = re.sub(r"\{[^{}]*\}", "", code)  # input objects' fields are not arguments
            for name, arguments in re.findall(r"\b([a-z][A-Za-z]+)\(([^()]*)\)", code):
                names = {re.split(r"[:=]", a)[0].strip() for a in arguments.split(",")}
                found.append((page.name, name, {n for n in names if n.isidentifier()}))
    return found


def test_the_arguments_the_docs_name_are_the_schema_s():
    from graphql import GraphQLObjectType, build_schema

    schema = build_schema((ROOT / "schema.graphql").read_text(encoding="utf-8"))
    arguments: dict[str, list[set[str]]] = {}
    for named in schema.type_map.values():
        if isinstance(named, GraphQLObjectType) and not named.name.startswith("__"):
            for name, field in named.fields.items():
                arguments.setdefault(name, []).append(set(field.args))
    wrong = [
        (page, name, sorted(given))
        for page, name, given in _arguments_named_in_the_docs()
        if name in arguments and not any(given <= known for known in arguments[name])
    ]
    assert wrong == []


@pytest.fixture
async def seeded_server(rt, settings: Settings) -> AsyncIterator[LiveServer]:
    """What `python3 dev.py run` serves: the demo data and a market maker's quotes. The
    engines run in the test's event loop (owned before the server starts; its own wait
    as standbys)."""
    from app.seed import seed_demo_data

    async with running_engines(rt):
        await seed_demo_data(rt)
        await MarketMaker(rt, MakerConfig(levels=3, trade_probability=0)).cycle()
        server = LiveServer(create_app(settings))
        server.start()
        try:
            yield server
        finally:
            server.stop()


async def _run(
    http: httpx.AsyncClient,
    document: str,
    token: str | None = None,
    variables: dict[str, Any] | None = None,
) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = await http.post(
        "/graphql", json={"query": document, "variables": variables or {}}, headers=headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


async def _first_book_update(server: LiveServer, document: str, token: str) -> dict[str, Any]:
    async with connect(server.ws_url, subprotocols=[TRANSPORT_WS], open_timeout=TIMEOUT) as ws:
        init = {"authorization": f"Bearer {token}"}
        await ws.send(json.dumps({"type": "connection_init", "payload": init}))
        ack = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert ack["type"] == "connection_ack", ack
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": document}}))
        message = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    assert message["type"] == "next" and "errors" not in message["payload"], message
    return message["payload"]["data"]["orderBook"]


async def _python_snippet_prints_a_snapshot(server: LiveServer, code: str, token: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        env={**os.environ, "GRAPHQL_WS": server.ws_url, "TOKEN": token},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(process.stdout.readline(), TIMEOUT)  # type: ignore[union-attr]
    finally:
        process.kill()
        _, errors = await process.communicate()
    assert line, errors.decode()
    return line.decode()


async def test_the_tour_runs_against_a_live_server(seeded_server: LiveServer):
    blocks = tour()
    async with httpx.AsyncClient(base_url=seeded_server.url, timeout=TIMEOUT) as http:
        login = (await _run(http, blocks["login"]))["login"]
        assert login["__typename"] == "AuthPayload", login
        token = login["accessToken"]

        me = (await _run(http, blocks["funds"], token))["me"]
        assert me["kycLevel"] == 1
        available = {w["currency"]: Decimal(w["available"]) for w in me["wallets"]}
        assert available["USDT"] > 0 and available["BTC"] > 0

        book = (await _run(http, blocks["book"]))["orderBook"]
        assert book["bids"] and book["asks"], book
        # "a price a little under the best bid"
        price = (Decimal(book["bids"][0]["price"]) * Decimal("0.99")).quantize(Decimal("0.01"))
        variables = json.loads(blocks["limit variables"])
        variables["input"]["price"] = str(price)
        limit = (await _run(http, blocks["limit"], token, variables))["placeOrder"]
        assert limit["__typename"] == "OrderPayload", limit
        assert limit["order"]["status"] == "OPEN"

        market = (await _run(http, blocks["market"], token))["placeOrder"]
        assert market["__typename"] == "OrderPayload", market
        assert market["order"]["status"] == "FILLED", market

        snapshot = await _first_book_update(seeded_server, blocks["subscription"], token)
        assert snapshot["kind"] == "SNAPSHOT" and snapshot["previousSequence"] is None
        assert price in {Decimal(b["price"]) for b in snapshot["bids"]}, snapshot
        printed = await _python_snippet_prints_a_snapshot(
            seeded_server, blocks["subscription-python"], token
        )
        assert "'kind': 'SNAPSHOT'" in printed, printed

        fills = (await _run(http, blocks["fills"], token))["me"]["fills"]["edges"]
        assert fills, "the market order's fills"
        assert {f["node"]["order"]["type"] for f in fills} == {"MARKET"}
        assert all(f["node"]["side"] == "BUY" and f["node"]["liquidity"] == "TAKER" for f in fills)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the curl example needs curl")
async def test_the_curl_example_signs_in_and_reads_the_wallets(seeded_server: LiveServer):
    result = await asyncio.to_thread(
        subprocess.run,
        ["bash", "-euo", "pipefail", "-c", tour()["curl"]],
        env={**os.environ, "API": f"{seeded_server.url}/graphql"},
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 3,
    )
    assert result.returncode == 0, result.stderr
    wallets = json.loads(result.stdout)["data"]["me"]["wallets"]
    assert any(w["currency"] == "USDT" and Decimal(w["available"]) > 0 for w in wallets)
