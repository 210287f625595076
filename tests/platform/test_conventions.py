"""Schema conventions: Relay nodes and privacy, keyset connections, typed errors, no N+1."""

from __future__ import annotations

import base64
from decimal import Decimal

import pytest
from sqlalchemy import update

from db.models import User
from graphql_schema.scalars import parse_decimal, serialize_decimal
from tests.support.documents import login, register, signed_in

NODE = "query($id: ID!) { node(id: $id) { __typename id ... on User { email } } }"
USERS = (
    "query($first: Int!, $after: String) { users(first: $first, after: $after) {"
    " edges { cursor node { id email } } pageInfo { hasNextPage hasPreviousPage endCursor } } }"
)


async def _admin(gql, rt, email: str = "root@example.com") -> str:
    await register(gql, email)
    async with rt.sessions() as session, session.begin():
        await session.execute(update(User).where(User.email == email).values(role="ADMIN"))
    return (await login(gql, email))["accessToken"]


async def test_node_returns_own_user_and_hides_everyone_elses(gql, rt):
    carol = await signed_in(gql)
    dave = await signed_in(gql, "dave@example.com")
    own = await gql.data(NODE, {"id": carol["user"]["id"]}, token=carol["accessToken"])
    assert own["node"] == {
        "__typename": "User",
        "id": carol["user"]["id"],
        "email": "carol@example.com",
    }
    other = await gql.data(NODE, {"id": dave["user"]["id"]}, token=carol["accessToken"])
    assert other["node"] is None
    anonymous = await gql.data(NODE, {"id": carol["user"]["id"]})
    assert anonymous["node"] is None
    admin = await _admin(gql, rt)
    seen = await gql.data(NODE, {"id": dave["user"]["id"]}, token=admin)
    assert seen["node"]["email"] == "dave@example.com"


async def test_global_ids_are_opaque_type_prefixed(gql):
    carol = await signed_in(gql)
    decoded = base64.b64decode(carol["user"]["id"]).decode()
    assert decoded.startswith("User:")


@pytest.mark.parametrize(
    "bad_id",
    ["", "nonsense", base64.b64encode(b"Nope:1").decode(), base64.b64encode(b"User:abc").decode()],
)
async def test_malformed_or_unknown_global_ids_do_not_leak(gql, bad_id):
    carol = await signed_in(gql)
    body = await gql(NODE, {"id": bad_id}, token=carol["accessToken"])
    if body.get("errors"):
        assert body["errors"][0]["extensions"]["code"] != "INTERNAL_SERVER_ERROR"
        assert "Traceback" not in str(body)
    else:
        assert body["data"]["node"] is None


async def test_users_connection_pages_by_keyset_cursor(gql, rt):
    admin = await _admin(gql, rt)
    for i in range(5):
        await register(gql, f"user{i}@example.com")
    first = (await gql.data(USERS, {"first": 4}, token=admin))["users"]
    emails = [e["node"]["email"] for e in first["edges"]]
    assert emails == [f"user{i}@example.com" for i in (4, 3, 2, 1)]  # newest first
    assert first["pageInfo"]["hasNextPage"] is True
    rest = await gql.data(USERS, {"first": 4, "after": first["pageInfo"]["endCursor"]}, token=admin)
    rest_emails = [e["node"]["email"] for e in rest["users"]["edges"]]
    assert rest_emails == ["user0@example.com", "root@example.com"]
    assert rest["users"]["pageInfo"] == {
        "hasNextPage": False,
        "hasPreviousPage": True,
        "endCursor": rest["users"]["edges"][-1]["cursor"],
    }


async def test_a_row_inserted_between_pages_does_not_shift_the_next_page(gql, rt):
    admin = await _admin(gql, rt)
    for i in range(3):
        await register(gql, f"user{i}@example.com")
    page = (await gql.data(USERS, {"first": 2}, token=admin))["users"]
    await register(gql, "late@example.com")
    nxt = await gql.data(USERS, {"first": 2, "after": page["pageInfo"]["endCursor"]}, token=admin)
    assert [e["node"]["email"] for e in nxt["users"]["edges"]] == [
        "user0@example.com",
        "root@example.com",
    ]


@pytest.mark.parametrize(
    ("variables", "code"),
    [
        ({"first": 101}, "VALIDATION_FAILED"),
        ({"first": -1}, "VALIDATION_FAILED"),
        ({"first": 2, "after": "!!notacursor"}, "VALIDATION_FAILED"),
    ],
)
async def test_bad_paging_arguments_are_typed_errors(gql, rt, variables, code):
    admin = await _admin(gql, rt)
    body = await gql(USERS, variables, token=admin)
    assert body["errors"][0]["extensions"]["code"] == code
    assert body["errors"][0]["extensions"]["field"] in {"first", "after"}


async def test_users_is_admin_only(gql):
    carol = await signed_in(gql)
    body = await gql(USERS, {"first": 5}, token=carol["accessToken"])
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    anonymous = await gql(USERS, {"first": 5})
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_users_page_costs_a_constant_number_of_statements(gql, rt, sql_statements):
    admin = await _admin(gql, rt)
    for i in range(3):
        await register(gql, f"user{i}@example.com")
    sql_statements.reset()
    await gql.data(USERS, {"first": 2}, token=admin)
    small = sql_statements.count
    for i in range(3, 30):
        await register(gql, f"user{i}@example.com")
    sql_statements.reset()
    data = await gql.data(USERS, {"first": 30}, token=admin)
    assert len(data["users"]["edges"]) == 30
    assert sql_statements.count == small == 2  # authenticate + the page


async def test_me_costs_one_statement(gql, sql_statements):
    carol = await signed_in(gql)
    sql_statements.reset()
    await gql.data("{ me { id email } }", token=carol["accessToken"])
    assert sql_statements.count == 1


async def test_many_nodes_in_one_request_are_batched(gql, rt, sql_statements):
    admin = await _admin(gql, rt)
    ids = [(await signed_in(gql, f"u{i}@example.com"))["user"]["id"] for i in range(5)]
    query = "{ " + " ".join(f'n{i}: node(id: "{gid}") {{ id }}' for i, gid in enumerate(ids)) + " }"
    sql_statements.reset()
    data = await gql.data(query, token=admin)
    assert all(data[f"n{i}"]["id"] == gid for i, gid in enumerate(ids))
    assert sql_statements.count == 2  # authenticate + one batched load


def test_decimal_scalar_round_trips_as_string_without_exponent():
    assert serialize_decimal(Decimal("0.00000001")) == "0.00000001"
    assert serialize_decimal(Decimal("1E+3")) == "1000"
    assert parse_decimal("12.50") == Decimal("12.50")
    assert parse_decimal("-0.1") == Decimal("-0.1")


@pytest.mark.parametrize("value", [1.5, 3, "NaN", "Infinity", "1e5", "", " 1", "1.2.3", None])
def test_decimal_scalar_refuses_floats_and_non_numbers(value):
    with pytest.raises(ValueError):
        parse_decimal(value)


def test_decimal_scalar_refuses_to_serialise_floats():
    with pytest.raises(TypeError):
        serialize_decimal(1.5)  # type: ignore[arg-type]
