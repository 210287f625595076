"""Identity verification (KYC) and audit-log queries and mutations."""

from __future__ import annotations

from datetime import date

import strawberry
from strawberry.types import Info

from app.accounts import audit, kyc
from app.accounts.domain.kyc import DocumentType as DomainDocumentType
from graphql_schema.accounts.audit import AuditEntry, AuditEntryConnection, AuditEntryEdge
from graphql_schema.accounts.kyc import (
    DocumentType,
    KycSubmission,
    KycSubmissionConnection,
    KycSubmissionEdge,
    ReviewKycPayload,
    SubmitKycPayload,
)
from graphql_schema.accounts.types import User
from graphql_schema.gateway.context import Context
from graphql_schema.ids import node_pk
from graphql_schema.paging import page_info
from graphql_schema.results import ReviewKycResult, SubmitKycResult
from resolvers.common import attempt

Ctx = Info[Context, None]


async def submit_kyc(
    info: Ctx,
    full_name: str,
    country: str,
    date_of_birth: date,
    document_type: DocumentType,
    document_number: str,
) -> SubmitKycResult:
    """Ask for identity verification; you are PENDING until an admin reviews it."""
    call = kyc.submit_kyc(
        rt=info.context.rt,
        user_id=info.context.user_id,
        full_name=full_name,
        country=country,
        date_of_birth=date_of_birth,
        document_type=DomainDocumentType(document_type.value),
        document_number=document_number,
    )
    return await attempt(call, lambda row: SubmitKycPayload(submission=KycSubmission.from_row(row)))


async def review_kyc(
    info: Ctx,
    user_id: strawberry.ID,
    approve: bool,
    level: int | None = None,
    reason: str | None = None,
) -> ReviewKycResult:
    """Admin only: approve (level 1 by default, or 2) or reject (with a reason) the
    user's pending submission."""

    async def call() -> kyc.Reviewed:
        return await kyc.review_kyc(
            rt=info.context.rt,
            actor_id=info.context.user_id,
            user_id=node_pk(user_id, "User", field="userId"),
            approve=approve,
            level=level,
            reason=reason,
        )

    return await attempt(
        call(),
        lambda done: ReviewKycPayload(
            submission=KycSubmission.from_row(done.submission), user=User.from_row(done.user)
        ),
    )


async def kyc_queue(
    info: Ctx, first: int = 20, after: str | None = None
) -> KycSubmissionConnection:
    """Admin only: submissions waiting for review, oldest first."""
    ctx = info.context
    ctx.require_admin()
    async with ctx.rt.sessions() as session:
        page = await kyc.list_pending(session, first=first, after=after)
    edges = [KycSubmissionEdge(cursor=c, node=KycSubmission.from_row(r)) for c, r in page.items]
    return KycSubmissionConnection(edges=edges, page_info=page_info(page))


async def audit_log(info: Ctx, first: int = 20, after: str | None = None) -> AuditEntryConnection:
    """Admin only: every admin action, newest first."""
    ctx = info.context
    ctx.require_admin()
    async with ctx.rt.sessions() as session:
        page = await audit.list_entries(session, first=first, after=after)
    edges = [AuditEntryEdge(cursor=c, node=AuditEntry.from_row(r)) for c, r in page.items]
    return AuditEntryConnection(edges=edges, page_info=page_info(page))
