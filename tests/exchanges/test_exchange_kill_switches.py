"""Kill switches reach the exchanges (issue 22): the user's kill switch cancels their
exchange bots' live orders at the exchange (their bots paused), a USER scope's
CANCEL_ORDERS cancels every live order of theirs there (their bots' and their own), each
after the change's commit and once; an exchange that is down gets the cancel again from
the ``exchange-cancels`` job once the retry period has passed."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from app.bots import worker
from app.exchanges import cancel_requests, following
from app.exchanges import orders as exchange_orders
from app.risk import triggers
from app.risk.domain.limits import Action, LimitKind
from app.risk.domain.states import Scope
from app.risk.limits import Target
from app.trading import commands
from db.models import Bot
from tests.exchanges.test_exchange_bots import _account, _at_exchange, _bot_id, _create, _placed
from tests.risk.support import fall_to_86, set_limit, state
from tests.support import pk
from tests.support.bot_api import grid_input
from tests.support.money import fund
from tests.support.trading import funded_user, trade_at

ME = "{ me { id } }"


async def _grid(gql, rt, exchanges, name: str):
    """A user with a grid bot resting orders at ``name`` and an order of their own."""
    server = exchanges[name]
    token, account_id = await _account(gql, exchanges, name)
    uid = pk((await gql.data(ME, token=token))["me"]["id"])
    await _create(gql, token, account_id, grid_input(investment="500"))
    bot_id = await _bot_id(rt)
    await following.poll_live(rt)
    await worker.run_once(rt)
    bots = _at_exchange(server, await _placed(rt, bot_id))
    assert sum(o.status == "open" for o in bots) > 1
    own = await exchange_orders.place_order(rt, user_id=uid, request=exchange_orders.PlaceOrder(
        account_id=pk(account_id), symbol="BTC/USDT", side="BUY", type="LIMIT",
        quantity=Decimal("0.001"), price=Decimal(80000)))  # fmt: skip
    [mine] = [o for o in server.orders if o.client_order_id == own.client_order_id]
    assert mine.status == "open"
    return server, uid, bot_id, bots, mine


async def test_the_kill_switch_cancels_its_exchange_bots_orders_at_the_exchange(gql, rt, exchanges):
    server, uid, bot_id, bots, mine = await _grid(gql, rt, exchanges, "binance")
    cancels = len([r for r in server.requests if r.method == "DELETE"])
    await commands.set_trading_enabled(rt, user_id=uid, enabled=False)
    assert all(o.status != "open" for o in bots)
    assert mine.status == "open"  # the user's own order: the kill switch is the bots'
    sent = [r for r in server.requests if r.method == "DELETE"]
    live = sum(1 for o in bots if o.status == "canceled")
    assert len(sent) - cancels == live  # each once
    assert await cancel_requests.run_once(rt) == 0  # nothing asked again
    async with rt.sessions() as session:
        assert (await session.get(Bot, bot_id)).paused


async def test_an_exchange_that_is_down_gets_the_cancel_again_from_the_job(gql, rt, exchanges):
    server, uid, _, bots, _ = await _grid(gql, rt, exchanges, "okx")
    server.fail_next(*[503] * 50)
    await commands.set_trading_enabled(rt, user_id=uid, enabled=False)
    server.failures.clear()
    assert sum(o.status == "open" for o in bots) > 1  # not taken
    assert await cancel_requests.run_once(rt) == 0  # claimed: not before the retry period
    assert sum(o.status == "open" for o in bots) > 1
    later = rt.now() + cancel_requests.RETRY_AFTER + timedelta(seconds=1)
    rt.clock = lambda: later
    assert await cancel_requests.run_once(rt) > 0
    assert all(o.status != "open" for o in bots)
    assert await cancel_requests.run_once(rt) == 0


async def test_a_user_scopes_cancel_orders_cancels_their_orders_at_the_exchange_too(
    gql, rt, exchanges, engines
):
    _, uid, _, bots, mine = await _grid(gql, rt, exchanges, "kraken")
    maker = await funded_user(rt, "maker", BTC="2")
    await fund(rt, uid, "USDT", "1000")
    await set_limit(rt, uid, LimitKind.DAILY_LOSS, 5, Action.CANCEL_ORDERS, Target(Scope.USER))
    await trade_at(rt, maker, uid, "100", "0.5")
    await triggers.run_once(rt)
    assert await state(rt, Scope.USER, uid) == "ACTIVE"
    assert mine.status == "open" and sum(o.status == "open" for o in bots) > 1
    await fall_to_86(rt, maker)
    await triggers.run_once(rt)
    assert await state(rt, Scope.USER, uid) == "HALTED"
    assert mine.status == "canceled"
    assert all(o.status != "open" for o in bots)
