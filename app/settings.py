"""The one typed settings object. Every variable is listed in README.md."""

from __future__ import annotations

from enum import StrEnum
from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-in-production"
DEV_SECRET_KEY = "dev-only-secret-key-change-me-in-production"
_PLACEHOLDERS = {"", "changeme", "change-me", "secret", DEV_JWT_SECRET, DEV_SECRET_KEY}
MIN_SECRET_LENGTH = 32


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class InsecureSettings(ValueError):
    """Production refuses to start with a missing, placeholder or short secret."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    env: Environment = Environment.DEVELOPMENT
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = "http://127.0.0.1:8000"
    data_dir: Path = Path(".data")

    database_url: str | None = None
    redis_url: str | None = None
    redis_prefix: str = "co:"
    db_pool_size: int = 10
    db_max_overflow: int = 10

    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    secret_key: SecretStr = SecretStr(DEV_SECRET_KEY)
    jwt_issuer: str = "cryptoorchestrator"
    access_token_ttl_seconds: int = Field(default=900, ge=60, le=3600)
    refresh_token_ttl_days: int = Field(default=30, ge=1, le=365)
    email_token_ttl_hours: int = Field(default=24, ge=1, le=168)
    password_reset_ttl_minutes: int = Field(default=60, ge=5, le=1440)
    totp_issuer: str = "CryptoOrchestrator"

    smtp_url: SecretStr | None = None
    mail_from: str = "CryptoOrchestrator <no-reply@cryptoorchestrator.local>"

    seed_demo_data: bool = True
    log_level: str = "INFO"
    log_json: bool = True
    cors_origins: list[str] = []

    @model_validator(mode="after")
    def _refuse_insecure_production(self) -> Settings:
        if self.env is not Environment.PRODUCTION:
            return self
        for name in ("jwt_secret", "secret_key"):
            value = getattr(self, name).get_secret_value()
            if value.strip().lower() in _PLACEHOLDERS or len(value) < MIN_SECRET_LENGTH:
                raise InsecureSettings(
                    f"{name.upper()} must be set to a random value of at least "
                    f"{MIN_SECRET_LENGTH} characters in production"
                )
        if not self.database_url or not self.redis_url:
            raise InsecureSettings("DATABASE_URL and REDIS_URL are required in production")
        if self.seed_demo_data:
            raise InsecureSettings("SEED_DEMO_DATA must be false in production")
        return self

    @property
    def is_development(self) -> bool:
        return self.env is Environment.DEVELOPMENT

    @property
    def is_production(self) -> bool:
        return self.env is Environment.PRODUCTION

    @cached_property
    def mail_dir(self) -> Path:
        return self.data_dir / "mail"
