"""The signal bots' webhook over real HTTP (uvicorn as ``serve`` configures it): both body
types, the secret, the IP allowlist (X-Forwarded-For only from a trusted proxy), refusals
that store nothing (never a 500), queueing once per alert with a NOTIFY, stale alerts,
the per-bot rate limit, dry runs, an answer while a step holds the bot's row, and logs
without the secret."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select, text

from app.__main__ import uvicorn_config
from app.asgi import create_app
from app.bots.domain.alerts import MAX_BODY_BYTES, Alert, AlertAction, parse_alert
from app.bots.domain.codec import from_json
from app.bots.webhook import ALERTS_PER_BOT, WAKE_CHANNEL, new_webhook_credentials
from app.core.settings import Settings
from app.runtime import Runtime
from db.models import BotAlert
from tests.gateway.test_websocket import LiveServer
from tests.support.bots import HookedBot, insert_hooked_bot, signal_settings

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
ANSWER_WITHIN = 10.0  # a request that waited on the held row would never answer


class AppServer(LiveServer):
    """The app under uvicorn with the options ``serve`` gives it (proxy headers believed
    from ``FORWARDED_ALLOW_IPS`` only)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(create_app(settings))
        config = uvicorn_config(settings, self.server.config.app)
        config.log_level, config.lifespan = "warning", "on"
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )


@pytest.fixture(scope="module")
def live(settings: Settings) -> Iterator[AppServer]:
    """Trusts X-Forwarded-For from 127.0.0.1 (the default ``FORWARDED_ALLOW_IPS``)."""
    assert settings.forwarded_allow_ips == "127.0.0.1"
    server = AppServer(settings)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def untrusting(settings: Settings) -> Iterator[AppServer]:
    """Trusts no proxy that this test's client could be."""
    server = AppServer(settings.model_copy(update={"forwarded_allow_ips": "192.0.2.1"}))
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def http(live: AppServer, rt: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live.url, timeout=ANSWER_WITHIN) as client:
        yield client


@pytest.fixture
async def bot(rt: Runtime) -> HookedBot:
    return await insert_hooked_bot(rt)


@contextlib.asynccontextmanager
async def wakes(rt: Runtime) -> AsyncIterator[asyncio.Queue[str]]:
    """The payloads NOTIFYed on the bots' wake channel, in commit order."""
    received: asyncio.Queue[str] = asyncio.Queue()

    def on_wake(_c: object, _pid: int, _channel: str, payload: str) -> None:
        received.put_nowait(payload)

    async with rt.engine.connect() as connection:
        pg = (await connection.get_raw_connection()).driver_connection
        assert pg is not None
        await pg.add_listener(WAKE_CHANNEL, on_wake)
        try:
            yield received
        finally:
            await pg.remove_listener(WAKE_CHANNEL, on_wake)


async def queued(rt: Runtime, bot: HookedBot | None = None) -> list[BotAlert]:
    async with rt.sessions() as session:
        statement = select(BotAlert).order_by(BotAlert.id)
        if bot is not None:
            statement = statement.where(BotAlert.bot_id == bot.id)
        return list(await session.scalars(statement))


def now() -> datetime:
    return datetime.now(UTC)


def json_alert(secret: str, **fields: object) -> bytes:
    return json.dumps({"secret": secret, "action": "buy", "ticker": "BTCUSDT", **fields}).encode()


async def post(
    http: httpx.AsyncClient,
    bot: HookedBot,
    body: bytes,
    content_type: str = JSON,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> httpx.Response:
    headers = {"content-type": content_type, **(headers or {})}
    return await http.post(bot.path, content=body, headers=headers, params=params)


# queueing


async def test_a_json_alert_is_queued_once_and_wakes_its_bot(rt, http, bot):
    at = now().replace(microsecond=0)
    body = json_alert(bot.secret, amount="250.5", price=42000, time=at.isoformat())
    async with wakes(rt) as woken:
        before = now()
        answer = await post(http, bot, body)
        after = now()
        assert answer.status_code == 202
        assert answer.json() == {"status": "queued", "alertId": answer.json()["alertId"]}
        assert await asyncio.wait_for(woken.get(), ANSWER_WITHIN) == str(bot.id)
        again = await post(http, bot, body)
        assert again.status_code == 200
        assert again.json() == {"status": "duplicate", "alertId": answer.json()["alertId"]}
        other = await post(http, bot, json_alert(bot.secret, action="close"))
        assert other.status_code == 202
        assert await asyncio.wait_for(woken.get(), ANSWER_WITHIN) == str(bot.id)
        assert woken.empty()  # in commit order: the duplicate woke nobody

    first, second = await queued(rt, bot)
    expected = Alert(
        alert_id=answer.json()["alertId"],
        action=AlertAction.BUY,
        symbol="BTCUSDT",
        amount=D("250.5"),
        price=D(42000),
        time=at,
    )
    assert from_json(Alert, first.alert) == expected == parse_alert(body, JSON)  # the worker's read
    assert first.alert_id == expected.alert_id  # (the server's bots job may have taken it)
    assert before <= first.received_at <= after  # the server's clock, at receipt
    assert from_json(Alert, second.alert).action is AlertAction.CLOSE
    assert bot.secret not in json.dumps([first.alert, second.alert])


async def test_key_value_lines_as_tradingview_sends_them(rt, http, bot):
    body = (
        f"secret={bot.secret}\n"
        "id=tv-{{timenow}}-1\n"
        "action=sell\n"
        "ticker=BINANCE:BTCUSDT\n"
        "quantity=0.015\n"
        f"time={now().isoformat()}\n"
    ).encode()
    answer = await post(http, bot, body, TEXT)
    assert answer.status_code == 202 and answer.json()["alertId"] == "tv-{{timenow}}-1"
    [row] = await queued(rt, bot)
    alert = from_json(Alert, row.alert)
    assert (alert.action, alert.symbol, alert.quantity) == (
        AlertAction.SELL,
        "BINANCE:BTCUSDT",
        D("0.015"),
    )


async def test_json_sent_as_text_plain_is_read_as_json(rt, http, bot):
    answer = await post(http, bot, json_alert(bot.secret, id="as-text"), "text/plain")
    assert answer.status_code == 202 and answer.json()["alertId"] == "as-text"


async def test_the_same_alert_id_for_two_bots_is_two_alerts(rt, http, bot):
    other = await insert_hooked_bot(rt)
    assert (await post(http, bot, json_alert(bot.secret, id="x"))).status_code == 202
    assert (await post(http, other, json_alert(other.secret, id="x"))).status_code == 202
    assert [r.bot_id for r in await queued(rt)] == [bot.id, other.id]


async def test_a_dca_bot_started_by_signals_takes_alerts(rt, http):
    dca = await insert_hooked_bot(rt, kind="DCA")
    assert (await post(http, dca, json_alert(dca.secret))).status_code == 202
    late = json_alert(dca.secret, time=(now() - timedelta(minutes=2)).isoformat())
    assert (await post(http, dca, late)).json()["status"] == "stale"  # DcaBot.max_lag: 1 min
    assert len(await queued(rt, dca)) == 1


@pytest.mark.parametrize("kind", ["GRID", "REBALANCE"])
async def test_bots_that_take_no_alerts_have_no_webhook(rt, http, kind):
    hooked = await insert_hooked_bot(rt)
    async with rt.sessions() as session, session.begin():
        await session.execute(text("UPDATE bots SET kind = :kind"), {"kind": kind})
    answer = await post(http, hooked, json_alert(hooked.secret))
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "NOT_FOUND"


# the slow path: a step holding the bot's row


async def test_the_webhook_answers_while_a_step_holds_the_bots_row(rt, http, bot):
    async with rt.sessions() as session, session.begin():
        # what a long step does: lock the row, then store the new state
        await session.execute(
            text("SELECT id FROM bots WHERE id = :id FOR NO KEY UPDATE"), {"id": bot.id}
        )
        await session.execute(
            text("UPDATE bots SET steps = steps + 1, state = state WHERE id = :id"),
            {"id": bot.id},
        )
        async with wakes(rt) as woken:
            answer = await asyncio.wait_for(
                post(http, bot, json_alert(bot.secret, id="while-held")), ANSWER_WITHIN
            )
            assert answer.status_code == 202
            assert await asyncio.wait_for(woken.get(), ANSWER_WITHIN) == str(bot.id)
        [row] = await queued(rt, bot)  # committed while the step still holds the row
        assert row.alert_id == "while-held"


# stale alerts


async def test_a_stale_alert_is_answered_and_not_queued_with_its_reason_logged(rt, http, caplog):
    lagging = await insert_hooked_bot(rt, settings=signal_settings(max_lag=timedelta(seconds=30)))
    caplog.set_level(logging.INFO, logger="app.bots.webhook")
    sent = now() - timedelta(seconds=90)
    answer = await post(http, lagging, json_alert(lagging.secret, time=sent.isoformat()))
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "stale" and "over the 30 s allowed" in body["reason"]
    ahead = now() + timedelta(minutes=5)
    answer = await post(http, lagging, json_alert(lagging.secret, time=ahead.isoformat()))
    assert answer.json()["status"] == "stale" and "ahead" in answer.json()["reason"]
    assert await queued(rt) == []
    [line, _] = [r for r in caplog.records if getattr(r, "outcome", None) == "stale"]
    assert line.bot_id == lagging.id and "over the 30 s allowed" in line.reason


async def test_an_alert_within_the_lag_is_queued(rt, http, bot):
    sent = now() - timedelta(seconds=20)  # the bot allows a minute
    answer = await post(http, bot, json_alert(bot.secret, time=int(sent.timestamp())))
    assert answer.status_code == 202


# refusals: nothing stored


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"action": "buy"}', JSON),
        (b'{"secret": "", "action": "buy"}', JSON),
        (b'{"secret": "wrong", "action": "buy"}', JSON),
        (b'{"secret": 12345, "action": "buy"}', JSON),
        (b'{"secret": null, "action": "buy"}', JSON),
        (b"secret=wrong\naction=buy", TEXT),
        (b"secret=\naction=buy", TEXT),
        (b"action=buy", TEXT),
    ],
)
async def test_a_missing_or_wrong_secret_is_401(rt, http, bot, body, content_type):
    answer = await post(http, bot, body, content_type)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "WEBHOOK_SECRET_INVALID"
    assert await queued(rt) == []


async def test_another_bots_secret_is_wrong(rt, http, bot):
    other = await insert_hooked_bot(rt)
    answer = await post(http, bot, json_alert(other.secret))
    assert answer.status_code == 401 and await queued(rt) == []


async def test_the_secret_is_checked_before_the_alert(rt, http, bot):
    answer = await post(http, bot, b'{"secret": "wrong", "action": "hold"}')
    assert answer.status_code == 401  # an outsider learns nothing of the fields


@pytest.mark.parametrize(
    "path",
    [
        "/hooks/bots/" + "A" * 43,
        "/hooks/bots/short",
        "/hooks/bots/%00%00",
        "/hooks/bots/" + "é" * 43,
    ],
)
async def test_an_unknown_token_is_404(rt, http, bot, path):
    answer = await http.post(path, content=json_alert(bot.secret), headers={"content-type": JSON})
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "NOT_FOUND"


async def test_a_bot_without_webhook_credentials_is_404(rt, http, bot):
    async with rt.sessions() as session, session.begin():
        await session.execute(text("UPDATE bots SET webhook_secret_hash = NULL"))
    answer = await post(http, bot, json_alert(bot.secret))
    assert answer.status_code == 404


@pytest.mark.parametrize(
    ("status", "paused", "code"),
    [("STOPPED", False, "BOT_STOPPED"), ("STOPPING", False, "BOT_STOPPED"),
     ("RUNNING", True, "BOT_PAUSED")],
)  # fmt: skip
async def test_a_bot_that_is_not_running_refuses_with_409(rt, http, status, paused, code):
    stopped = await insert_hooked_bot(rt, status=status, paused=paused)
    answer = await post(http, stopped, json_alert(stopped.secret))
    assert answer.status_code == 409 and answer.json()["error"]["code"] == code
    assert await queued(rt) == []


def nasty_bodies(secret: str) -> list[tuple[bytes, str, str]]:
    """(body, content type, the key named) of bodies that are not alerts."""
    line = f"secret={secret}\n".encode()
    head = f'{{"secret": "{secret}", '.encode()
    return [
        (b"\xff\xfe\xfd", TEXT, "body"),
        (line + b"action=buy\nticker=\xc3\x28", TEXT, "body"),
        (b"{not json", JSON, "body"),
        (b"[1, 2, 3]", JSON, "body"),
        (b"[" * 5000, JSON, "body"),
        (b'{"a":' * 1500 + b"1" + b"}" * 1500, JSON, "body"),
        (head + b'"action": "buy", "price": NaN}', JSON, "body"),
        (head + b'"action": "buy", "quantity": Infinity}', JSON, "body"),
        (line + b"just some words", TEXT, "body"),
        (b'{"action": "buy"}', "application/x-www-form-urlencoded", "contentType"),
        (b'{"action": "buy"}', "", "contentType"),
        (line + b"action=buy\x00", TEXT, "action"),
        (head + b'"action": "b\\u0000uy"}', JSON, "action"),
        (head + b'"action": "hold"}', JSON, "action"),
        (head + b'"action": ["buy"]}', JSON, "action"),
        (head + b'"action": "buy", "ticker": "BTC\\u0000USDT"}', JSON, "symbol"),
        (head + b'"action": "buy", "id": "\\ud800"}', JSON, "id"),
        (head + b'"action": "buy", "id": "' + b"x" * 200 + b'"}', JSON, "id"),
        (head + b'"action": "buy", "quantity": 1e999999999}', JSON, "quantity"),
        (head + b'"action": "buy", "amount": ' + b"9" * 4000 + b"}", JSON, "amount"),
        (head + b'"action": "buy", "amount": -5}', JSON, "amount"),
        (line + b"action=buy\nprice=" + b"9" * 4000, TEXT, "price"),
        (line + b"action=buy\nqty=1\nquantity=2", TEXT, "qty"),
        (line + b"action=buy\ntime=9999-12-31T23:59:59-23:59", TEXT, "time"),
        (line + b"action=buy\ntime=2024-01-01T12:00:00", TEXT, "time"),
        (line + b"action=buy\ntime=" + b"9" * 400, TEXT, "time"),
        (line + b"action=buy\nsecret=again", TEXT, "secret"),
    ]


async def test_bodies_that_are_not_alerts_are_400_naming_the_key(rt, http, bot):
    for body, content_type, key in nasty_bodies(bot.secret):
        answer = await post(http, bot, body, content_type)
        assert answer.status_code == 400, (body[:80], answer.text)
        error = answer.json()["error"]
        assert (error["code"], error["field"]) == ("INVALID_WEBHOOK", key), body[:80]
    assert await queued(rt) == []


async def test_a_body_over_the_limit_is_413(rt, http, bot):
    padding = "x" * MAX_BODY_BYTES
    body = json_alert(bot.secret, note=padding)
    answer = await post(http, bot, body)
    assert answer.status_code == 413
    assert answer.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        yield json_alert(bot.secret)[:-1]
        yield b', "note": "' + padding.encode() + b'"}'

    streamed = await http.post(bot.path, content=chunks(), headers={"content-type": JSON})
    assert streamed.status_code == 413
    assert await queued(rt) == []


# the IP allowlist


async def test_an_address_outside_the_allowlist_is_403(rt, http):
    guarded = await insert_hooked_bot(rt, ip_allowlist=["203.0.113.0/24", "2001:db8::/32"])
    answer = await post(http, guarded, json_alert(guarded.secret))
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "WEBHOOK_IP_NOT_ALLOWED"
    assert await queued(rt) == []


async def test_the_allowlist_reads_x_forwarded_for_from_a_trusted_proxy(rt, http):
    guarded = await insert_hooked_bot(rt, ip_allowlist=["203.0.113.0/24"])
    body = json_alert(guarded.secret)
    through = await post(http, guarded, body, headers={"x-forwarded-for": "203.0.113.9"})
    assert through.status_code == 202  # the client is 127.0.0.1, a trusted proxy
    outside = await post(http, guarded, body, headers={"x-forwarded-for": "198.51.100.1"})
    assert outside.status_code == 403


async def test_x_forwarded_for_from_an_untrusted_client_is_ignored(rt, untrusting):
    guarded = await insert_hooked_bot(rt, ip_allowlist=["203.0.113.0/24"])
    async with httpx.AsyncClient(base_url=untrusting.url, timeout=ANSWER_WITHIN) as client:
        answer = await post(
            client, guarded, json_alert(guarded.secret), headers={"x-forwarded-for": "203.0.113.9"}
        )
    assert answer.status_code == 403 and await queued(rt) == []


async def test_a_loopback_allowlist_lets_the_caller_in(rt, untrusting):
    guarded = await insert_hooked_bot(rt, ip_allowlist=["127.0.0.1/32"])
    async with httpx.AsyncClient(base_url=untrusting.url, timeout=ANSWER_WITHIN) as client:
        answer = await post(client, guarded, json_alert(guarded.secret))
    assert answer.status_code == 202


# the rate limit


async def test_each_bot_has_its_own_alert_budget(rt, http, bot):
    """The budget refills continuously (a unit a second): the first ``limit`` pass at
    once, and sending on, a refusal comes."""
    other = await insert_hooked_bot(rt)
    answers = []
    while len(answers) < 3 * ALERTS_PER_BOT.limit and 429 not in answers:
        preview = await post(http, bot, json_alert(bot.secret), params={"dryRun": "true"})
        answers.append(preview.status_code)
        if preview.status_code == 429:
            refused = preview
    assert answers[: ALERTS_PER_BOT.limit] == [200] * ALERTS_PER_BOT.limit
    assert answers[-1] == 429
    assert refused.json()["error"]["code"] == "RATE_LIMITED"
    assert int(refused.headers["retry-after"]) >= 1
    assert (await post(http, other, json_alert(other.secret))).status_code == 202
    assert [r.bot_id for r in await queued(rt)] == [other.id]


async def test_a_wrong_secret_draws_nothing_from_the_budget(rt, http, bot):
    for _ in range(ALERTS_PER_BOT.limit + 5):
        assert (await post(http, bot, json_alert("wrong"))).status_code == 401
    assert (await post(http, bot, json_alert(bot.secret))).status_code == 202


# dry runs


async def test_a_dry_run_says_what_the_alert_would_be_and_stores_nothing(rt, http, bot):
    body = json_alert(bot.secret, id="preview-1", amount="0.0000001", time=now().isoformat())
    async with wakes(rt) as woken:
        answer = await post(http, bot, body, params={"dryRun": "true"})
        assert answer.status_code == 200
        assert await queued(rt) == []
        preview = answer.json()
        assert preview["status"] == "dryRun" and preview["wouldBe"] == "queued"
        assert preview["alertId"] == "preview-1" and preview["namesMarket"] is True
        alert = preview["alert"]
        assert (alert["action"], alert["symbol"], alert["amount"]) == (
            "BUY",
            "BTCUSDT",
            "0.0000001",
        )
        assert alert["quantity"] is None and alert["time"].endswith("+00:00")
        assert (await post(http, bot, body)).status_code == 202
        assert await asyncio.wait_for(woken.get(), ANSWER_WITHIN) == str(bot.id)
    again = await post(http, bot, body, params={"dryRun": "1"})
    assert again.json()["wouldBe"] == "duplicate" and len(await queued(rt)) == 1


async def test_a_dry_run_of_a_stale_alert_for_another_market(rt, http, bot):
    late = (now() - timedelta(hours=1)).isoformat()
    body = json_alert(bot.secret, ticker="BINANCE:ETHUSDT", time=late)
    preview = (await post(http, bot, body, params={"dryRun": "true"})).json()
    assert preview["wouldBe"] == "stale" and "over the 60 s allowed" in preview["reason"]
    assert preview["namesMarket"] is False


async def test_a_dry_run_checks_like_a_delivery(rt, http, bot):
    wrong = await post(http, bot, json_alert("wrong"), params={"dryRun": "true"})
    assert wrong.status_code == 401
    bad = await post(http, bot, json_alert(bot.secret), params={"dryRun": "maybe"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "dryRun"


# logs and credentials


async def test_logs_never_hold_the_secret_or_the_token(rt, http, caplog):
    caplog.set_level(logging.DEBUG)
    hooked = await insert_hooked_bot(rt, settings=signal_settings(max_lag=timedelta(seconds=5)))
    secret = hooked.secret
    late = (now() - timedelta(hours=1)).isoformat()
    bodies = [
        (json_alert(secret), JSON),
        (json_alert(secret), JSON),  # duplicate
        (json_alert(secret, id="late", time=late), JSON),  # stale
        (f"secret={secret}\naction=hold".encode(), TEXT),  # 400
        (f"secret={secret}\nsecret={secret}\naction=buy".encode(), TEXT),  # 400
        (f"{secret}".encode(), TEXT),  # 400
        (json_alert(secret + "x"), JSON),  # 401
        (json_alert(secret, id="x" * 500), JSON),  # 400
    ]
    for body, content_type in bodies:
        await post(http, hooked, body, content_type)
        await post(http, hooked, body, content_type, params={"dryRun": "true"})
    server = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    logged = "".join(f"{r.getMessage()} {vars(r)!r}" for r in server)  # not this client's
    assert "bot alert queued" in logged and "bot alert stale" in logged  # the logs ran
    assert secret not in logged and hooked.token not in logged


def test_new_webhook_credentials_are_random_and_only_the_secrets_hash_is_kept():
    token, secret, secret_hash = new_webhook_credentials()
    assert len(token) == len(secret) == 43 and token != secret
    assert secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert new_webhook_credentials()[0] != token


async def test_rotated_credentials_retire_the_old_url_and_secret(rt, http, bot):
    token, secret, secret_hash = new_webhook_credentials()
    async with rt.sessions() as session, session.begin():
        await session.execute(
            text("UPDATE bots SET webhook_token = :t, webhook_secret_hash = :h WHERE id = :id"),
            {"t": token, "h": secret_hash, "id": bot.id},
        )
    assert (await post(http, bot, json_alert(bot.secret))).status_code == 404
    rotated = HookedBot(bot.id, bot.user_id, bot.account_id, token, secret)
    assert (await post(http, rotated, json_alert(bot.secret))).status_code == 401
    assert (await post(http, rotated, json_alert(secret))).status_code == 202
    async with rt.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(BotAlert)) == 1


# from the alert to the order: the server's own engines and bots job


async def test_an_alert_through_the_webhook_becomes_an_accepted_order(rt, http):
    from app.bots import bots
    from app.bots.domain.machines import BotSpec
    from app.bots.domain.runtime import BotKind
    from app.bots.domain.signal_bot import SignalSettings
    from app.trading.domain.orders import Side
    from app.venues.live import LiveVenue
    from tests.support.money import balances
    from tests.support.trading import eventually, funded_user, limit

    desk = LiveVenue(rt, user_id=await funded_user(rt, "desk", BTC="10", USDT="100000"))
    buyer = LiveVenue(rt, user_id=await funded_user(rt, "buyer", USDT="100000"))
    await desk.submit(symbol="BTC/USDT", client_order_id="a", request=limit(Side.SELL, "1", "100"))
    await buyer.submit(
        symbol="BTC/USDT", client_order_id="b", request=limit(Side.BUY, "0.1", "100")
    )
    owner = await funded_user(rt, "hooked_owner", USDT="1000")
    async with rt.sessions() as session:
        markets = await bots.markets_for(session, ["BTC/USDT"])
    spec = BotSpec(BotKind.SIGNAL, "tv", SignalSettings(amount=D("50"), budget=D("100")), markets)
    created = await bots.create_bot(rt, user_id=owner, spec=spec)
    assert created.webhook_secret is not None
    path = f"/hooks/bots/{created.bot.webhook_token}"
    body = json_alert(created.webhook_secret, id="tv-e2e", time=now().isoformat())
    answer = await http.post(path, content=body, headers={"content-type": JSON})
    assert answer.status_code == 202, answer.text

    async def bought() -> D:
        held = await balances(rt, created.bot.account_id)
        return held.get("BTC", (D(0), D(0)))[0]

    # 50 USDT with the taker fee at the worst price 101, to the lot: 0.4940
    assert await eventually(bought, within=15) == D("0.4940")
    again = await http.post(path, content=body, headers={"content-type": JSON})
    assert again.json()["status"] == "duplicate"
