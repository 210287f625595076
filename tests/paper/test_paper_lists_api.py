"""Paper order lists through GraphQL over HTTP, on PostgreSQL against the live market: an
OCO whose first leg to fill cancels the other and frees the one hold they share; a
bracket whose entry fills and arms its exits; canceling a list; bad input refused with a
typed error and nothing written; the live venue and the simulated (paper) one refuse the
same bad list with the same code; paper holds never touch real balances."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from app.paper import live
from tests.support.money import balances as real_balances
from tests.support.trading import funded_user, rows, scalar, trade_at, trader

pytestmark = pytest.mark.usefixtures("engines")

OPEN = """
mutation($input: OpenPaperAccountInput!) { openPaperAccount(input: $input) {
  ... on PaperAccountPayload { paperAccount { id } } } }"""
PLACE_LIST = """
mutation($input: PlacePaperOrderListInput!) { placePaperOrderList(input: $input) {
  __typename
  ... on PaperOrderListPayload { listId kind clientListId
    orders { clientOrderId side type quantity price stopPrice status reason listId listRole } }
  ... on Error { code field } } }"""
CANCEL_LIST = """
mutation($id: ID!, $list: String!) { cancelPaperOrderList(paperAccountId: $id,
                                                          clientListId: $list) {
  __typename ... on PaperOrderListPayload { orders { clientOrderId status reason } }
  ... on Error { code field } } }"""
LIVE_LIST = """
mutation($input: PlaceOrderListInput!) { placeOrderList(input: $input) {
  __typename ... on OrderListPayload { listId } ... on Error { code field } } }"""
ACCOUNT = """
query($id: ID!) { paperAccount(id: $id) {
  balances { currency available held }
  orders(first: 20) { edges { node { clientOrderId status reason listId listRole } } } } }"""
WRITES = """SELECT (SELECT count(*) FROM paper_log) + (SELECT count(*) FROM paper_orders)
    + (SELECT count(*) FROM paper_order_lists) + (SELECT count(*) FROM paper_journal_entries)"""


async def setup(gql, rt, usdt: str = "10000", btc: str = "1") -> tuple[str, str, int, int]:
    """A live market at 90000 and a paper account; (token, account id, maker, taker)."""
    maker = await funded_user(rt, "maker", BTC="5")
    taker = await funded_user(rt, "taker", USDT="1000000")
    await trade_at(rt, maker, taker, "90000")
    _, token = await trader(gql, rt, "paper@example.com")
    start = [{"currency": "USDT", "amount": usdt}, {"currency": "BTC", "amount": btc}]
    opened = await gql.data(
        OPEN, {"input": {"name": "Lists", "symbol": "BTC/USDT", "balances": start}}, token=token
    )
    return token, opened["openPaperAccount"]["paperAccount"]["id"], maker, taker


def oco_sell(account_id: str, list_id: str = "oco", **kw) -> dict:
    """Take profit at 91000, stop (market) at 89000, 0.01 BTC each."""
    legs = [
        {"side": "SELL", "type": "LIMIT", "quantity": "0.01", "price": "91000"},
        {"side": "SELL", "type": "STOP_MARKET", "quantity": "0.01", "stopPrice": "89000"},
    ]
    return {"paperAccountId": account_id, "kind": "OCO", "clientListId": list_id,
            "orders": legs, **kw}  # fmt: skip


def bracket_buy(account_id: str, list_id: str = "br", **kw) -> dict:
    """Buy 0.01 at 89000; then take profit at 92000, stop loss (market) at 87000."""
    entry = {"side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "89000"}
    return {"paperAccountId": account_id, "kind": "BRACKET", "clientListId": list_id,
            "entry": entry, "takeProfitPrice": "92000", "stopLossPrice": "87000",
            **kw}  # fmt: skip


async def paper_view(gql, token: str, account_id: str) -> tuple[dict, dict]:
    """(balances by currency as Decimals (available, held), orders by client order id)."""
    seen = (await gql.data(ACCOUNT, {"id": account_id}, token=token))["paperAccount"]
    money = {b["currency"]: (D(b["available"]), D(b["held"])) for b in seen["balances"]}
    return money, {e["node"]["clientOrderId"]: e["node"] for e in seen["orders"]["edges"]}


async def test_an_oco_leg_filling_cancels_the_other_and_frees_the_hold(gql, rt):
    token, account_id, maker, taker = await setup(gql, rt)
    uid = await scalar(rt, "SELECT id FROM users WHERE email = 'paper@example.com'")
    placed = (await gql.data(PLACE_LIST, {"input": oco_sell(account_id)}, token=token))[
        "placePaperOrderList"
    ]
    assert placed["__typename"] == "PaperOrderListPayload", placed
    assert (placed["kind"], placed["clientListId"]) == ("OCO", "oco")
    legs = placed["orders"]
    assert [(o["clientOrderId"], o["type"], o["status"], o["listRole"]) for o in legs] == [
        ("oco:0", "LIMIT", "OPEN", "LEG"),
        ("oco:1", "STOP_MARKET", "UNTRIGGERED", "LEG"),
    ]
    assert {o["listId"] for o in legs} == {placed["listId"]}
    money, orders = await paper_view(gql, token, account_id)
    assert money["BTC"] == (D("0.99"), D("0.01"))  # one hold for both legs
    assert orders["oco:1"]["listId"] == placed["listId"]
    await trade_at(rt, maker, taker, "91100")  # through the take profit
    await live.run_once(rt)
    money, orders = await paper_view(gql, token, account_id)
    assert (orders["oco:0"]["status"], orders["oco:1"]["status"]) == ("FILLED", "CANCELED")
    assert orders["oco:1"]["reason"] == "OCO"
    fee = D("910") * D("0.001")
    assert money == {"BTC": (D("0.99"), D(0)), "USDT": (D("10000") + D("910") - fee, D(0))}
    assert not any(a or h for a, h in (await real_balances(rt, uid)).values())


async def test_a_bracket_entry_fill_arms_its_exits_and_an_exit_fill_ends_it(gql, rt):
    token, account_id, maker, taker = await setup(gql, rt, btc="0")
    placed = (await gql.data(PLACE_LIST, {"input": bracket_buy(account_id)}, token=token))[
        "placePaperOrderList"
    ]
    assert placed["__typename"] == "PaperOrderListPayload", placed
    assert [(o["clientOrderId"], o["side"], o["type"], o["status"], o["listRole"])
            for o in placed["orders"]] == [
        ("br:0", "BUY", "LIMIT", "OPEN", "ENTRY"),
        ("br:1", "SELL", "LIMIT", "PENDING", "TAKE_PROFIT"),
        ("br:2", "SELL", "STOP_MARKET", "PENDING", "STOP_LOSS"),
    ]  # fmt: skip
    assert D(placed["orders"][1]["price"]) == 92000 and D(placed["orders"][2]["stopPrice"]) == 87000
    money, _ = await paper_view(gql, token, account_id)
    assert money["USDT"][1] == D("890") + D("890") * D("0.002")  # the entry's hold only
    await trade_at(rt, maker, taker, "88900")  # through the entry
    await live.run_once(rt)
    money, orders = await paper_view(gql, token, account_id)
    assert [orders[f"br:{i}"]["status"] for i in range(3)] == ["FILLED", "OPEN", "UNTRIGGERED"]
    assert money["BTC"] == (D(0), D("0.01"))  # the exits' one hold
    assert money["USDT"][1] == 0
    await trade_at(rt, maker, taker, "92100")  # through the take profit
    await live.run_once(rt)
    money, orders = await paper_view(gql, token, account_id)
    assert [orders[f"br:{i}"]["status"] for i in range(3)] == ["FILLED", "FILLED", "CANCELED"]
    assert orders["br:2"]["reason"] == "OCO"
    assert money["BTC"] == (D(0), D(0)) and money["USDT"][1] == 0


async def test_canceling_a_list_cancels_its_live_legs_and_frees_the_hold(gql, rt):
    token, account_id, _, _ = await setup(gql, rt)
    await gql.data(PLACE_LIST, {"input": oco_sell(account_id)}, token=token)
    await gql.data(PLACE_LIST, {"input": bracket_buy(account_id)}, token=token)
    canceled = (await gql.data(CANCEL_LIST, {"id": account_id, "list": "oco"}, token=token))[
        "cancelPaperOrderList"
    ]
    assert [(o["clientOrderId"], o["status"]) for o in canceled["orders"]] == [
        ("oco:0", "CANCELED"),
        ("oco:1", "CANCELED"),
    ]
    canceled = (await gql.data(CANCEL_LIST, {"id": account_id, "list": "br"}, token=token))[
        "cancelPaperOrderList"
    ]
    assert [o["status"] for o in canceled["orders"]] == ["CANCELED"] * 3
    money, _ = await paper_view(gql, token, account_id)
    assert money == {"BTC": (D(1), D(0)), "USDT": (D(10000), D(0))}
    before = await scalar(rt, WRITES)
    again = await gql.data(CANCEL_LIST, {"id": account_id, "list": "oco"}, token=token)
    assert again["cancelPaperOrderList"]["code"] == "ORDER_NOT_CANCELLABLE"
    unknown = await gql.data(CANCEL_LIST, {"id": account_id, "list": "nope"}, token=token)
    assert unknown["cancelPaperOrderList"]["code"] == "ORDER_NOT_FOUND"
    assert await scalar(rt, WRITES) == before


async def test_a_list_is_idempotent_by_its_client_list_id(gql, rt):
    token, account_id, _, _ = await setup(gql, rt)
    first = await gql.data(PLACE_LIST, {"input": oco_sell(account_id)}, token=token)
    before = await scalar(rt, WRITES)
    again = await gql.data(PLACE_LIST, {"input": oco_sell(account_id)}, token=token)
    assert again == first
    assert await scalar(rt, WRITES) == before
    other = bracket_buy(account_id, list_id="oco")
    refused = await gql.data(PLACE_LIST, {"input": other}, token=token)
    assert refused["placePaperOrderList"]["code"] == "CLIENT_ORDER_ID_REUSED"
    assert await scalar(rt, WRITES) == before


def _legs(*changes: dict) -> list[dict]:
    legs = oco_sell("x")["orders"]
    return [{**leg, **change} for leg, change in zip(legs, changes, strict=False)]


BAD_LISTS = [
    ("one leg", {"orders": _legs({})[:1]}, "INVALID_ORDER"),
    ("same types", {"orders": _legs({}, {"type": "LIMIT", "price": "92000"})}, "INVALID_ORDER"),
    ("a market leg", {"orders": _legs({"type": "MARKET", "price": None}, {})}, "INVALID_ORDER"),
    ("quantities differ", {"orders": _legs({}, {"quantity": "0.02"})}, "INVALID_ORDER"),
    ("price off tick", {"orders": _legs({"price": "91000.001"}, {})}, "PRICE_OFF_TICK"),
    ("quantity off lot", {"orders": _legs({"quantity": "0.00001"}, {"quantity": "0.00001"})},
     "QUANTITY_OFF_LOT_SIZE"),
    ("stop above the market", {"orders": _legs({}, {"stopPrice": "95000"})},
     "STOP_PRICE_WRONG_SIDE"),
    ("huge price", {"orders": _legs({"price": "9" * 30}, {})}, "INVALID_ORDER"),
    ("no orders", {"orders": None}, "VALIDATION_FAILED"),
]  # fmt: skip
BAD_BRACKETS = [
    ("stop entry", {"entry": {"side": "BUY", "type": "STOP_MARKET", "quantity": "0.01",
                              "stopPrice": "95000"}}, "INVALID_ORDER"),
    ("take profit not beyond", {"takeProfitPrice": "88000"}, "INVALID_ORDER"),
    ("stop loss above the entry", {"stopLossPrice": "89500"}, "STOP_PRICE_WRONG_SIDE"),
    ("huge take profit", {"takeProfitPrice": "9" * 30}, "INVALID_ORDER"),
    ("huge quantity", {"entry": {"side": "BUY", "type": "LIMIT", "quantity": "9" * 30,
                                 "price": "89000"}}, "INVALID_ORDER"),
    ("no funds", {"entry": {"side": "BUY", "type": "LIMIT", "quantity": "1",
                            "price": "89000"}}, "INSUFFICIENT_FUNDS"),
    ("no entry", {"entry": None}, "VALIDATION_FAILED"),
]  # fmt: skip

# refused on arrival (the live venue refuses these too, after writing its rows)
ON_ARRIVAL = [
    ("OCO", "post-only leg would take",
     {"orders": _legs({"price": "89000", "postOnly": True}, {"stopPrice": "88000"})},
     "POST_ONLY_WOULD_TAKE"),
    ("BRACKET", "fill-or-kill entry not fillable",
     {"entry": {"side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "89000",
                "timeInForce": "FOK"}}, "FOK_NOT_FILLABLE"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "change", "code"),
    [("OCO", change, code) for _, change, code in BAD_LISTS]
    + [("BRACKET", change, code) for _, change, code in BAD_BRACKETS]
    + [(kind, change, code) for kind, _, change, code in ON_ARRIVAL],
    ids=[name for name, _, _ in BAD_LISTS + BAD_BRACKETS] + [a[1] for a in ON_ARRIVAL],
)
async def test_a_bad_list_is_refused_with_a_typed_error_and_writes_nothing(
    gql, rt, kind, change, code
):
    token, account_id, _, _ = await setup(gql, rt)
    uid = await scalar(rt, "SELECT id FROM users WHERE email = 'paper@example.com'")
    before = await scalar(rt, WRITES)
    money, _ = await paper_view(gql, token, account_id)
    base = oco_sell(account_id) if kind == "OCO" else bracket_buy(account_id)
    body = await gql(PLACE_LIST, {"input": {**base, **change}}, token=token)
    assert body["data"]["placePaperOrderList"]["code"] == code, body
    assert await scalar(rt, WRITES) == before
    assert (await paper_view(gql, token, account_id))[0] == money
    assert not any(a or h for a, h in (await real_balances(rt, uid)).values())


@pytest.mark.parametrize(
    ("kind", "change"),
    [("OCO", change) for _, change, code in BAD_LISTS if code != "VALIDATION_FAILED"]
    + [("BRACKET", change) for _, change, code in BAD_BRACKETS if code != "VALIDATION_FAILED"],
    ids=[n for n, _, c in BAD_LISTS + BAD_BRACKETS if c != "VALIDATION_FAILED"],
)
async def test_the_live_and_the_paper_venue_refuse_a_bad_list_with_the_same_code(
    gql, rt, kind, change
):
    """The live venue (``placeOrderList``) and the simulated one behind paper trading
    plan lists with one implementation: the same refusal (the simulated venue answers a
    code only, so the paper error has no field)."""
    token, account_id, _, _ = await setup(gql, rt)
    base = oco_sell(account_id) if kind == "OCO" else bracket_buy(account_id)
    paper = await gql.data(PLACE_LIST, {"input": {**base, **change}}, token=token)
    _, real = await trader(gql, rt, "real@example.com", USDT="10000", BTC="1")
    live_input = {**base, **change, "symbol": "BTC/USDT"}
    del live_input["paperAccountId"]
    placed = await gql.data(LIVE_LIST, {"input": live_input}, token=real)
    live_refusal, paper_refusal = placed["placeOrderList"], paper["placePaperOrderList"]
    assert "code" in live_refusal, live_refusal
    assert (paper_refusal["__typename"], paper_refusal["code"]) == (
        live_refusal["__typename"],
        live_refusal["code"],
    )
    assert await scalar(rt, "SELECT count(*) FROM order_lists") == 0


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"paperAccountId": "garbage"}, "VALIDATION_FAILED"),
        ({"paperAccountId": "UGFwZXJBY2NvdW50Ojk5OTk5"}, "NOT_FOUND"),  # PaperAccount:99999
        ({"clientListId": "a\x00"}, None),
        ({"clientListId": "x" * 65}, "VALIDATION_FAILED"),
    ],
)
async def test_bad_ids_are_refused_and_write_nothing(gql, rt, change, expected):
    token, account_id, _, _ = await setup(gql, rt)
    before = await scalar(rt, WRITES)
    body = await gql(PLACE_LIST, {"input": {**oco_sell(account_id), **change}}, token=token)
    if expected is None:
        assert body.get("errors"), body  # refused before the operation ran
    else:
        assert body["data"]["placePaperOrderList"]["code"] == expected, body
    for list_id in ("a\x00", "x" * 65, "oco"):
        body = await gql(CANCEL_LIST, {"id": account_id, "list": list_id}, token=token)
        assert body.get("errors") or body["data"]["cancelPaperOrderList"]["code"], body
    assert await scalar(rt, WRITES) == before


async def test_another_users_paper_account_takes_no_list(gql, rt):
    token, account_id, _, _ = await setup(gql, rt)
    await gql.data(PLACE_LIST, {"input": oco_sell(account_id)}, token=token)
    _, other = await trader(gql, rt, "other@example.com", BTC="1")
    before = await scalar(rt, WRITES)
    theirs = await gql.data(PLACE_LIST, {"input": oco_sell(account_id, "mine")}, token=other)
    assert theirs["placePaperOrderList"]["code"] == "NOT_FOUND"
    cancel = await gql.data(CANCEL_LIST, {"id": account_id, "list": "oco"}, token=other)
    assert cancel["cancelPaperOrderList"]["code"] == "NOT_FOUND"
    assert await scalar(rt, WRITES) == before
    held = await rows(rt, "SELECT currency, balance FROM paper_ledger_accounts"
                          " WHERE kind = 'PAPER_HELD' AND balance <> 0")  # fmt: skip
    assert [tuple(r) for r in held] == [("BTC", D("0.01"))]  # the owner's OCO only
