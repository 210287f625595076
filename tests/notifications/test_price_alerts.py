"""Price alerts: created, listed and deleted through GraphQL; each fires once, on the
first real trade (through the matching engine) that reaches it, with a PRICE
notification; bad input is a typed error that changes nothing."""

from __future__ import annotations

from sqlalchemy import func, insert, select, update
from strawberry import relay

from app.notifications.price_alerts import fire_price_alerts
from db.models import EventConsumer, PriceAlert
from tests.support.trading import (
    eventually,
    funded_user,
    market_id,
    rows,
    running_engines,
    scalar,
    trade_at,
    trader,
)

CREATE = """mutation($symbol: String!, $direction: PriceAlertDirection!, $price: Decimal!) {
  createPriceAlert(symbol: $symbol, direction: $direction, price: $price) { __typename
    ... on PriceAlertPayload { priceAlert { id direction price status market { symbol } } }
    ... on Error { code message } ... on ValidationFailed { field } ... on UnknownMarket { field }
    ... on PriceOffTick { field } } }"""
DELETE = """mutation($id: ID!) { deletePriceAlert(id: $id) { __typename
  ... on DeletePriceAlertPayload { deletedId }
  ... on Error { code } ... on NotFound { field } } }"""
ALERTS = """query($status: PriceAlertStatus, $first: Int! = 20, $after: String) {
  priceAlerts(status: $status, first: $first, after: $after) {
    edges { node { id direction price status triggeredAt market { symbol } } }
    pageInfo { hasNextPage endCursor } } }"""
NOTIFICATIONS = "{ notifications(first: 10) { edges { node { type priority title body link } } } }"


async def create(gql, token: str, direction: str, price: str, symbol: str = "BTC/USDT") -> dict:
    variables = {"symbol": symbol, "direction": direction, "price": price}
    return (await gql.data(CREATE, variables, token=token))["createPriceAlert"]


async def alert_id(gql, token: str, direction: str, price: str) -> str:
    created = await create(gql, token, direction, price)
    assert created["__typename"] == "PriceAlertPayload", created
    return created["priceAlert"]["id"]


async def statuses(rt, uid: int) -> list[tuple[str, str, str]]:
    found = await rows(
        rt, "SELECT direction, price, status FROM price_alerts WHERE user_id = $1 ORDER BY id", uid
    )
    return [(r["direction"], f"{r['price'].normalize():f}", r["status"]) for r in found]


async def price_notifications(rt, uid: int) -> list[tuple[str, str, str | None]]:
    found = await rows(
        rt,
        "SELECT body, priority, link FROM notifications WHERE user_id = $1 AND type = 'PRICE'"
        " ORDER BY id",
        uid,
    )
    return [(r["body"], r["priority"], r["link"]) for r in found]


async def fired(rt, uid: int, count: int) -> list[tuple[str, str, str | None]]:
    """The user's PRICE notifications once the job has made ``count`` (the event log shows
    a trade once every older transaction on the server has ended)."""

    async def check():
        await fire_price_alerts(rt)
        found = await price_notifications(rt, uid)
        return found if len(found) >= count else None

    found = await eventually(check, within=30)
    assert found is not None and len(found) == count, found
    return found


async def caught_up(rt) -> None:
    """Run the job until its checkpoint has passed every trade so far."""
    last = await scalar(rt, "SELECT max(id) FROM outbox WHERE topic LIKE 'trades:%'")

    async def done() -> bool:
        await fire_price_alerts(rt)
        return bool(
            await scalar(
                rt, "SELECT last_id >= $1 FROM event_consumers WHERE name = 'price-alerts'", last
            )
        )

    assert await eventually(done, within=30)


async def test_alerts_fire_once_each_above_and_below(gql, rt):
    uid, token = await trader(gql, rt, "watcher@example.com")
    maker = await funded_user(rt, "maker", BTC="10", USDT="100000")
    taker = await funded_user(rt, "taker", BTC="10", USDT="100000")
    async with running_engines(rt):
        await trade_at(rt, maker, taker, "100")
        above = await alert_id(gql, token, "ABOVE", "102.50")
        below = await alert_id(gql, token, "BELOW", "98")
        await alert_id(gql, token, "ABOVE", "150")  # never reached
        await trade_at(rt, maker, taker, "103")  # both cross 102.5: it fires once, here
        await trade_at(rt, maker, taker, "104")
        first = await fired(rt, uid, 1)
        await trade_at(rt, maker, taker, "97")
        await trade_at(rt, maker, taker, "96")
        both = await fired(rt, uid, 2)
    assert first == [("BTC/USDT traded at 103, at or above your alert price 102.5.", "HIGH", above)]
    assert both[1] == ("BTC/USDT traded at 97, at or below your alert price 98.", "HIGH", below)
    # the same trades read again fire nothing more
    async with rt.sessions() as session, session.begin():
        await session.execute(update(EventConsumer).values(last_txid=0, last_id=0))
    await caught_up(rt)
    assert await price_notifications(rt, uid) == both
    assert await statuses(rt, uid) == [
        ("ABOVE", "102.5", "TRIGGERED"),
        ("BELOW", "98", "TRIGGERED"),
        ("ABOVE", "150", "ACTIVE"),
    ]
    listed = (await gql.data(ALERTS, {"status": "TRIGGERED"}, token=token))["priceAlerts"]
    assert [(e["node"]["id"], e["node"]["status"]) for e in listed["edges"]] == [
        (below, "TRIGGERED"),
        (above, "TRIGGERED"),
    ]
    assert all(e["node"]["triggeredAt"] for e in listed["edges"])
    seen = (await gql.data(NOTIFICATIONS, token=token))["notifications"]["edges"]
    assert [(n["node"]["type"], n["node"]["title"]) for n in seen] == [
        ("PRICE", "BTC/USDT below 98"),
        ("PRICE", "BTC/USDT above 102.5"),
    ]


async def test_a_trade_before_the_alert_was_made_does_not_fire_it(gql, rt):
    uid, token = await trader(gql, rt, "watcher@example.com")
    maker = await funded_user(rt, "maker", BTC="10", USDT="100000")
    taker = await funded_user(rt, "taker", BTC="10", USDT="100000")
    async with running_engines(rt):
        await trade_at(rt, maker, taker, "100")  # not read by the job yet
        await alert_id(gql, token, "ABOVE", "99")
        await caught_up(rt)
        assert await price_notifications(rt, uid) == []
        await trade_at(rt, maker, taker, "101")
        ((body, _, _),) = await fired(rt, uid, 1)
    assert body == "BTC/USDT traded at 101, at or above your alert price 99."


async def test_bad_alerts_are_typed_errors_and_change_nothing(gql, rt):
    uid, token = await trader(gql, rt, "watcher@example.com")
    cases = [
        (("ABOVE", "100", "NOPE/USDT"), "UNKNOWN_MARKET", "symbol"),
        (("ABOVE", "0"), "VALIDATION_FAILED", "price"),
        (("BELOW", "-5"), "VALIDATION_FAILED", "price"),
        (("ABOVE", "100.005"), "PRICE_OFF_TICK", "price"),  # the tick is 0.01
    ]
    for args, code, field in cases:
        refused = await create(gql, token, *args)
        assert (refused["code"], refused["field"]) == (code, field), args
    assert await statuses(rt, uid) == []
    # at most PRICE_ALERTS_MAX_ACTIVE active alerts; triggered ones do not count
    limit = rt.settings.price_alerts_max_active
    btc = await market_id(rt)
    async with rt.sessions() as session, session.begin():
        await session.execute(
            insert(PriceAlert),
            [
                {"user_id": uid, "market_id": btc, "direction": "ABOVE", "price": 100 + n}
                for n in range(limit)
            ],
        )
    too_many = await create(gql, token, "ABOVE", "99")
    assert too_many["code"] == "TOO_MANY_PRICE_ALERTS"
    assert len(await statuses(rt, uid)) == limit
    async with rt.sessions() as session, session.begin():  # one of them fires meanwhile
        first = await session.scalar(select(func.min(PriceAlert.id)))
        await session.execute(
            update(PriceAlert).where(PriceAlert.id == first).values(status="TRIGGERED")
        )
    assert (await create(gql, token, "ABOVE", "99"))["__typename"] == "PriceAlertPayload"
    anonymous = await gql.data(CREATE, {"symbol": "BTC/USDT", "direction": "ABOVE", "price": "1"})
    assert anonymous["createPriceAlert"]["code"] == "UNAUTHENTICATED"


async def test_deleting_an_alert_stops_it_and_only_the_owner_can(gql, rt):
    uid, token = await trader(gql, rt, "watcher@example.com")
    other, other_token = await trader(gql, rt, "other@example.com")
    mine = await alert_id(gql, token, "ABOVE", "95000")
    theirs = await alert_id(gql, other_token, "BELOW", "85000")
    refused = (await gql.data(DELETE, {"id": theirs}, token=token))["deletePriceAlert"]
    assert (refused["code"], refused["field"]) == ("NOT_FOUND", "id")
    assert await statuses(rt, other) == [("BELOW", "85000", "ACTIVE")]
    deleted = (await gql.data(DELETE, {"id": mine}, token=token))["deletePriceAlert"]
    assert deleted == {"__typename": "DeletePriceAlertPayload", "deletedId": mine}
    again = (await gql.data(DELETE, {"id": mine}, token=token))["deletePriceAlert"]
    assert again["code"] == "NOT_FOUND"
    malformed = await gql.data(DELETE, {"id": relay.to_base64("Order", 1)}, token=token)
    assert malformed["deletePriceAlert"]["code"] == "VALIDATION_FAILED"
    assert (await gql.data(ALERTS, token=token))["priceAlerts"]["edges"] == []
    assert await statuses(rt, uid) == [("ABOVE", "95000", "DELETED")]


async def test_alerts_list_newest_first_by_page(gql, rt):
    _, token = await trader(gql, rt, "watcher@example.com")
    ids = [await alert_id(gql, token, "ABOVE", str(95000 + n)) for n in range(3)]
    page = (await gql.data(ALERTS, {"first": 2}, token=token))["priceAlerts"]
    assert [e["node"]["id"] for e in page["edges"]] == [ids[2], ids[1]]
    assert page["pageInfo"]["hasNextPage"] is True
    rest = await gql.data(ALERTS, {"first": 2, "after": page["pageInfo"]["endCursor"]}, token=token)
    (last,) = rest["priceAlerts"]["edges"]
    assert last["node"] == {
        "id": ids[0],
        "direction": "ABOVE",
        "price": "95000",
        "status": "ACTIVE",
        "triggeredAt": None,
        "market": {"symbol": "BTC/USDT"},
    }
