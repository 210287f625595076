"""Identity verification (KYC) rules, independent of storage.

Levels: 0 (nothing verified), 1 and 2 (granted by an admin's review). Daily deposit and
withdrawal limits per level live in the ``kyc_limits`` table. A user has at most one
PENDING submission; ``users.kyc_status`` follows the latest one.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from app.core.errors import Underage, ValidationFailed

MIN_AGE = 18
MAX_AGE = 130
LEVELS = (0, 1, 2)
REVIEW_LEVELS = (1, 2)
MAX_NAME_LENGTH = 100
MAX_REASON_LENGTH = 500
_NAME_PUNCTUATION = frozenset(" -'.,")
_DOCUMENT_NUMBER = re.compile(r"[A-Z0-9]{5,20}")

# ISO 3166-1 alpha-2, officially assigned codes.
COUNTRIES = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO
    BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ
    DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP
    GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG
    KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML
    MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE
    PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL
    SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM
    US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
    """.split()
)


class KycStatus(StrEnum):
    NONE = "NONE"
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


class DocumentType(StrEnum):
    PASSPORT = "PASSPORT"
    ID_CARD = "ID_CARD"
    DRIVING_LICENCE = "DRIVING_LICENCE"


@dataclass(frozen=True, slots=True)
class Applicant:
    """A submission's checked and normalised fields."""

    full_name: str
    country: str
    date_of_birth: date
    document_type: DocumentType
    document_number: str  # normalised; stored only as a keyed hash and its last 4

    @property
    def document_last4(self) -> str:
        return self.document_number[-4:]


@dataclass(frozen=True, slots=True)
class Decision:
    status: KycStatus
    level: int | None  # granted level when approved
    reason: str | None


def check_applicant(
    *,
    full_name: str,
    country: str,
    date_of_birth: date,
    document_type: DocumentType,
    document_number: str,
    today: date,
) -> Applicant:
    return Applicant(
        full_name=normalise_full_name(full_name),
        country=normalise_country(country),
        date_of_birth=check_date_of_birth(date_of_birth, today=today),
        document_type=DocumentType(document_type),
        document_number=normalise_document_number(document_number),
    )


def normalise_full_name(value: str) -> str:
    """Letters of any script with spaces, hyphens, apostrophes, dots and commas; at
    least two letters; no digits or symbols."""
    name = " ".join(unicodedata.normalize("NFC", value).split())
    letters = sum(ch.isalpha() for ch in name)
    plausible = all(ch.isalpha() or ch in _NAME_PUNCTUATION for ch in name)
    if not plausible or letters < 2 or len(name) > MAX_NAME_LENGTH:
        raise ValidationFailed("Enter your full legal name", field="fullName")
    return name


def normalise_country(value: str) -> str:
    code = value.strip().upper()
    if code not in COUNTRIES:
        raise ValidationFailed(
            "country must be an ISO 3166-1 alpha-2 code such as DE or US", field="country"
        )
    return code


def age_on(date_of_birth: date, today: date) -> int:
    before_birthday = (today.month, today.day) < (date_of_birth.month, date_of_birth.day)
    return today.year - date_of_birth.year - before_birthday


def check_date_of_birth(value: date, *, today: date) -> date:
    age = age_on(value, today)
    if value > today or age > MAX_AGE:
        raise ValidationFailed("The date of birth is not plausible", field="dateOfBirth")
    if age < MIN_AGE:
        raise Underage(field="dateOfBirth")
    return value


def normalise_document_number(value: str) -> str:
    number = re.sub(r"[\s\-]", "", value).upper()
    if not _DOCUMENT_NUMBER.fullmatch(number):
        raise ValidationFailed(
            "The document number has 5 to 20 letters and digits", field="documentNumber"
        )
    return number


def decide(*, approve: bool, level: int | None, reason: str | None) -> Decision:
    """An admin's review: approval grants level 1 (default) or 2; rejection needs a reason."""
    reason = (reason or "").strip() or None
    if reason is not None and len(reason) > MAX_REASON_LENGTH:
        raise ValidationFailed(f"reason is at most {MAX_REASON_LENGTH} characters", field="reason")
    if not approve:
        if reason is None:
            raise ValidationFailed("Give the user a reason for the rejection", field="reason")
        if level is not None:
            raise ValidationFailed("A rejection grants no level", field="level")
        return Decision(status=KycStatus.REJECTED, level=None, reason=reason)
    granted = 1 if level is None else level
    if granted not in REVIEW_LEVELS:
        raise ValidationFailed("level must be 1 or 2", field="level")
    return Decision(status=KycStatus.APPROVED, level=granted, reason=reason)
