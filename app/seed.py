"""Demo data. Idempotent: running it again changes nothing."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert

from app.domain.passwords import hash_password
from app.runtime import Runtime
from db.models import User


@dataclass(frozen=True)
class DemoLogin:
    email: str
    password: str
    role: str
    display_name: str


DEMO_LOGINS = (
    DemoLogin("alice@demo.example", "alice-demo-pass-1", "USER", "Alice"),
    DemoLogin("bob@demo.example", "bob-demo-pass-2", "USER", "Bob"),
    DemoLogin("admin@demo.example", "admin-demo-pass-3", "ADMIN", "Demo Admin"),
)


async def seed_demo_data(rt: Runtime) -> None:
    async with rt.sessions() as session, session.begin():
        for login in DEMO_LOGINS:
            await session.execute(
                insert(User)
                .values(
                    email=login.email,
                    display_name=login.display_name,
                    password_hash=hash_password(login.password),
                    role=login.role,
                    email_verified_at=func.now(),
                )
                .on_conflict_do_nothing(index_elements=[User.email])
            )
