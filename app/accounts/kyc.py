"""Identity verification: submissions, admin review, limits per level."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import audit
from app.accounts.domain import kyc
from app.accounts.domain.kyc import DocumentType, KycStatus
from app.core.errors import (
    Forbidden,
    InvariantViolation,
    KycAlreadyPending,
    KycNotPending,
    NotAuthenticated,
    NotFound,
)
from app.events import outbox, topics
from app.runtime import Runtime
from db.models import KycLimit, KycSubmission, User
from db.queries import Page, keyset_page, lock_user
from db.session import in_transaction


@dataclass(frozen=True, slots=True)
class Reviewed:
    submission: KycSubmission
    user: User


@dataclass(frozen=True, slots=True)
class DailyLimits:
    deposit_usd: Decimal
    withdrawal_usd: Decimal


async def submit_kyc(
    *,
    rt: Runtime,
    user_id: int | None,
    full_name: str,
    country: str,
    date_of_birth: date,
    document_type: DocumentType,
    document_number: str,
) -> KycSubmission:
    """Puts the user in PENDING. The document number is kept only as a keyed hash
    (comparable, not readable) and its last four characters."""
    applicant = kyc.check_applicant(
        full_name=full_name,
        country=country,
        date_of_birth=date_of_birth,
        document_type=document_type,
        document_number=document_number,
        today=rt.now().date(),
    )
    fingerprint = rt.signer.keyed_hash(
        f"kyc-document:{applicant.country}:{applicant.document_type}:{applicant.document_number}"
    )

    async def work(session: AsyncSession) -> KycSubmission:
        user = await _lock_signed_in(session, user_id)
        if user.kyc_status == KycStatus.PENDING:
            raise KycAlreadyPending()
        submission = KycSubmission(
            user_id=user.id,
            full_name=applicant.full_name,
            country=applicant.country,
            date_of_birth=applicant.date_of_birth,
            document_type=applicant.document_type.value,
            document_number_hash=fingerprint,
            document_number_last4=applicant.document_last4,
            status=KycStatus.PENDING.value,
            created_at=rt.now(),
        )
        session.add(submission)
        user.kyc_status = KycStatus.PENDING.value
        await session.flush()
        return submission

    return await in_transaction(rt.sessions, work)


async def review_kyc(
    *,
    rt: Runtime,
    actor_id: int | None,
    user_id: int,
    approve: bool,
    level: int | None,
    reason: str | None,
) -> Reviewed:
    """An admin approves (granting level 1 or 2) or rejects (with a reason) the user's
    pending submission; audited in the same transaction."""
    decision = kyc.decide(approve=approve, level=level, reason=reason)

    async def work(session: AsyncSession) -> Reviewed:
        actor = await audit.require_admin(session, actor_id)
        if actor.id == user_id:
            raise Forbidden("You cannot review your own identity verification")
        user = await lock_user(session, user_id)
        if user is None:
            raise NotFound("No such user", field="userId")
        submission = await _pending_submission(session, user.id)
        if submission is None:
            raise KycNotPending(field="userId")
        submission.status = decision.status.value
        submission.level_granted = decision.level
        submission.reason = decision.reason
        submission.reviewed_by = actor.id
        submission.reviewed_at = rt.now()
        user.kyc_status = decision.status.value
        if decision.level is not None:
            user.kyc_level = decision.level
        await audit.record(
            session,
            actor_id=actor.id,
            action="kyc.approve" if approve else "kyc.reject",
            target=f"user:{user.id}",
            details={
                "submissionId": submission.id,
                "level": decision.level,
                "reason": decision.reason,
            },
        )
        reviewed = topics.KycReviewed(status=user.kyc_status, level=user.kyc_level)
        await outbox.write(session, topics.kyc_reviewed(user.id, reviewed))
        await session.flush()
        return Reviewed(submission=submission, user=user)

    return await in_transaction(rt.sessions, work)


async def list_pending(
    session: AsyncSession, *, first: int, after: str | None
) -> Page[KycSubmission]:
    """The review queue, oldest first."""
    statement = select(KycSubmission).where(KycSubmission.status == KycStatus.PENDING.value)
    return await keyset_page(session, statement, key=KycSubmission.id, first=first, after=after)


async def daily_limits(session: AsyncSession, level: int) -> DailyLimits:
    row = await session.get(KycLimit, level)
    if row is None:
        raise InvariantViolation(f"no kyc_limits row for level {level}")
    return DailyLimits(deposit_usd=row.daily_deposit_usd, withdrawal_usd=row.daily_withdrawal_usd)


async def _pending_submission(session: AsyncSession, user_id: int) -> KycSubmission | None:
    """The user's pending submission (the caller holds the user's row lock)."""
    return await session.scalar(
        select(KycSubmission).where(
            KycSubmission.user_id == user_id, KycSubmission.status == KycStatus.PENDING.value
        )
    )


async def _lock_signed_in(session: AsyncSession, user_id: int | None) -> User:
    if user_id is None:
        raise NotAuthenticated()
    user = await lock_user(session, user_id)
    if user is None:
        raise NotAuthenticated()
    return user
