"""Notifications: domain events become notifications for their owner once (fills, a fired
stop that was refused, deposits, transfers, withdrawals, social events), are read, paged
and marked through GraphQL, reach only their owner over a real WebSocket, and are
emailed according to each user's preferences, once each."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select, update
from strawberry import relay

from app.asgi import create_app
from app.events import topics
from app.events.topics import channel
from app.notifications import notifications, rules
from app.notifications.notifications import NewNotification, email_notifications, notify_from_events
from app.notifications.rules import Draft, NotificationType, Priority
from app.trading.domain.orders import OrderType, Side, TimeInForce
from app.wallets import crypto_deposits, transfers
from db.models import EventConsumer, Notification, User
from tests.gateway.test_websocket import LiveServer
from tests.support import GraphQLClient
from tests.support.pubsub import subscribed
from tests.support.trading import (
    eventually,
    funded_user,
    place,
    request,
    running_engines,
    scalar,
    trade_at,
    trader,
)
from tests.trading.test_trading_ws import _subscribe

NOTIFICATIONS = """query($first: Int!, $after: String, $unread: Boolean! = false) {
  notifications(first: $first, after: $after, unreadOnly: $unread) {
    edges { cursor node { id type priority title body link read createdAt } }
    pageInfo { hasNextPage hasPreviousPage endCursor } } }"""
UNREAD = "{ unreadNotificationCount }"
MARK = """mutation($ids: [ID!], $all: Boolean) { markNotificationsRead(ids: $ids, all: $all) {
  __typename ... on MarkNotificationsReadPayload { marked unreadCount }
  ... on Error { code message } ... on ValidationFailed { field } ... on NotFound { field } } }"""
PREFERENCES = "{ notificationPreferences { emailPriorities } }"
UPDATE_PREFERENCES = """mutation($p: [NotificationPriority!]!) {
  updateNotificationPreferences(emailPriorities: $p) {
    __typename ... on NotificationPreferences { emailPriorities } } }"""
NODE = "query($id: ID!) { node(id: $id) { __typename ... on Notification { title read } } }"
LIVE = "subscription { notifications { id type priority title body link read } }"


def gid(type_name: str, pk: int) -> str:
    return relay.to_base64(type_name, pk)


async def rows_of(rt, uid: int) -> list[Notification]:
    async with rt.sessions() as session:
        found = await session.scalars(
            select(Notification).where(Notification.user_id == uid).order_by(Notification.id)
        )
        return list(found)


async def notified(rt, uid: int, count: int) -> list[Notification]:
    """The user's notifications once the consumer has made ``count`` of them (events are
    read only once every older transaction on the server has ended)."""

    async def check() -> list[Notification] | None:
        await notify_from_events(rt)
        found = await rows_of(rt, uid)
        return found if len(found) >= count else None

    found = await eventually(check, within=30)
    assert found is not None and len(found) == count, found
    return found


async def create(rt, uid: int, *priorities: Priority, source: str = "test") -> None:
    """Notifications of these priorities for ``uid``, made directly through the service."""
    async with rt.sessions() as session, session.begin():
        await notifications.create_notifications(
            session,
            [
                NewNotification(
                    uid,
                    f"{source}:{n}",
                    Draft(NotificationType.SYSTEM, p, f"{p.value} {source} {n}", "Body."),
                )
                for n, p in enumerate(priorities)
            ],
        )


async def send_transfer(rt, sender: int, to_email: str, amount: str, key: str) -> int:
    done = await transfers.transfer(
        rt=rt,
        sender_id=sender,
        recipient=to_email,
        currency="USDT",
        amount=Decimal(amount),
        memo=None,
        idempotency_key=key,
    )
    return done.transfer.id


async def verified(rt, name: str, **amounts: str) -> int:
    uid = await funded_user(rt, name, **amounts)
    async with rt.sessions() as session, session.begin():
        await session.execute(update(User).where(User.id == uid).values(email_verified_at=rt.now()))
    return uid


# --- the mapping (pure) ---------------------------------------------------------------------


def test_global_ids_are_strawberrys():
    assert rules.global_id("Order", 42) == relay.to_base64("Order", 42)
    assert rules.global_id("Order", None) is None


def test_order_events_notify_fills_expiries_and_rejections_only():
    base = {"orderId": 7, "symbol": "BTC/USDT", "side": "BUY", "quantity": "0.1000"}
    filled = rules.from_event("orders", 1, {**base, "status": "FILLED", "filledQuantity": "0.1"})
    assert filled == Draft(
        NotificationType.TRADE,
        Priority.MEDIUM,
        "Order filled",
        "You bought 0.1 BTC on BTC/USDT.",
        gid("Order", 7),
    )
    expired = rules.from_event(
        "orders",
        1,
        {**base, "status": "EXPIRED", "filledQuantity": "0.04", "reason": "GTD_EXPIRED"},
    )
    assert expired is not None and expired.priority is Priority.MEDIUM
    assert expired.body == (
        "Your buy order on BTC/USDT expired because its time in force ran out,"
        " 0.04 of 0.1 BTC filled."
    )
    rejected = rules.from_event(
        "orders",
        1,
        {**base, "status": "REJECTED", "filledQuantity": "0", "reason": "FOK_NOT_FILLABLE"},
    )
    assert rejected is not None and (rejected.type, rejected.priority) == (
        NotificationType.TRADE,
        Priority.HIGH,
    )
    for status in ("OPEN", "PARTIALLY_FILLED", "CANCELED", "TRIGGERED"):
        assert (
            rules.from_event("orders", 1, {**base, "status": status, "filledQuantity": "0"}) is None
        )
    assert rules.from_event("fills", 1, base) is None  # not a notifying topic


def test_withdrawal_changes_notify_but_the_request_itself_does_not():
    base = {"withdrawalId": 3, "currency": "ETH", "amount": "1.50", "txHash": None}
    assert (
        rules.from_event(
            "withdrawal.status_changed", 1, {**base, "status": "APPROVED", "previousStatus": None}
        )
        is None
    )
    sent = rules.from_event(
        "withdrawal.status_changed",
        1,
        {**base, "status": "SENT", "previousStatus": "APPROVED", "txHash": "0xabc"},
    )
    assert sent is not None
    assert (sent.priority, sent.title, sent.link) == (
        Priority.MEDIUM,
        "Withdrawal sent",
        gid("Withdrawal", 3),
    )
    assert sent.body == "Your withdrawal of 1.5 ETH was sent. Transaction: 0xabc."
    for status in ("FAILED", "REJECTED"):
        draft = rules.from_event(
            "withdrawal.status_changed", 1, {**base, "status": status, "previousStatus": "APPROVED"}
        )
        assert draft is not None and draft.priority is Priority.HIGH


def test_social_events():
    skipped = rules.from_event(
        "social.copy_skipped", 5, {"followId": 9, "symbol": "BTC/USDT", "reason": "MAX_NOTIONAL"}
    )
    assert skipped == Draft(
        NotificationType.SOCIAL,
        Priority.LOW,
        "Copy skipped",
        "A BTC/USDT trade of the leader you follow was not copied: max notional.",
        gid("Follow", 9),
    )
    # the payload copy trading writes (topics.CopySkipped): the leader's side is named
    written = topics.CopySkipped(
        follow_id=9, leader_fill_id=3, symbol="BTC/USDT", side="SELL", reason="BELOW_MINIMUM"
    ).to_wire()
    named = rules.from_event("social.copy_skipped", 5, written)
    assert named is not None
    assert (
        named.body
        == "A SELL BTC/USDT trade of the leader you follow was not copied: below minimum."
    )
    paused = rules.from_event("social.follow_paused", 5, {"followId": 9, "reason": "STOP_LOSS"})
    assert paused is not None and (paused.type, paused.priority) == (
        NotificationType.RISK,
        Priority.HIGH,
    )
    assert paused.body == "Copying a leader was paused: stop loss."
    written = topics.FollowPaused(
        follow_id=9, reason="STOP_LOSS", leader_name="Carol Trend", positions_closed=True
    ).to_wire()
    named = rules.from_event("social.follow_paused", 5, written)
    assert named is not None and named.body == (
        "Copying Carol Trend was paused: stop loss."
        " The positions copied from them are being closed."
    )
    follower = rules.from_event("social.new_follower", 2, {"followId": 9, "followerId": 5})
    assert follower is not None and follower.type is NotificationType.SOCIAL

    def share(role: str) -> dict[str, object]:  # the payload profit sharing writes
        return {"followId": 9, "settlementId": 1, "amount": "2.50", "currency": "USDT",
                "role": role}  # fmt: skip

    to_leader = rules.from_event("social.profit_share", 2, share("LEADER"))
    to_follower = rules.from_event("social.profit_share", 5, share("FOLLOWER"))
    assert to_leader is not None and to_follower is not None
    assert to_leader.body == "A follower paid you 2.5 USDT of profit share."
    assert to_follower.title == "Profit share paid"


# --- from real events -----------------------------------------------------------------------


async def test_fills_and_a_fired_stop_that_was_refused_notify_their_owners(rt):
    maker = await funded_user(rt, "maker", BTC="10", USDT="100000")
    taker = await funded_user(rt, "taker", BTC="10", USDT="100000")
    holder = await funded_user(rt, "holder", BTC="1")
    async with running_engines(rt):
        await trade_at(rt, maker, taker, "100", "0.5")
        stop = await place(
            rt,
            holder,
            request(
                Side.SELL,
                OrderType.STOP_MARKET,
                "0.5",
                stop_price="95",
                time_in_force=TimeInForce.FOK,
            ),
        )
        await trade_at(rt, maker, taker, "95", "0.1")  # fires the stop: no bid left, FOK refused
    (refused,) = await notified(rt, holder, 1)
    assert (refused.type, refused.priority, refused.title) == ("TRADE", "HIGH", "Order rejected")
    assert refused.body == (
        "Your sell order for 0.5 BTC on BTC/USDT was rejected because it could not fill"
        " completely at once (fill or kill)."
    )
    assert refused.link == gid("Order", stop.id)
    bought = await notified(rt, taker, 2)
    assert [n.body for n in bought] == [
        "You bought 0.5 BTC on BTC/USDT.",
        "You bought 0.1 BTC on BTC/USDT.",
    ]
    assert {(n.type, n.priority) for n in bought} == {("TRADE", "MEDIUM")}
    sold = await notified(rt, maker, 2)
    assert [n.body for n in sold] == [
        "You sold 0.5 BTC on BTC/USDT.",
        "You sold 0.1 BTC on BTC/USDT.",
    ]
    assert [n.source for n in await rows_of(rt, holder)] == [refused.source]
    assert refused.source.startswith("event:")


async def test_deposit_and_transfer_notify_the_receiver_only(rt):
    alice = await verified(rt, "alice", USDT="100")
    bob = await verified(rt, "bob")
    admin = await funded_user(rt, "admin")
    async with rt.sessions() as session, session.begin():
        await session.execute(update(User).where(User.id == admin).values(role="ADMIN"))
    address = await crypto_deposits.deposit_address(rt=rt, user_id=bob, currency="BTC")
    credited = await crypto_deposits.credit_crypto_deposit(
        rt=rt,
        actor_id=admin,
        currency="BTC",
        address=address.address,
        tx_hash="a1" * 32,
        amount=Decimal("0.25000000"),
    )
    transfer_id = await send_transfer(rt, alice, "bob@example.com", "12.50", "t-1")
    deposit, received = await notified(rt, bob, 2)
    assert (deposit.type, deposit.priority, deposit.title, deposit.body, deposit.link) == (
        "WALLET",
        "MEDIUM",
        "Deposit credited",
        "0.25 BTC was credited to your wallet.",
        gid("Deposit", credited.deposit.id),
    )
    assert (received.title, received.body, received.link) == (
        "Transfer received",
        "You received 12.5 USDT.",
        gid("Transfer", transfer_id),
    )
    assert await rows_of(rt, alice) == []  # the sender is not notified


async def test_consuming_the_same_events_again_notifies_no_one_twice(rt):
    alice = await verified(rt, "alice", USDT="100")
    bob = await verified(rt, "bob")
    for n in range(3):
        await send_transfer(rt, alice, "bob@example.com", "1", f"t-{n}")
    first = await notified(rt, bob, 3)
    last_event = await scalar(rt, "SELECT max(id) FROM outbox WHERE topic = 'transfer.received'")
    async with rt.sessions() as session, session.begin():  # the checkpoint back to the start
        await session.execute(update(EventConsumer).values(last_txid=0, last_id=0))

    async def caught_up() -> bool:
        await notify_from_events(rt)
        return await scalar(
            rt, "SELECT last_id >= $1 FROM event_consumers WHERE name = 'notifications'", last_event
        )

    assert await eventually(caught_up, within=30)
    assert [(n.id, n.source) for n in await rows_of(rt, bob)] == [(n.id, n.source) for n in first]
    outbox = await scalar(rt, "SELECT count(*) FROM outbox WHERE topic = 'notifications'")
    assert outbox == 3  # and no second announcement


# --- GraphQL ----------------------------------------------------------------------------------


async def test_unread_count_and_marking_by_ids_and_all(gql, rt):
    uid, token = await trader(gql, rt, "reader@example.com")
    await create(rt, uid, Priority.LOW, Priority.MEDIUM, Priority.HIGH)
    assert (await gql.data(UNREAD, token=token))["unreadNotificationCount"] == 3
    page = (await gql.data(NOTIFICATIONS, {"first": 10}, token=token))["notifications"]
    ids = [e["node"]["id"] for e in page["edges"]]
    assert [e["node"]["priority"] for e in page["edges"]] == ["HIGH", "MEDIUM", "LOW"]
    one = (await gql.data(MARK, {"ids": [ids[0]]}, token=token))["markNotificationsRead"]
    assert one == {"__typename": "MarkNotificationsReadPayload", "marked": 1, "unreadCount": 2}
    again = (await gql.data(MARK, {"ids": ids[:2]}, token=token))["markNotificationsRead"]
    assert (again["marked"], again["unreadCount"]) == (1, 1)  # the first one was read already
    unread = await gql.data(NOTIFICATIONS, {"first": 10, "unread": True}, token=token)
    assert [e["node"]["id"] for e in unread["notifications"]["edges"]] == [ids[2]]
    everything = (await gql.data(MARK, {"all": True}, token=token))["markNotificationsRead"]
    assert (everything["marked"], everything["unreadCount"]) == (1, 0)
    assert (await gql.data(UNREAD, token=token))["unreadNotificationCount"] == 0
    node = (await gql.data(NODE, {"id": ids[1]}, token=token))["node"]
    assert node == {"__typename": "Notification", "title": "MEDIUM test 1", "read": True}


async def test_marking_bad_ids_is_a_typed_error_and_marks_nothing(gql, rt):
    uid, token = await trader(gql, rt, "reader@example.com")
    other, other_token = await trader(gql, rt, "other@example.com")
    await create(rt, uid, Priority.LOW)
    await create(rt, other, Priority.LOW)
    (own,) = [gid("Notification", n.id) for n in await rows_of(rt, uid)]
    (others,) = [n.id for n in await rows_of(rt, other)]
    cases = [
        ({}, "VALIDATION_FAILED"),  # neither ids nor all
        ({"ids": [own], "all": True}, "VALIDATION_FAILED"),  # both
        ({"ids": []}, "VALIDATION_FAILED"),
        ({"ids": [own, "bm9wZTox"]}, "VALIDATION_FAILED"),  # "nope:1", not a Notification id
        ({"ids": [own, gid("Notification", others)]}, "NOT_FOUND"),  # someone else's
        ({"ids": [own, gid("Notification", others + 1000)]}, "NOT_FOUND"),  # nobody's
    ]
    for variables, code in cases:
        result = (await gql.data(MARK, variables, token=token))["markNotificationsRead"]
        assert (result["code"], result["field"]) == (code, "ids"), variables
    assert [n.read_at for n in await rows_of(rt, uid) + await rows_of(rt, other)] == [None, None]
    assert (await gql.data(UNREAD, token=other_token))["unreadNotificationCount"] == 1


async def test_someone_elses_notification_is_not_a_visible_node(gql, rt):
    uid, _ = await trader(gql, rt, "reader@example.com")
    _, other = await trader(gql, rt, "other@example.com")
    await create(rt, uid, Priority.LOW)
    (own,) = await rows_of(rt, uid)
    assert (await gql.data(NODE, {"id": gid("Notification", own.id)}, token=other))["node"] is None


async def test_pages_newest_first_at_a_constant_number_of_statements(gql, rt, sql_statements):
    uid, token = await trader(gql, rt, "reader@example.com")
    await create(rt, uid, *[Priority.LOW] * 3, source="a")
    sql_statements.reset()
    small = await gql.data(NOTIFICATIONS, {"first": 3}, token=token)
    few = sql_statements.count
    await create(rt, uid, *[Priority.LOW] * 40, source="b")
    sql_statements.reset()
    large = await gql.data(NOTIFICATIONS, {"first": 43}, token=token)
    assert len(small["notifications"]["edges"]) == 3
    assert len(large["notifications"]["edges"]) == 43
    assert sql_statements.count == few == 2  # authenticate + the page
    first = (await gql.data(NOTIFICATIONS, {"first": 40}, token=token))["notifications"]
    assert first["pageInfo"]["hasNextPage"] is True
    rest = await gql.data(
        NOTIFICATIONS, {"first": 40, "after": first["pageInfo"]["endCursor"]}, token=token
    )
    titles = [e["node"]["title"] for e in first["edges"] + rest["notifications"]["edges"]]
    assert titles[0] == "LOW b 39" and titles[-1] == "LOW a 0" and len(titles) == 43
    assert rest["notifications"]["pageInfo"]["hasNextPage"] is False


# --- email ------------------------------------------------------------------------------------


async def test_emails_follow_each_users_preferences(gql, rt, mailbox):
    uid, token = await trader(gql, rt, "reader@example.com")
    mailbox.clear()  # the verification mail
    assert (await gql.data(PREFERENCES, token=token))["notificationPreferences"] == {
        "emailPriorities": ["HIGH", "CRITICAL"]
    }
    await create(rt, uid, Priority.LOW, Priority.MEDIUM, Priority.HIGH, source="before")
    assert await email_notifications(rt) == 1
    (mail,) = mailbox.to("reader@example.com")
    assert mail["Subject"] == "HIGH before 2"
    assert "Body." in mail.get_payload(decode=True).decode()

    chosen = await gql.data(UPDATE_PREFERENCES, {"p": ["MEDIUM", "LOW", "MEDIUM"]}, token=token)
    assert chosen["updateNotificationPreferences"] == {
        "__typename": "NotificationPreferences",
        "emailPriorities": ["LOW", "MEDIUM"],
    }
    await create(rt, uid, Priority.LOW, Priority.MEDIUM, Priority.HIGH, source="after")
    assert await email_notifications(rt) == 2
    subjects = [m["Subject"] for m in mailbox.to("reader@example.com")]
    # notifications made before the change are not mailed under the new choice
    assert subjects == ["HIGH before 2", "LOW after 0", "MEDIUM after 1"]
    assert await email_notifications(rt) == 0


async def test_two_senders_at_once_mail_each_notification_once(gql, rt, mailbox):
    uid, _ = await trader(gql, rt, "reader@example.com")
    mailbox.clear()
    await create(rt, uid, *[Priority.HIGH] * 30)
    sent = await asyncio.gather(email_notifications(rt), email_notifications(rt))
    assert sum(sent) == 30
    subjects = sorted(m["Subject"] for m in mailbox.to("reader@example.com"))
    assert subjects == sorted(f"HIGH test {n}" for n in range(30))
    emailed = await scalar(
        rt, "SELECT count(*) FROM notifications WHERE emailed_at IS NOT NULL AND user_id = $1", uid
    )
    assert emailed == 30


# --- live, over a real WebSocket --------------------------------------------------------------


@pytest.fixture
def live(settings):
    """A server whose background jobs turn events into notifications and relay them."""
    server = LiveServer(create_app(settings))
    server.start()
    yield server
    server.stop()


async def test_a_notification_reaches_its_owner_only(live, rt):
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        gql = GraphQLClient(http)
        alice, alice_token = await trader(gql, rt, "alice@example.com", USDT="100")
        bob, bob_token = await trader(gql, rt, "bob@example.com", USDT="100")
    alice_ws = await _subscribe(live, LIVE, alice_token)
    bob_ws = await _subscribe(live, LIVE, bob_token)
    prefix = rt.settings.redis_prefix
    await subscribed(rt, *(channel(prefix, topics.NOTIFICATIONS.named(), u) for u in (alice, bob)))
    try:
        await send_transfer(rt, bob, "alice@example.com", "1.5", "to-alice")
        to_alice = await _notification(alice_ws)
        await send_transfer(rt, alice, "bob@example.com", "2", "to-bob")
        to_bob = await _notification(bob_ws)  # not Alice's, which came first
        assert await _nothing_more(alice_ws)
    finally:
        await alice_ws.close()
        await bob_ws.close()
    assert (to_alice["type"], to_alice["priority"], to_alice["body"], to_alice["read"]) == (
        "WALLET",
        "MEDIUM",
        "You received 1.5 USDT.",
        False,
    )
    assert to_bob["body"] == "You received 2 USDT."
    (stored,) = await rows_of(rt, alice)
    assert to_alice["id"] == gid("Notification", stored.id)


async def _notification(ws) -> dict:
    """The next notification on ``ws`` (the consumer waits for older transactions on the
    database server to end, so allow more than a moment)."""
    message = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert message["type"] == "next" and "errors" not in message["payload"], message
    return message["payload"]["data"]["notifications"]


async def _nothing_more(ws) -> bool:
    try:
        message = await asyncio.wait_for(ws.recv(), 0.5)
    except TimeoutError:
        return True
    raise AssertionError(f"unexpected message: {json.loads(message)}")
