"""Outgoing mail: SMTP when SMTP_URL is set, otherwise the log plus a local folder."""

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
    """Development: writes each mail to the log and as an .eml file a person can open."""

    def __init__(self, folder: Path, *, sender: str) -> None:
        self._folder = folder
        self._sender = sender

    async def send(self, mail: Mail) -> None:
        self._folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        slug = re.sub(r"[^a-z0-9]+", "-", f"{mail.to}-{mail.subject}".lower()).strip("-")[:80]
        path = self._folder / f"{stamp}-{slug}.eml"
        path.write_bytes(bytes(_to_email_message(mail, self._sender)))
        log.info(
            "mail written",
            extra={"to": mail.to, "subject": mail.subject, "path": str(path), "body": mail.text},
        )


def build_mailer(*, smtp_url: str | None, folder: Path, sender: str) -> Mailer:
    return SmtpMailer(smtp_url, sender=sender) if smtp_url else FolderMailer(folder, sender=sender)


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
