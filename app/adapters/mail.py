"""Outgoing mail: SMTP when SMTP_URL is set, otherwise (development and tests only: a
production server refuses to start without SMTP_URL) the log plus a local folder.

Mails carry sign-in secrets (verification, reset and email-change links): nothing here
logs a mail's body, except the development folder mailer, for newcomers."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Mail:
    to: str
    subject: str
    text: str


class Mailer(Protocol):
    async def send(self, mail: Mail) -> None: ...


def _to_email_message(mail: Mail, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
    message.set_content(mail.text)
    return message


class SmtpMailer:
    """``SMTP_URL``: ``smtp://[user:pass@]host:port`` (STARTTLS when offered with
    ``?starttls=true``) or ``smtps://host:port`` for implicit TLS."""

    def __init__(self, url: str, *, sender: str) -> None:
        parts = urlsplit(url)
        options = parse_qs(parts.query)
        self._sender = sender
        self._kwargs: dict[str, object] = {
            "hostname": parts.hostname or "127.0.0.1",
            "port": parts.port or (465 if parts.scheme == "smtps" else 25),
            "use_tls": parts.scheme == "smtps",
            "start_tls": options.get("starttls", ["false"])[0] == "true",
            "timeout": 10,
        }
        if parts.username:
            self._kwargs["username"] = unquote(parts.username)
            self._kwargs["password"] = unquote(parts.password or "")

    async def send(self, mail: Mail) -> None:
        await aiosmtplib.send(_to_email_message(mail, self._sender), **self._kwargs)


class FolderMailer:
    """Development: writes each mail as an .eml file a person can open, and to the log
    (the body, with its link, only when ``log_bodies``: in development)."""

    def __init__(self, folder: Path, *, sender: str, log_bodies: bool = False) -> None:
        self._folder = folder
        self._sender = sender
        self._log_bodies = log_bodies

    async def send(self, mail: Mail) -> None:
        self._folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        slug = re.sub(r"[^a-z0-9]+", "-", f"{mail.to}-{mail.subject}".lower()).strip("-")[:80]
        path = self._folder / f"{stamp}-{slug}.eml"
        path.write_bytes(bytes(_to_email_message(mail, self._sender)))
        extra = {"to": mail.to, "subject": mail.subject, "path": str(path)}
        if self._log_bodies:
            extra["body"] = mail.text
        log.info("mail written", extra=extra)


def build_mailer(
    *, smtp_url: str | None, folder: Path, sender: str, log_bodies: bool = False
) -> Mailer:
    if smtp_url:
        return SmtpMailer(smtp_url, sender=sender)
    return FolderMailer(folder, sender=sender, log_bodies=log_bodies)


def verification_mail(*, to: str, display_name: str, link: str, valid_hours: int) -> Mail:
    return Mail(
        to=to,
        subject="Verify your email address",
        text=(
            f"Hello {display_name},\n\n"
            f"Confirm your email address for CryptoOrchestrator by opening this link:\n\n"
            f"{link}\n\n"
            f"The link is valid for {valid_hours} hours. "
            "If you did not sign up, ignore this mail.\n"
        ),
    )


def password_reset_mail(*, to: str, display_name: str, link: str, valid_minutes: int) -> Mail:
    return Mail(
        to=to,
        subject="Reset your password",
        text=(
            f"Hello {display_name},\n\n"
            f"Someone asked to reset the password of your CryptoOrchestrator account.\n"
            f"To choose a new password, open this link:\n\n{link}\n\n"
            f"The link works once and for {valid_minutes} minutes. Resetting signs out every "
            f"session. If it was not you, ignore this mail: your password stays as it is.\n"
        ),
    )


def registration_attempt_mail(*, to: str) -> Mail:
    """Sent instead of a verification mail when someone registers an address that
    already has an account (the answer to ``register`` is the same either way)."""
    return Mail(
        to=to,
        subject="Verify your email address",
        text=(
            "Hello,\n\n"
            "Someone tried to create a CryptoOrchestrator account with this email address, "
            "which already has one.\n\n"
            'If it was you: sign in with your password, or choose "Forgot password" '
            "to reset it. If it was not you, ignore this mail: nothing was changed.\n"
        ),
    )


def password_reset_unknown_address_mail(*, to: str) -> Mail:
    """Sent instead of a reset link when the address has no account (the answer to
    ``requestPasswordReset`` is the same either way)."""
    return Mail(
        to=to,
        subject="Reset your password",
        text=(
            "Hello,\n\n"
            "Someone asked to reset the password of a CryptoOrchestrator account with this "
            "email address, but there is no account with it. If it was you, you may have "
            "signed up with another address. If it was not you, ignore this mail.\n"
        ),
    )


def email_change_mail(*, to: str, display_name: str, link: str, valid_hours: int) -> Mail:
    return Mail(
        to=to,
        subject="Confirm your new email address",
        text=(
            f"Hello {display_name},\n\n"
            "To make this the email address of your CryptoOrchestrator account, open this "
            f"link:\n\n{link}\n\nThe link is valid for {valid_hours} hours. "
            "If you did not ask for this, ignore this mail.\n"
        ),
    )


def email_change_notice_mail(*, to: str, display_name: str, new_email: str) -> Mail:
    return Mail(
        to=to,
        subject="Your email address is being changed",
        text=(
            f"Hello {display_name},\n\n"
            f"Someone signed in to your CryptoOrchestrator account asked to change its email "
            f"address to {new_email}. The change takes effect when the link sent to that "
            "address is opened. If it was not you, reset your password now.\n"
        ),
    )
