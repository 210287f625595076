"""Identity verification: the pure rules, submitKyc, reviewKyc, the review queue, the
limits per level."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from app.accounts.domain import kyc as rules
from app.accounts.domain.kyc import DocumentType, KycStatus
from app.accounts.kyc import daily_limits
from app.core.errors import Underage, ValidationFailed
from db.models import KycSubmission, OutboxEvent, User
from tests.support.documents import signed_in
from tests.support.money import user_id
from tests.support.withdrawing import Pinned, admin_token, real_clock

TODAY = date(2026, 6, 15)

# --- pure rules --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("born", "ok"),
    [
        (date(2008, 6, 15), True),  # 18 today
        (date(2008, 6, 16), False),  # 18 tomorrow
        (date(1990, 1, 1), True),
        (date(1896, 6, 16), True),  # 129
    ],
)
def test_applicants_must_be_adults(born, ok):
    if ok:
        assert rules.check_date_of_birth(born, today=TODAY) == born
    else:
        with pytest.raises(Underage):
            rules.check_date_of_birth(born, today=TODAY)


def test_leap_day_birthdays_come_of_age_on_the_first_of_march():
    born = date(2008, 2, 29)
    assert rules.age_on(born, date(2026, 2, 28)) == 17
    assert rules.age_on(born, date(2026, 3, 1)) == 18


@pytest.mark.parametrize("born", [date(2026, 6, 16), date(1800, 1, 1)])
def test_implausible_dates_of_birth(born):
    with pytest.raises(ValidationFailed) as caught:
        rules.check_date_of_birth(born, today=TODAY)
    assert caught.value.field == "dateOfBirth"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("  Ada   Lovelace ", "Ada Lovelace"),
        ("Jean-Luc O'Neill Jr.", "Jean-Luc O'Neill Jr."),
        ("José Álvarez", "José Álvarez"),
        ("Søren Kierkegaard", "Søren Kierkegaard"),
        ("山田 太郎", "山田 太郎"),
        ("Li", "Li"),
    ],
)
def test_plausible_names_are_normalised(name, expected):
    assert rules.normalise_full_name(name) == expected


@pytest.mark.parametrize("name", ["", "   ", "X", "R2-D2", "Robert'); DROP TABLE", "a" * 101, "--"])
def test_implausible_names_are_refused(name):
    with pytest.raises(ValidationFailed) as caught:
        rules.normalise_full_name(name)
    assert caught.value.field == "fullName"


@pytest.mark.parametrize(
    ("code", "ok"),
    [("de", True), (" US ", True), ("XX", False), ("DEU", False), ("", False), ("UK", False)],
)
def test_country_codes_are_iso_3166_alpha_2(code, ok):
    if ok:
        assert rules.normalise_country(code) == code.strip().upper()
    else:
        with pytest.raises(ValidationFailed):
            rules.normalise_country(code)


@pytest.mark.parametrize(
    ("number", "expected"),
    [("c01x 00t47", "C01X00T47"), ("AB-123-456", "AB123456"), ("12345", "12345")],
)
def test_document_numbers_are_normalised(number, expected):
    assert rules.normalise_document_number(number) == expected


@pytest.mark.parametrize("number", ["1234", "AB/123456", "x" * 21, "ÄÖÜ12345"])
def test_bad_document_numbers(number):
    with pytest.raises(ValidationFailed):
        rules.normalise_document_number(number)


def test_review_decisions():
    assert rules.decide(approve=True, level=None, reason=None) == rules.Decision(
        KycStatus.APPROVED, 1, None
    )
    assert rules.decide(approve=True, level=2, reason=" ok ").level == 2
    assert rules.decide(approve=False, level=None, reason="blurry photo").reason == "blurry photo"
    for kwargs, field in (
        ({"approve": True, "level": 0, "reason": None}, "level"),
        ({"approve": True, "level": 3, "reason": None}, "level"),
        ({"approve": False, "level": None, "reason": " "}, "reason"),
        ({"approve": False, "level": 1, "reason": "no"}, "level"),
        ({"approve": True, "level": None, "reason": "x" * 501}, "reason"),
    ):
        with pytest.raises(ValidationFailed) as caught:
            rules.decide(**kwargs)
        assert caught.value.field == field


# --- through the API ---------------------------------------------------------------------

SUBMISSION_FIELDS = (
    "id fullName country dateOfBirth documentType documentNumberLast4 status levelGranted"
    " reason reviewedAt user { email kycLevel }"
)
SUBMIT = (
    "mutation($name: String!, $country: String!, $dob: Date!, $type: DocumentType!,"
    " $number: String!) { submitKyc(fullName: $name, country: $country, dateOfBirth: $dob,"
    " documentType: $type, documentNumber: $number) { __typename"
    f" ... on SubmitKycPayload {{ submission {{ {SUBMISSION_FIELDS} }} }}"
    " ... on Error { code message } ... on ValidationFailed { field } ... on Underage { field }"
    " } }"
)
REVIEW = (
    "mutation($user: ID!, $approve: Boolean!, $level: Int, $reason: String) {"
    " reviewKyc(userId: $user, approve: $approve, level: $level, reason: $reason) { __typename"
    f" ... on ReviewKycPayload {{ submission {{ {SUBMISSION_FIELDS} }} user {{ id kycLevel }} }}"
    " ... on Error { code message } ... on ValidationFailed { field } ... on NotFound { field }"
    " ... on KycNotPending { field } } }"
)
QUEUE = (
    "query($first: Int!, $after: String) { kycQueue(first: $first, after: $after) {"
    " edges { cursor node { fullName status user { email } } }"
    " pageInfo { hasNextPage hasPreviousPage endCursor } } }"
)
GOOD = {
    "name": "Ada Lovelace",
    "country": "gb",
    "dob": "1990-12-10",
    "type": "PASSPORT",
    "number": "c01x-00t47",
}


@pytest.fixture
async def ada(gql, rt):
    """A signed-in user; the clock is pinned at 2026-06-15 (ages are checked against it)."""
    with real_clock(rt):
        auth = await signed_in(gql, "ada@example.com")
    rt.clock = Pinned(datetime(2026, 6, 15, 9, 30, tzinfo=UTC))
    return auth


async def _user(rt, email: str) -> User:
    async with rt.sessions() as session:
        return await session.scalar(select(User).where(User.email == email))


async def _submissions(rt) -> list[KycSubmission]:
    async with rt.sessions() as session:
        return list((await session.scalars(select(KycSubmission).order_by(KycSubmission.id))).all())


async def test_submit_puts_the_user_in_pending_and_keeps_only_a_hash_of_the_document(gql, rt, ada):
    result = (await gql.data(SUBMIT, GOOD, token=ada["accessToken"]))["submitKyc"]
    assert result["__typename"] == "SubmitKycPayload", result
    submission = result["submission"]
    assert {k: submission[k] for k in ("fullName", "country", "dateOfBirth", "documentType")} == {
        "fullName": "Ada Lovelace",
        "country": "GB",
        "dateOfBirth": "1990-12-10",
        "documentType": "PASSPORT",
    }
    assert (submission["documentNumberLast4"], submission["status"]) == ("0T47", "PENDING")
    assert submission["user"] == {"email": "ada@example.com", "kycLevel": 0}

    user = await _user(rt, "ada@example.com")
    assert (user.kyc_status, user.kyc_level) == ("PENDING", 0)
    (row,) = await _submissions(rt)
    assert row.document_number_hash == rt.signer.keyed_hash("kyc-document:GB:PASSPORT:C01X00T47")
    stored = " ".join(str(v) for v in vars(row).values())
    assert "C01X00T47" not in stored.upper() and "C01X-00T47" not in stored.upper()


async def test_one_pending_submission_at_a_time(gql, rt, ada):
    await gql.data(SUBMIT, GOOD, token=ada["accessToken"])
    again = (await gql.data(SUBMIT, GOOD, token=ada["accessToken"]))["submitKyc"]
    assert again["code"] == "KYC_ALREADY_PENDING"
    assert len(await _submissions(rt)) == 1


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"dob": "2008-06-16"}, "UNDERAGE", "dateOfBirth"),
        ({"dob": "2027-01-01"}, "VALIDATION_FAILED", "dateOfBirth"),
        ({"name": "x"}, "VALIDATION_FAILED", "fullName"),
        ({"name": "Ada L0velace"}, "VALIDATION_FAILED", "fullName"),
        ({"country": "XX"}, "VALIDATION_FAILED", "country"),
        ({"country": "GBR"}, "VALIDATION_FAILED", "country"),
        ({"number": "12"}, "VALIDATION_FAILED", "documentNumber"),
    ],
)
async def test_bad_submissions_are_typed_errors_and_change_nothing(
    gql, rt, ada, overrides, code, field
):
    result = (await gql.data(SUBMIT, {**GOOD, **overrides}, token=ada["accessToken"]))["submitKyc"]
    assert (result["code"], result["field"]) == (code, field)
    assert await _submissions(rt) == []
    assert (await _user(rt, "ada@example.com")).kyc_status == "NONE"


async def test_an_adult_since_today_may_submit(gql, rt, ada):
    result = await gql.data(SUBMIT, {**GOOD, "dob": "2008-06-15"}, token=ada["accessToken"])
    assert result["submitKyc"]["submission"]["status"] == "PENDING"


async def test_unknown_document_types_are_refused_by_the_schema(gql, ada):
    body = await gql(SUBMIT, {**GOOD, "type": "LIBRARY_CARD"}, token=ada["accessToken"])
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_submit_needs_sign_in(gql, rt):
    data = await gql.data(SUBMIT, GOOD)
    assert data["submitKyc"]["code"] == "UNAUTHENTICATED"


async def test_admin_approves_with_a_level(gql, rt, ada):
    admin, admin_id = await admin_token(gql, rt)
    await gql.data(SUBMIT, GOOD, token=ada["accessToken"])
    result = await gql.data(
        REVIEW, {"user": ada["user"]["id"], "approve": True, "level": 2}, token=admin
    )
    review = result["reviewKyc"]
    assert review["__typename"] == "ReviewKycPayload", review
    assert review["user"] == {"id": ada["user"]["id"], "kycLevel": 2}
    assert (review["submission"]["status"], review["submission"]["levelGranted"]) == (
        "APPROVED",
        2,
    )
    assert review["submission"]["reviewedAt"].startswith("2026-06-15T09:30:00")
    user = await _user(rt, "ada@example.com")
    assert (user.kyc_status, user.kyc_level) == ("APPROVED", 2)
    (row,) = await _submissions(rt)
    assert row.reviewed_by == admin_id
    async with rt.sessions() as session:
        events = (await session.scalars(select(OutboxEvent))).all()
    assert [(e.topic, e.payload) for e in events] == [
        ("kyc.reviewed", {"status": "APPROVED", "level": 2})
    ]


async def test_approval_defaults_to_level_one(gql, rt, ada):
    admin, _ = await admin_token(gql, rt)
    await gql.data(SUBMIT, GOOD, token=ada["accessToken"])
    review = (await gql.data(REVIEW, {"user": ada["user"]["id"], "approve": True}, token=admin))[
        "reviewKyc"
    ]
    assert review["user"]["kycLevel"] == 1


async def test_rejection_needs_a_reason_and_the_user_may_submit_again(gql, rt, ada):
    admin, _ = await admin_token(gql, rt)
    await gql.data(SUBMIT, GOOD, token=ada["accessToken"])
    variables = {"user": ada["user"]["id"], "approve": False}
    missing = (await gql.data(REVIEW, variables, token=admin))["reviewKyc"]
    assert (missing["code"], missing["field"]) == ("VALIDATION_FAILED", "reason")
    bad_level = await gql.data(REVIEW, {**variables, "approve": True, "level": 3}, token=admin)
    assert bad_level["reviewKyc"]["field"] == "level"
    rejected = await gql.data(REVIEW, {**variables, "reason": "photo unreadable"}, token=admin)
    submission = rejected["reviewKyc"]["submission"]
    assert (submission["status"], submission["reason"]) == ("REJECTED", "photo unreadable")
    user = await _user(rt, "ada@example.com")
    assert (user.kyc_status, user.kyc_level) == ("REJECTED", 0)
    again = await gql.data(SUBMIT, {**GOOD, "type": "ID_CARD"}, token=ada["accessToken"])
    assert again["submitKyc"]["submission"]["status"] == "PENDING"
    assert [s.status for s in await _submissions(rt)] == ["REJECTED", "PENDING"]


async def test_review_errors(gql, rt, ada):
    admin, admin_id = await admin_token(gql, rt)
    nothing = await gql.data(REVIEW, {"user": ada["user"]["id"], "approve": True}, token=admin)
    assert (nothing["reviewKyc"]["code"], nothing["reviewKyc"]["field"]) == (
        "KYC_NOT_PENDING",
        "userId",
    )
    for bad_id, code in (
        ("nonsense", "VALIDATION_FAILED"),
        (base64.b64encode(b"Withdrawal:1").decode(), "VALIDATION_FAILED"),
        (base64.b64encode(b"User:999").decode(), "NOT_FOUND"),
    ):
        result = await gql.data(REVIEW, {"user": bad_id, "approve": True}, token=admin)
        assert (result["reviewKyc"]["code"], result["reviewKyc"]["field"]) == (code, "userId")
    own = base64.b64encode(f"User:{admin_id}".encode()).decode()
    self_review = await gql.data(REVIEW, {"user": own, "approve": True}, token=admin)
    assert self_review["reviewKyc"]["code"] == "FORBIDDEN"


async def test_review_is_admin_only(gql, rt, ada):
    with real_clock(rt):
        bob = await signed_in(gql, "bob@example.com")
    await gql.data(SUBMIT, GOOD, token=ada["accessToken"])
    variables = {"user": ada["user"]["id"], "approve": True, "level": 2}
    for token in (ada["accessToken"], bob["accessToken"]):
        result = await gql.data(REVIEW, variables, token=token)
        assert result["reviewKyc"]["code"] == "FORBIDDEN"
    assert (await gql.data(REVIEW, variables))["reviewKyc"]["code"] == "UNAUTHENTICATED"
    user = await _user(rt, "ada@example.com")
    assert (user.kyc_status, user.kyc_level) == ("PENDING", 0)


async def test_a_demoted_admin_is_refused_even_with_a_valid_token(gql, rt, ada):
    admin, admin_id = await admin_token(gql, rt)
    await gql.data(SUBMIT, GOOD, token=ada["accessToken"])
    async with rt.sessions() as session, session.begin():
        await session.execute(update(User).where(User.id == admin_id).values(role="USER"))
    result = await gql.data(REVIEW, {"user": ada["user"]["id"], "approve": True}, token=admin)
    assert result["reviewKyc"]["code"] == "FORBIDDEN"


async def test_the_queue_lists_pending_submissions_oldest_first(gql, rt, ada):
    admin, _ = await admin_token(gql, rt)
    tokens = [ada["accessToken"]]
    with real_clock(rt):
        for name in ("bea", "cy"):
            tokens.append((await signed_in(gql, f"{name}@example.com"))["accessToken"])
    for token, name in zip(tokens, ("Ada One", "Bea Two", "Cy Three"), strict=True):
        await gql.data(SUBMIT, {**GOOD, "name": name}, token=token)
    page = (await gql.data(QUEUE, {"first": 2}, token=admin))["kycQueue"]
    assert [e["node"]["fullName"] for e in page["edges"]] == ["Ada One", "Bea Two"]
    assert page["edges"][0]["node"]["user"] == {"email": "ada@example.com"}
    assert page["pageInfo"]["hasNextPage"] is True
    rest = await gql.data(QUEUE, {"first": 2, "after": page["pageInfo"]["endCursor"]}, token=admin)
    assert [e["node"]["fullName"] for e in rest["kycQueue"]["edges"]] == ["Cy Three"]

    await gql.data(REVIEW, {"user": ada["user"]["id"], "approve": True}, token=admin)
    left = (await gql.data(QUEUE, {"first": 10}, token=admin))["kycQueue"]["edges"]
    assert [e["node"]["fullName"] for e in left] == ["Bea Two", "Cy Three"]


async def test_the_queue_is_admin_only(gql, rt, ada):
    body = await gql(QUEUE, {"first": 5}, token=ada["accessToken"])
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    anonymous = await gql(QUEUE, {"first": 5})
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_the_database_allows_one_pending_submission_per_user(rt, gql, ada):
    """The partial unique index backs up the check made under the user row lock."""
    uid = await user_id(rt, "ada@example.com")
    row = {
        "user_id": uid,
        "full_name": "Ada",
        "country": "GB",
        "date_of_birth": date(1990, 1, 1),
        "document_type": "PASSPORT",
        "document_number_hash": b"h",
        "document_number_last4": "1234",
    }
    async with rt.sessions() as session, session.begin():
        session.add(KycSubmission(**row))
    with pytest.raises(IntegrityError):
        async with rt.sessions() as session, session.begin():
            session.add(KycSubmission(**row))


async def test_limits_per_level_are_seeded(rt):
    async with rt.sessions() as session:
        levels = [await daily_limits(session, level) for level in rules.LEVELS]
    assert [(lim.deposit_usd, lim.withdrawal_usd) for lim in levels] == [
        (2000, 0),
        (20000, 20000),
        (1000000, 1000000),
    ]
    assert [d.value for d in DocumentType] == ["PASSPORT", "ID_CARD", "DRIVING_LICENCE"]
