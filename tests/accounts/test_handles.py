"""setHandle: the public name other users can transfer to."""

from __future__ import annotations

import pytest

from tests.support.documents import signed_in

SET_HANDLE = (
    "mutation($h: String!) { setHandle(handle: $h) { __typename"
    " ... on UserPayload { user { handle } } ... on Error { code message }"
    " ... on ValidationFailed { field } ... on HandleTaken { field } } }"
)


async def test_a_handle_is_normalised_and_shown(gql):
    carol = await signed_in(gql)
    data = await gql.data(SET_HANDLE, {"h": " @Carol_1 "}, token=carol["accessToken"])
    assert data["setHandle"] == {"__typename": "UserPayload", "user": {"handle": "carol_1"}}
    me = (await gql.data("{ me { handle } }", token=carol["accessToken"]))["me"]
    assert me == {"handle": "carol_1"}


@pytest.mark.parametrize("handle", ["ab", "x" * 31, "with space", "émile", "semi;colon", ""])
async def test_bad_handles_are_refused(gql, handle):
    carol = await signed_in(gql)
    data = await gql.data(SET_HANDLE, {"h": handle}, token=carol["accessToken"])
    assert (data["setHandle"]["code"], data["setHandle"]["field"]) == (
        "VALIDATION_FAILED",
        "handle",
    )
    assert (await gql.data("{ me { handle } }", token=carol["accessToken"]))["me"]["handle"] is None


async def test_a_taken_handle_is_refused_and_keeping_your_own_is_fine(gql):
    carol = await signed_in(gql)
    dave = await signed_in(gql, "dave@example.com")
    await gql.data(SET_HANDLE, {"h": "carol"}, token=carol["accessToken"])
    taken = await gql.data(SET_HANDLE, {"h": "CAROL"}, token=dave["accessToken"])
    assert taken["setHandle"]["code"] == "HANDLE_TAKEN"
    again = await gql.data(SET_HANDLE, {"h": "carol"}, token=carol["accessToken"])
    assert again["setHandle"]["__typename"] == "UserPayload"


async def test_set_handle_needs_sign_in(gql):
    data = await gql.data(SET_HANDLE, {"h": "nobody"})
    assert data["setHandle"]["code"] == "UNAUTHENTICATED"
