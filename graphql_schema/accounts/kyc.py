"""Identity verification (KYC) types."""

from __future__ import annotations

from datetime import date, datetime

import strawberry
from strawberry import relay
from strawberry.types import Info

from app.accounts.domain import kyc as kyc_rules
from db.models import KycSubmission as KycSubmissionRow
from graphql_schema.accounts.types import User
from graphql_schema.enums import derived_enum

KycStatus = derived_enum(kyc_rules.KycStatus, name="KycStatus")
DocumentType = derived_enum(kyc_rules.DocumentType, name="DocumentType")


@strawberry.type
class KycSubmission:
    """What a user submitted for identity verification (the document number is kept
    only as a keyed hash and its last four characters)."""

    id: strawberry.ID
    full_name: str
    country: str = strawberry.field(description="ISO 3166-1 alpha-2.")
    date_of_birth: date
    document_type: DocumentType
    document_number_last4: str
    status: KycStatus
    level_granted: int | None
    reason: str | None = strawberry.field(description="The reviewer's reason, if any.")
    created_at: datetime
    reviewed_at: datetime | None
    user_id: strawberry.Private[int]

    @strawberry.field
    async def user(self, info: Info) -> User | None:
        row = await info.context.loaders.user_by_id.load(self.user_id)
        return User.from_row(row) if row is not None and info.context.can_see_user(row.id) else None

    @classmethod
    def from_row(cls, row: KycSubmissionRow) -> KycSubmission:
        return cls(
            id=strawberry.ID(str(row.id)),
            full_name=row.full_name,
            country=row.country,
            date_of_birth=row.date_of_birth,
            document_type=DocumentType(row.document_type),
            document_number_last4=row.document_number_last4,
            status=KycStatus(row.status),
            level_granted=row.level_granted,
            reason=row.reason,
            created_at=row.created_at,
            reviewed_at=row.reviewed_at,
            user_id=row.user_id,
        )


@strawberry.type
class KycSubmissionEdge:
    cursor: str
    node: KycSubmission


@strawberry.type
class KycSubmissionConnection:
    edges: list[KycSubmissionEdge]
    page_info: relay.PageInfo


@strawberry.type
class SubmitKycPayload:
    submission: KycSubmission


@strawberry.type
class ReviewKycPayload:
    submission: KycSubmission
    user: User
