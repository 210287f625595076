"""The event catalogue (app.events.topics): every topic has a builder and a payload type,
each payload's wire is today's JSON object and reads back as the same payload, and no
topic is spelled outside the catalogue (AST over app/, graphql_schema/, resolvers/)."""

from __future__ import annotations

import ast
import dataclasses
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from app.events import topics
from app.events.topics import base

ROOT = Path(__file__).resolve().parents[2]
AT = datetime(2026, 3, 1, 12, 30, 5, 123456, tzinfo=UTC)
AT_WIRE = "2026-03-01T12:30:05.123456+00:00"
SYMBOL = "BTC/USDT"

# topic -> (the builder's arguments, the JSON object the outbox stores for them)
SAMPLES: dict[topics.Topic[Any], tuple[tuple[Any, ...], dict[str, Any]]] = {
    topics.FILLS: (
        (
            7,
            topics.Fill(
                trade_id=11,
                order_id=12,
                symbol=SYMBOL,
                side="BUY",
                liquidity="TAKER",
                price=Decimal("90000.00"),
                quantity=Decimal("0.500000"),
                quote_amount=Decimal("45000.00"),
                fee=Decimal("45.00"),
                fee_currency="USDT",
                sequence=3,
                at=AT,
            ),
        ),
        {
            "tradeId": 11,
            "orderId": 12,
            "symbol": SYMBOL,
            "side": "BUY",
            "liquidity": "TAKER",
            "price": "90000.00",
            "quantity": "0.500000",
            "quoteAmount": "45000.00",
            "fee": "45.00",
            "feeCurrency": "USDT",
            "sequence": 3,
            "at": AT_WIRE,
        },
    ),
    topics.ORDERS: (
        (
            7,
            topics.OrderUpdated(
                order_id=12,
                symbol=SYMBOL,
                status="EXPIRED",
                quantity=Decimal("1.000000"),
                filled_quantity=Decimal("0.250000"),
                sequence=4,
                at=AT,
                side="SELL",
                reason="GTD_EXPIRED",
            ),
        ),
        {
            "orderId": 12,
            "symbol": SYMBOL,
            "side": "SELL",
            "status": "EXPIRED",
            "filledQuantity": "0.250000",
            "quantity": "1.000000",
            "reason": "GTD_EXPIRED",
            "sequence": 4,
            "at": AT_WIRE,
        },
    ),
    topics.BOOK: (
        (
            topics.BookLevels(
                symbol=SYMBOL,
                sequence=9,
                previous_sequence=8,
                bids=((Decimal("89999.00"), Decimal("0.000000"), 0),),
                asks=((Decimal("90001.00"), Decimal("1.250000"), 2),),
            ),
        ),
        {
            "symbol": SYMBOL,
            "sequence": 9,
            "previousSequence": 8,
            "bids": [["89999.00", "0.000000", 0]],
            "asks": [["90001.00", "1.250000", 2]],
        },
    ),
    topics.TRADES: (
        (
            topics.Trade(
                trade_id=11,
                symbol=SYMBOL,
                price=Decimal("90000.00"),
                quantity=Decimal("0.500000"),
                taker_side="BUY",
                at=AT,
                sequence=3,
            ),
        ),
        {
            "symbol": SYMBOL,
            "at": AT_WIRE,
            "tradeId": 11,
            "price": "90000.00",
            "quantity": "0.500000",
            "takerSide": "BUY",
            "sequence": 3,
        },
    ),
    topics.TICKER: (
        (
            topics.Ticker(
                symbol=SYMBOL,
                last=Decimal("90000.00"),
                best_bid=None,
                best_ask=Decimal("90001.00"),
                sequence=3,
                at=AT,
            ),
        ),
        {
            "symbol": SYMBOL,
            "last": "90000.00",
            "bestBid": None,
            "bestAsk": "90001.00",
            "sequence": 3,
            "at": AT_WIRE,
        },
    ),
    topics.TRANSFER_RECEIVED: (
        (
            5,
            topics.TransferReceived(
                transfer_id=2, currency="USDT", amount=Decimal("10.50"), sender_id=4, memo="hi"
            ),
        ),
        {"transferId": 2, "currency": "USDT", "amount": "10.50", "senderId": 4, "memo": "hi"},
    ),
    topics.DEPOSIT_CREDITED: (
        (
            5,
            topics.DepositCredited(
                deposit_id=3,
                method="CRYPTO",
                currency="ETH",
                amount=Decimal("1.500000000000000000"),
                balance_after=Decimal("2E+1"),
                tx_hash="0xabc",
            ),
        ),
        {
            "depositId": 3,
            "method": "CRYPTO",
            "currency": "ETH",
            "amount": "1.5",
            "balanceAfter": "20",
            "txHash": "0xabc",
        },
    ),
    topics.DEPOSIT_FAILED: (
        (5, topics.DepositHalted(deposit_id=3, method="CARD", currency="USD", reason=None)),
        {"depositId": 3, "method": "CARD", "currency": "USD", "reason": None},
    ),
    topics.DEPOSIT_HELD: (
        (
            5,
            topics.DepositHalted(deposit_id=3, method="CARD", currency="USD", reason="paid in EUR"),
        ),
        {"depositId": 3, "method": "CARD", "currency": "USD", "reason": "paid in EUR"},
    ),
    topics.DEPOSIT_REVERSED: (
        (
            5,
            topics.DepositReversed(
                deposit_id=3,
                method="CARD",
                currency="USD",
                amount=Decimal("40.00"),
                unrecovered=Decimal("0E-18"),
                reason="charge.refunded",
            ),
        ),
        {
            "depositId": 3,
            "method": "CARD",
            "currency": "USD",
            "amount": "40",
            "unrecovered": "0",
            "reason": "charge.refunded",
        },
    ),
    topics.WITHDRAWAL_STATUS_CHANGED: (
        (
            5,
            topics.WithdrawalStatusChanged(
                withdrawal_id=6,
                status="SENT",
                previous_status="APPROVED",
                currency="ETH",
                amount=Decimal("11000.000000000000000000"),
                tx_hash=None,
            ),
        ),
        {
            "withdrawalId": 6,
            "status": "SENT",
            "previousStatus": "APPROVED",
            "currency": "ETH",
            "amount": "11000",
            "txHash": None,
        },
    ),
    topics.COPY_SKIPPED: (
        (
            5,
            topics.CopySkipped(
                follow_id=9, leader_fill_id=10, symbol=SYMBOL, side="BUY", reason="MAX_NOTIONAL"
            ),
        ),
        {
            "followId": 9,
            "leaderFillId": 10,
            "symbol": SYMBOL,
            "side": "BUY",
            "reason": "MAX_NOTIONAL",
        },
    ),
    topics.FOLLOW_PAUSED: (
        (
            5,
            topics.FollowPaused(
                follow_id=9, reason="STOP_LOSS", leader_name="Carol", positions_closed=True
            ),
        ),
        {"followId": 9, "reason": "STOP_LOSS", "leaderName": "Carol", "positionsClosed": True},
    ),
    topics.NEW_FOLLOWER: (
        (2, topics.NewFollower(follow_id=9, follower_id=5)),
        {"followId": 9, "followerId": 5},
    ),
    topics.PROFIT_SHARE: (
        (
            2,
            topics.ProfitShared(
                follow_id=9,
                settlement_id=1,
                amount=Decimal("2.500000000000000000"),
                currency="USDT",
                role="LEADER",
            ),
        ),
        {"followId": 9, "settlementId": 1, "amount": "2.5", "currency": "USDT", "role": "LEADER"},
    ),
    topics.KYC_REVIEWED: (
        (5, topics.KycReviewed(status="APPROVED", level=1)),
        {"status": "APPROVED", "level": 1},
    ),
    topics.CREDENTIALS: ((5,), {}),
    topics.NOTIFICATIONS: (
        (
            5,
            topics.NewNotification(
                id=1,
                type="WALLET",
                priority="MEDIUM",
                title="Deposit credited",
                body="1.5 ETH was credited to your wallet.",
                link=None,
                created_at=AT,
            ),
        ),
        {
            "id": 1,
            "type": "WALLET",
            "priority": "MEDIUM",
            "title": "Deposit credited",
            "body": "1.5 ETH was credited to your wallet.",
            "link": None,
            "createdAt": AT_WIRE,
        },
    ),
    topics.REWARD_PAID: (
        (
            5,
            topics.RewardsPaid(
                date=date(2026, 3, 1),
                rewards=(
                    topics.Reward(
                        stake_id=1,
                        product_id=2,
                        currency="ETH",
                        amount=Decimal("0.000123000000000000"),
                        compounded=True,
                    ),
                ),
            ),
        ),
        {
            "date": "2026-03-01",
            "rewards": [
                {
                    "stakeId": 1,
                    "productId": 2,
                    "currency": "ETH",
                    "amount": "0.000123000000000000",
                    "compounded": True,
                }
            ],
        },
    ),
    **{
        topic: (
            (
                5,
                topics.StakeEnded(
                    stake_id=1,
                    product_id=2,
                    currency="ETH",
                    principal=Decimal("10.5"),
                    term_rewards=Decimal("0.01"),
                    term_ended_on=date(2026, 3, 1),
                    next_term_ends_on=next_end,
                ),
            ),
            {
                "stakeId": 1,
                "productId": 2,
                "currency": "ETH",
                "principal": "10.5",
                "termRewards": "0.01",
                "termEndedOn": "2026-03-01",
                "nextTermEndsOn": next_end and next_end.isoformat(),
            },
        )
        for topic, next_end in (
            (topics.STAKE_RENEWED, date(2026, 3, 31)),
            (topics.STAKE_MATURED, None),
        )
    },
    topics.PAPER_FILLS: (
        (
            5,
            topics.PaperFilled(
                paper_account_id=8,
                resets=1,
                id=30,
                number=4,
                order_id=2,
                client_order_id="dip",
                symbol=SYMBOL,
                side="BUY",
                liquidity="MAKER",
                price=Decimal("89000.000000000000000000"),
                quantity=Decimal("0.0100"),
                quote_amount=Decimal("890.00"),
                fee=Decimal("0.890000"),
                fee_currency="USDT",
                filled_at=AT,
            ),
        ),
        {
            "paperAccountId": 8,
            "resets": 1,
            "id": 30,
            "number": 4,
            "orderId": 2,
            "clientOrderId": "dip",
            "symbol": SYMBOL,
            "side": "BUY",
            "liquidity": "MAKER",
            "price": "89000.000000000000000000",
            "quantity": "0.0100",
            "quoteAmount": "890.00",
            "fee": "0.890000",
            "feeCurrency": "USDT",
            "filledAt": AT_WIRE,
        },
    ),
    topics.PAPER_ORDERS: (
        (
            5,
            topics.PaperOrderUpdated(
                paper_account_id=8,
                resets=1,
                id=21,
                order_id=3,
                client_order_id="b:2",
                symbol=SYMBOL,
                side="SELL",
                type="STOP_MARKET",
                status="CANCELED",
                quantity=Decimal("0.0100"),
                filled_quantity=Decimal("0"),
                price=None,
                stop_price=Decimal("89000.00"),
                reason="OCO",
                list_id=6,
                list_role="STOP_LOSS",
                sequence=9,
                created_at=AT,
                updated_at=AT,
            ),
        ),
        {
            "paperAccountId": 8,
            "resets": 1,
            "id": 21,
            "orderId": 3,
            "clientOrderId": "b:2",
            "symbol": SYMBOL,
            "side": "SELL",
            "type": "STOP_MARKET",
            "status": "CANCELED",
            "quantity": "0.0100",
            "filledQuantity": "0",
            "price": None,
            "stopPrice": "89000.00",
            "reason": "OCO",
            "listId": 6,
            "listRole": "STOP_LOSS",
            "sequence": 9,
            "createdAt": AT_WIRE,
            "updatedAt": AT_WIRE,
        },
    ),
    topics.BOTS: (
        (
            5,
            topics.BotDecided(
                bot_id=12,
                status="STOPPING",
                paused=False,
                steps=7,
                decisions=2,
                last_decision_id=99,
                at=AT,
            ),
        ),
        {
            "botId": 12,
            "status": "STOPPING",
            "paused": False,
            "steps": 7,
            "decisions": 2,
            "lastDecisionId": 99,
            "at": AT_WIRE,
        },
    ),
    topics.EXCHANGE_ORDERS: (
        (5, topics.ExchangeOrdersChanged(connection_id=3, symbol=SYMBOL, orders_changed=2,
                                         fills_added=1)),
        {"connectionId": 3, "symbol": SYMBOL, "ordersChanged": 2, "fillsAdded": 1},
    ),
    topics.BACKTEST_PROGRESS: (
        (
            5,
            topics.BacktestProgress(
                backtest_id=3, status="RUNNING", reason=None, candles_done=40, candles_total=200
            ),
        ),
        {"id": 3, "status": "RUNNING", "reason": None, "candlesDone": 40, "candlesTotal": 200},
    ),
}


def _declared_topics() -> list[topics.Topic[Any]]:
    """Every ``Topic`` the catalogue's modules define."""
    folder = Path(topics.__file__).parent
    found = []
    for path in sorted(folder.glob("*.py")):
        module = __import__(f"app.events.topics.{path.stem}", fromlist=["_"])
        found += [v for v in vars(module).values() if isinstance(v, base.Topic)]
    return list(dict.fromkeys(found))


def test_every_topic_is_named_once_and_has_a_builder_and_a_payload_type():
    declared = _declared_topics()
    assert set(declared) == set(topics.CATALOGUE) == set(topics.BUILDERS) == set(SAMPLES)
    names = [t.name for t in topics.CATALOGUE]
    assert len(names) == len(set(names))
    for topic in topics.CATALOGUE:
        assert dataclasses.is_dataclass(topic.payload), topic
        assert topic.payload.__dataclass_params__.frozen, topic  # type: ignore[attr-defined]
        args, _ = SAMPLES[topic]
        event = topics.BUILDERS[topic](*args)
        assert isinstance(event.payload, topic.payload)
        symbol = getattr(event.payload, "symbol", None) if topic.per_market else None
        assert event.topic == topic.named(symbol)


@pytest.mark.parametrize("topic", list(SAMPLES), ids=lambda t: t.name)
def test_a_payload_is_todays_json_and_reads_back_as_itself(topic):
    args, wire = SAMPLES[topic]
    event = topics.BUILDERS[topic](*args)
    assert event.payload.to_wire() == wire
    stored = json.loads(event.json())  # what the outbox stores and the relay publishes
    assert stored == wire
    assert topic.parse(stored) == event.payload
    assert topic.parse(stored).to_wire() == wire
    assert event.row() == (event.topic, event.user_id, event.json())


def test_a_markets_topic_needs_its_symbol_and_a_users_topic_has_none():
    assert topics.TRADES.named(SYMBOL) == "trades:BTC/USDT"
    assert topics.FILLS.named() == "fills"
    with pytest.raises(ValueError):
        topics.TRADES.named()
    with pytest.raises(ValueError):
        topics.FILLS.named(SYMBOL)
    assert topics.channel("p:", topics.FILLS.named(), 7) == "p:events:fills:user:7"
    assert topics.channel("p:", topics.BOOK.named(SYMBOL), None) == "p:events:book:BTC/USDT"


# --- no topic outside the catalogue --------------------------------------------------------

SCANNED = ("app", "graphql_schema", "resolvers")
CATALOGUE_DIR = ROOT / "app" / "events" / "topics"
# calls that take a topic (or a channel built from one)
TOPIC_CALLS = {"emit", "subscribe", "stream_events", "channel", "emit_event"}
OUTBOX_CALLS = {"write"}  # only as ``outbox.write`` (a stream's ``write`` takes any text)
TOPIC_KEYWORDS = {"topic", "topics"}


def _spelled(node: ast.AST) -> bool:
    """A topic spelled out: a string literal, an f-string, or a collection of them."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_spelled(e) for e in node.elts)
    if isinstance(node, (ast.ListComp, ast.GeneratorExp, ast.SetComp)):
        return _spelled(node.elt)
    return False


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Attribute):
        if func.attr in OUTBOX_CALLS:
            outbox = isinstance(func.value, ast.Name) and func.value.id == "outbox"
            return func.attr if outbox else None
        return func.attr
    return func.id if isinstance(func, ast.Name) else None


def _offences(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg in TOPIC_KEYWORDS and _spelled(keyword.value):
                    found.append((node.lineno, f"{keyword.arg}= {ast.unparse(keyword.value)}"))
            if _name(node.func) in TOPIC_CALLS | OUTBOX_CALLS:
                for arg in node.args:
                    if _spelled(arg):
                        found.append((node.lineno, f"{_name(node.func)}({ast.unparse(arg)})"))
        elif isinstance(node, ast.Assign) and _spelled(node.value):
            for target in node.targets:
                if isinstance(target, ast.Name) and "TOPIC" in target.id.upper():
                    found.append((node.lineno, f"{target.id} = {ast.unparse(node.value)}"))
    return found


def test_no_topic_is_spelled_outside_the_catalogue():
    offences = []
    for package in SCANNED:
        for path in sorted((ROOT / package).rglob("*.py")):
            if CATALOGUE_DIR in path.parents:
                continue
            for line, what in _offences(ast.parse(path.read_text(), str(path))):
                offences.append(f"{path.relative_to(ROOT)}:{line}: {what}")
    assert offences == [], "name topics by app.events.topics:\n" + "\n".join(offences)


def test_the_check_finds_a_spelled_topic():
    source = """
outbox.emit(session, topic="fills", user_id=1, payload={})
subscribe(info, f"book:{symbol}")
event_log.read(session, "c", topics=("fills",))
TOPIC = "notifications"
stream_events(info, topics.FILLS, convert, user_id=1)
outbox.write(session, "fills")
sys.stderr.write("progress")
"""
    assert sorted(line for line, _ in _offences(ast.parse(source))) == [2, 3, 4, 5, 7]
