"""The copy-trading what-if on real PostgreSQL: a leader trades on the platform's own venue,
the live copier copies it for real followers, then the what-if replays the same trades
with the same follow settings (latency 0, no volume cap) and its fills are the live
copies' fills. Over GraphQL (HTTP): runBacktest(copyLeader) runs to DONE; a private
leader is refused NOT_A_LEADER to others (nothing stored) and replayable by themselves;
bad input is refused with its field, nothing stored."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import Any

import pytest
from sqlalchemy import update

from app.backtesting import backtests
from app.backtesting.domain import specs
from app.backtesting.domain.copying import LeaderTrade
from app.backtesting.leader_history import leader_history
from app.social.domain.social import FollowMode, FollowParameters
from db.models import Leader
from db.raw import driver
from tests.backtesting.test_backtest_cli import app_command
from tests.social.test_copy_trading import BUY, SELL, copy_all, follower, leader, order
from tests.support import gid
from tests.support.trading import funded_user, limit, place, rows, scalar, trader, wallet

SETTINGS = specs.simulation_settings(volume_share=None, latency=0)
RUN = """mutation($input: RunBacktestInput!) { runBacktest(input: $input) {
  __typename
  ... on RunBacktestPayload { backtest { id status strategy parameters } }
  ... on Error { code field message } } }"""
DONE = """query($id: ID!) { backtest(id: $id) { ... on Backtest {
  status reason strategy metrics { feesPaid finalEquity }
  equityCurve(first: 100) { edges { node { cash position } } } } } }"""


def period() -> tuple[datetime, datetime]:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now - timedelta(minutes=5), now + timedelta(minutes=30)


async def leader_trades(api, rt) -> tuple[int, str, dict[str, tuple[int, str, int]]]:  # type: ignore[no-untyped-def]
    """A leader who buys 1 BTC at 100 and sells 0.4 of it, copied live by two followers
    (FIXED_AMOUNT 50 and FIXED_RATIO 0.25), every trade at 100."""
    maker = await funded_user(rt, "maker", BTC="10", USDT="10000")
    await place(rt, maker, limit(SELL, "5", "100"))
    leader_id, leader_token = await leader(api, rt, "lea@example.com", USDT="1000.2")
    followers = {
        "amount": await follower(
            api, rt, "a@example.com", leader_id, allocation="500", mode="FIXED_AMOUNT", fixed="50"
        ),
        "ratio": await follower(
            api, rt, "b@example.com", leader_id, allocation="500", mode="FIXED_RATIO", ratio="0.25"
        ),
    }
    await order(api, leader_token, "BUY", "1", "100", timeInForce="IOC")
    await copy_all(rt)
    bidder = await funded_user(rt, "bidder", USDT="10000")
    await place(rt, bidder, limit(BUY, "5", "100"))
    await order(api, leader_token, "SELL", "0.4", "100", timeInForce="IOC")
    await copy_all(rt)
    return leader_id, leader_token, followers


FOLLOWS = {
    "amount": FollowParameters(allocation=D(500), mode=FollowMode.FIXED_AMOUNT, fixed_amount=D(50)),
    "ratio": FollowParameters(allocation=D(500), mode=FollowMode.FIXED_RATIO, ratio=D("0.25")),
}


async def test_the_what_if_fills_are_the_live_copies_fills(api, rt, engines):
    leader_id, _, followers = await leader_trades(api, rt)
    start, end = period()
    for name, (uid, _, follow_id) in followers.items():
        request = backtests.BacktestRequest(
            strategy=specs.CopyLeaderParameters(leader_id, FOLLOWS[name]),
            symbol="BTC/USDT",
            source="VENUE",
            interval="1m",
            start=start,
            end=end,
            settings=SETTINGS,
            balance=D(1000),  # what the follower had
        )
        async with rt.sessions() as session:
            checked = await backtests.check_request(session, request, viewer_id=uid)
            inputs = await backtests.load_inputs(session, checked)
        assert [(t.side.value, t.quantity) for t in inputs.strategy.history] == [  # type: ignore[union-attr]
            ("BUY", D(1)),
            ("SELL", D("0.4")),
        ]
        run = specs.run(inputs)
        live = await rows(
            rt,
            "SELECT o.client_order_id, f.side, f.quantity, f.price, f.fee FROM fills f"
            " JOIN orders o ON o.id = f.order_id WHERE f.user_id = $1 ORDER BY f.id",
            uid,
        )
        # the same orders (one per leader fill), the same fills: quantity, price and fee
        assert [f"copy-{follow_id}-{f.client_order_id.split(':')[1]}" for f in run.fills] == [
            r["client_order_id"] for r in live
        ]
        assert [(f.side.value, f.quantity, f.price, f.fee) for f in run.fills] == [
            (r["side"], r["quantity"], r["price"], r["fee"]) for r in live
        ], name
        # so the same account at the end
        available, held = await wallet(rt, uid, "USDT")
        assert run.equity[-1].cash == available + held
        btc_available, btc_held = await wallet(rt, uid, "BTC")
        assert run.equity[-1].position == btc_available + btc_held


async def test_equity_proportional_sizes_by_the_leaders_equity_snapshot(api, rt, engines):
    leader_id, _, _ = await leader_trades(api, rt)
    start, end = period()
    day = timedelta(days=1)
    await execute(
        rt,
        "INSERT INTO equity_snapshots (user_id, taken_at, equity_usd)"
        " VALUES ($1, $2, 500), ($1, $3, 700)",
        leader_id,
        start - day,
        end + day,
    )

    async def history() -> tuple[LeaderTrade, ...]:
        async with rt.sessions() as session:
            return await leader_history(
                session, leader_id=leader_id, symbol="BTC/USDT", start=start, end=end,
                with_equity=True,
            )  # fmt: skip

    # the last snapshot at or before each fill (USDT is worth 1 USD)
    assert [(t.side.value, t.equity, t.position_before) for t in await history()] == [
        ("BUY", D(500), D(0)),
        ("SELL", D(500), D(1)),
    ]
    proportional = specs.CopyLeaderParameters(
        leader_id, FollowParameters(allocation=D(1000), mode=FollowMode.EQUITY_PROPORTIONAL)
    )
    request = backtests.BacktestRequest(
        proportional, "BTC/USDT", "VENUE", "1m", start, end, SETTINGS, D(1000)
    )
    async with rt.sessions() as session:
        run = specs.run(await backtests.load_inputs(session, request))
    # 100 of 500 is a fifth: 200 of the 1000 allocation, 2 BTC; then 40 % of them sold
    assert [(f.side.value, f.quantity) for f in run.fills] == [("BUY", D(2)), ("SELL", D("0.8"))]
    # none before: the first after
    await execute(
        rt, "DELETE FROM equity_snapshots WHERE user_id = $1 AND equity_usd = 500", leader_id
    )
    assert [t.equity for t in await history()] == [D(700), D(700)]
    # none at all: the equity now, ledger balances at the reference prices
    await execute(rt, "DELETE FROM equity_snapshots WHERE user_id = $1", leader_id)
    now = await scalar(
        rt,
        "SELECT sum(a.balance * r.usd_price) FROM ledger_accounts a"
        " JOIN reference_prices r ON r.currency = a.currency WHERE a.user_id = $1",
        leader_id,
    )
    assert [t.equity for t in await history()] == [now, now]


async def test_the_stored_what_if_runs_to_done_over_graphql(api, rt, engines):
    leader_id, _, followers = await leader_trades(api, rt)
    uid, token, _ = followers["ratio"]
    body = await run_copy(api, token, copy_input(leader_id, mode="FIXED_RATIO", ratio="0.25"))
    assert body["__typename"] == "RunBacktestPayload", body
    assert body["backtest"]["strategy"] == "COPY"
    assert body["backtest"]["parameters"]["leaderId"] == leader_id
    done = await until_done(api, token, body["backtest"]["id"])
    assert done["status"] == "DONE", done
    live_fees = await scalar(rt, "SELECT sum(fee) FROM fills WHERE user_id = $1", uid)
    assert D(done["metrics"]["feesPaid"]) == live_fees
    last = done["equityCurve"]["edges"][-1]["node"]
    assert D(last["position"]) == D("0.15")  # 0.25 bought, 0.1 sold
    available, held = await wallet(rt, uid, "USDT")
    assert D(last["cash"]) == available + held


async def test_a_private_leader_is_replayable_by_themselves_only(api, rt, engines):
    leader_id, leader_token, followers = await leader_trades(api, rt)
    async with rt.sessions() as session, session.begin():
        await session.execute(
            update(Leader).where(Leader.user_id == leader_id).values(visibility="INVITE_ONLY")
        )
    _, token, _ = followers["ratio"]
    refused = await run_copy(api, token, copy_input(leader_id, mode="FIXED_RATIO", ratio="1"))
    assert (refused["__typename"], refused["code"], refused["field"]) == (
        "NotALeader",
        "NOT_A_LEADER",
        "leaderId",
    )
    assert await scalar(rt, "SELECT count(*) FROM backtests") == 0
    # nor is a user who leads nobody
    stranger, _ = await trader(api, rt, "stranger@example.com")
    nobody = await run_copy(api, token, copy_input(stranger, mode="FIXED_RATIO", ratio="1"))
    assert nobody["code"] == "NOT_A_LEADER"
    own = await run_copy(api, leader_token, copy_input(leader_id, mode="FIXED_RATIO", ratio="1"))
    assert own["__typename"] == "RunBacktestPayload", own
    assert (await until_done(api, leader_token, own["backtest"]["id"]))["status"] == "DONE"


@pytest.mark.parametrize(
    ("change", "typename", "field"),
    [
        ({"copyLeader": {"allocation": "0"}}, "InvalidFollowParameters", "allocation"),
        ({"copyLeader": {"mode": "FIXED_AMOUNT"}}, "InvalidFollowParameters", "fixedAmount"),
        ({"copyLeader": {"slippageTolerance": "0.5"}}, "InvalidFollowParameters",
         "slippageTolerance"),
        ({"copyLeader": {"leaderId": gid("Follow", 1)}}, "ValidationFailed", "leaderId"),
        ({"source": "file:binance"}, "ValidationFailed", "source"),
        ({"symbol": "BTC/EUR"}, "ValidationFailed", "symbol"),
        ({"movingAverage": {"fast": 5, "slow": 20, "fraction": "0.5"}}, "ValidationFailed",
         "movingAverage"),
    ],
)  # fmt: skip
async def test_bad_input_is_refused_and_nothing_is_written(api, rt, change, typename, field):
    leader_id, _ = await leader(api, rt, "lea@example.com", USDT="1000")
    _, token = await trader(api, rt, "quant@example.com")
    values = copy_input(leader_id, mode="FIXED_RATIO", ratio="1")
    for key, value in change.items():
        if key == "copyLeader":
            values["copyLeader"] = {**values["copyLeader"], **value}
        else:
            values[key] = value
    body = await run_copy(api, token, values)
    assert (body["__typename"], body["field"]) == (typename, field), body
    assert await scalar(rt, "SELECT count(*) FROM backtests") == 0


async def test_the_command_line_replays_a_public_leader_only(api, rt, engines, tmp_path):
    leader_id, _, followers = await leader_trades(api, rt)
    uid = followers["ratio"][0]
    start, end = period()
    common = [
        "--strategy", "copy", "--allocation", "500", "--sizing-mode", "FIXED_RATIO",
        "--ratio", "0.25", "--symbol", "BTC/USDT", "--source", "VENUE", "--interval", "1m",
        "--from", start.isoformat(), "--to", end.isoformat(), "--latency", "0",
        "--volume-share", "none", "--balance", "1000",
    ]  # fmt: skip
    report = tmp_path / "copy.html"
    done = app_command(rt, *common, "--leader", str(leader_id), "--report", str(report))
    assert done.returncode == 0, done.stderr
    live_fees = await scalar(rt, "SELECT sum(fee) FROM fills WHERE user_id = $1", uid)
    assert D(done.stdout.split("fees paid")[1].split()[0]) == live_fees  # the copies' fees
    assert report.read_text().startswith("<!DOCTYPE html>")
    async with rt.sessions() as session, session.begin():
        await session.execute(
            update(Leader).where(Leader.user_id == leader_id).values(visibility="INVITE_ONLY")
        )
    refused = app_command(rt, *common, "--leader", str(leader_id), "--report", str(report))
    assert refused.returncode == 2 and "Refused: There is no public leader" in refused.stderr
    sweep = app_command(rt, "sweep", *common, "--leader", "1", "--report", str(report))
    assert sweep.returncode == 2 and "no sweep" in sweep.stderr


# --- helpers -------------------------------------------------------------------------------


def copy_input(leader_id: int, **follow: Any) -> dict[str, Any]:
    start, end = period()
    return {
        "symbol": "BTC/USDT",
        "source": "VENUE",
        "interval": "1m",
        "start": start.isoformat(),
        "end": end.isoformat(),
        "latency": 0,
        "volumeShare": None,
        "balance": "1000",
        "copyLeader": {"leaderId": gid("Leader", leader_id), "allocation": "500", **follow},
    }


async def execute(rt, sql: str, *args: Any) -> None:  # type: ignore[no-untyped-def]
    async with rt.sessions() as session, session.begin():
        await (await driver(session)).execute(sql, *args)


async def run_copy(api, token: str, values: dict[str, Any]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return (await api.data(RUN, {"input": values}, token=token))["runBacktest"]


async def until_done(api, token: str, backtest_id: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    for _ in range(150):
        found = (await api.data(DONE, {"id": backtest_id}, token=token))["backtest"]
        if found["status"] in ("DONE", "FAILED"):
            return found
        await asyncio.sleep(0.2)
    raise AssertionError("the backtest did not finish")
