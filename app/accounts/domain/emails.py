from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from app.core.errors import ValidationFailed

MAX_EMAIL_LENGTH = 254


def normalise_email(raw: str) -> str:
    """Trim, validate syntax (no DNS), lowercase. Raises ``ValidationFailed`` on bad input."""
    candidate = raw.strip()
    if not candidate or len(candidate) > MAX_EMAIL_LENGTH:
        raise ValidationFailed("Enter a valid email address", field="email")
    try:
        result = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as error:
        raise ValidationFailed(f"Enter a valid email address: {error}", field="email") from error
    return result.normalized.lower()


def normalise_display_name(raw: str) -> str:
    name = " ".join(raw.split())
    if not 1 <= len(name) <= 64:
        raise ValidationFailed("Display name must be 1 to 64 characters", field="displayName")
    if any(not ch.isprintable() for ch in name):
        raise ValidationFailed("Display name contains invalid characters", field="displayName")
    return name
