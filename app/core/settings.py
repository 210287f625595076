"""The one typed settings object. Every variable is listed in docs/configuration.md."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from decimal import Decimal
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-in-production"
DEV_SECRET_KEY = "dev-only-secret-key-change-me-in-production"
_PLACEHOLDERS = {"", "changeme", "change-me", "secret", DEV_JWT_SECRET, DEV_SECRET_KEY}
MIN_SECRET_LENGTH = 32
DEV_STRIPE_API_KEY = "sk_test_placeholder"
DEV_STRIPE_WEBHOOK_SECRET = "whsec_placeholder"
# the Stripe secrets production needs, and the prefix a real one starts with
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,32}")
_LOCAL_KEY_LABEL = b"cryptoorchestrator exchange master key (development and tests only)"
_MIN_DISTINCT_KEY_BYTES = 8  # 32 random bytes have ~30 distinct values; "AAAA..." has 1
_STRIPE_SECRETS = {"stripe_api_key": ("sk_", "rk_"), "stripe_webhook_secret": ("whsec_",)}


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
    public_url: str = ""  # unset: http://HOST:PORT (see _public_url_follows_host_and_port)
    data_dir: Path = Path(".data")

    database_url: str | None = None
    redis_url: str | None = None
    redis_prefix: str = "co:"
    # Connections are kept, not churned: an overflow connection is closed on return, and
    # a new one costs a connect plus asyncpg's type introspection (milliseconds).
    db_pool_size: int = 20
    db_max_overflow: int = 10

    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    secret_key: SecretStr = SecretStr(DEV_SECRET_KEY)
    jwt_issuer: str = "cryptoorchestrator"
    access_token_ttl_seconds: int = Field(default=900, ge=60, le=3600)
    refresh_token_ttl_days: int = Field(default=30, ge=1, le=365)
    email_token_ttl_hours: int = Field(default=24, ge=1, le=168)
    password_reset_ttl_minutes: int = Field(default=60, ge=5, le=1440)
    totp_issuer: str = "CryptoOrchestrator"

    smtp_url: SecretStr | None = None  # required in production (unset: log + .data/mail)
    mail_from: str = "CryptoOrchestrator <no-reply@cryptoorchestrator.local>"
    # account mails (verification, reset, registration notices, email change) per
    # recipient address per window, shared by all processes; over it no mail is sent
    mail_per_address_limit: int = Field(default=5, ge=1)
    mail_per_address_window_seconds: float = Field(default=3600, gt=0)

    idempotency_key_retention_hours: int = Field(default=48, ge=24)
    outbox_relay_interval_seconds: float = Field(default=0.2, ge=0)
    # the background jobs (outbox relay, event consumers, accrual, ...) in the server;
    # false when `python -m app worker` runs them
    background_jobs_enabled: bool = True
    seed_demo_data: bool = True
    log_level: str = "INFO"
    log_json: bool = True
    cors_origins: list[str] = []
    # the proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (comma-separated
    # IPs or CIDRs, "*" for any): behind a load balancer name its addresses, or every
    # client shares the balancer's IP and so one per-IP rate limit budget
    forwarded_allow_ips: str = "127.0.0.1"
    # /metrics answers only `Authorization: Bearer <METRICS_TOKEN>` when set; production
    # without one refuses every scrape (403)
    metrics_token: SecretStr | None = None

    # card deposits through Stripe
    stripe_api_key: SecretStr = SecretStr(DEV_STRIPE_API_KEY)
    stripe_webhook_secret: SecretStr = SecretStr(DEV_STRIPE_WEBHOOK_SECRET)
    stripe_api_base: str | None = None  # unset: Stripe's own; tests use a local stand-in

    # connected exchange accounts (docs: "Exchange accounts"). The key ring that seals their
    # API secrets: comma-separated `KEY_ID:BASE64` entries, each a random 32-byte AES-256
    # key; EXCHANGE_MASTER_KEY_ID names the one new secrets are sealed with (unset: the
    # first). Production refuses a missing, malformed or placeholder ring; development and
    # tests derive a local key from SECRET_KEY when it is unset.
    exchange_master_keys: SecretStr | None = None
    exchange_master_key_id: str | None = None
    # each exchange's API base URL by exchange id, e.g. {"binance": "https://..."} (unset:
    # the exchange's own; tests point them at local stand-ins; https in production)
    exchange_api_bases: dict[str, str] = {}
    exchange_request_timeout_seconds: float = Field(default=10, gt=0)
    exchange_network_retries: int = Field(default=2, ge=0, le=5)  # reads only, with backoff
    # how often the job looks for connections to check again (0: no job), and how old a
    # check may get before it is done again
    exchange_recheck_interval_seconds: float = Field(default=600, ge=0)
    exchange_recheck_after_hours: float = Field(default=24, gt=0)
    # how often orders on connected accounts are polled and reconciled (0: never)
    exchange_order_poll_seconds: float = Field(default=5, ge=0)
    # a stored account's ccxt instance is kept for its next requests this long unused
    exchange_instance_idle_seconds: float = Field(default=300, ge=0)
    # the pages of an account's order or trade history one reconciliation reads per list
    # and market at most (the next run goes on from there)
    exchange_history_max_pages: int = Field(default=100, ge=1)
    # order streams (ccxt.pro watch_orders / watch_my_trades) for accounts with live orders
    # at exchanges that have them: how often the supervisor looks for accounts to start or
    # stop (0: no streams, polling only; also how soon a disconnected account's stream
    # stops), how often a streamed account is reconciled anyway (the safety net), and the
    # reconnect backoff's first and longest wait
    exchange_stream_check_seconds: float = Field(default=2, ge=0)
    exchange_stream_reconcile_seconds: float = Field(default=60, gt=0)
    exchange_stream_backoff_seconds: float = Field(default=1, gt=0)
    exchange_stream_backoff_max_seconds: float = Field(default=60, gt=0)
    # emulated stops on connected accounts: how often the `exchange-triggers` job reads the
    # trades of markets with armed stops (0: no job), and how old the newest trade may be
    # for a stop to fire on it (older: STALE_PRICES, nothing fires)
    exchange_trigger_poll_seconds: float = Field(default=1, ge=0)
    exchange_trigger_max_price_age_seconds: float = Field(default=30, gt=0, le=3600)
    # exchange custody: how often the job looks for mirrors to reconcile (0: no job), how
    # old a mirror may get before the job reads the exchange again, and how many
    # syncExchangeAccount calls a user may make per minute
    exchange_sync_interval_seconds: float = Field(default=60, ge=0)
    exchange_sync_after_seconds: float = Field(default=300, gt=0)
    exchange_sync_requests_per_minute: int = Field(default=6, ge=1)
    # exchanges' public market data (docs: "Market data"): how long an order book, and a
    # ticker or recent trades, fetched from an exchange are served to every caller before
    # it is asked again (0: every call asks)
    exchange_book_cache_seconds: float = Field(default=1.0, ge=0, le=60)
    exchange_ticker_cache_seconds: float = Field(default=2.0, ge=0, le=60)
    # subscriptions to an exchange's order book poll it this often (shared by subscribers)
    exchange_book_poll_seconds: float = Field(default=1.0, ge=0.1, le=60)
    # candles kept up to date by the `exchange-candles` job: `exchange:SYMBOL:interval`
    # entries, e.g. ["binance:BTC/USDT:1m", "kraken:ETH/USDT:1h"] (empty: no job); how
    # often it runs, how far back a new series starts (in candles), and how many requests
    # a series may make per run (the rest waits for the next run)
    exchange_candle_sync: list[str] = []
    exchange_candle_sync_interval_seconds: float = Field(default=60, ge=0)
    exchange_candle_backfill: int = Field(default=1000, ge=1, le=1_000_000)
    exchange_candle_sync_max_requests: int = Field(default=5, ge=1, le=100)

    # withdrawals: above this USD value an admin reviews (paid from cold storage)
    cold_storage_threshold_usd: Decimal = Field(default=Decimal(10000), ge=0)
    # the hot wallet keeps at most this much USD value per currency; the rest is swept
    hot_wallet_cap_usd: Decimal = Field(default=Decimal(50000), ge=0)
    hot_wallet_caps_usd: dict[str, Decimal] = {}  # per-currency overrides, e.g. {"BTC": 200000}
    withdrawal_worker_interval_seconds: float = Field(default=5, ge=0)  # 0: no worker

    # staking: how often the accrual job looks for finished UTC days (0: no job); the share
    # (0-1) of the current term's rewards a locked stake forfeits when redeemed early
    staking_accrual_interval_seconds: float = Field(default=300, ge=0)
    staking_early_redemption_forfeit: Decimal = Field(default=Decimal(1), ge=0, le=1)

    # trading (README: "Trading")
    trading_engine_enabled: bool = True  # run the matching engines in this process
    trading_engine_batch_size: int = Field(default=500, ge=1)  # commands per transaction
    trading_engine_poll_seconds: float = Field(default=0.5, gt=0)  # besides NOTIFY wake-ups
    trading_engine_takeover_seconds: float = Field(default=1.0, gt=0)  # standby lock retry
    # a placement for a market whose engine this process runs (and owns) is matched in
    # the placement's own transaction; off: the engine applies it in a batch of its own
    trading_match_on_placement: bool = True
    # placeOrder calls in flight together share a transaction (group commit): at most
    # this many orders in one, and this many such transactions at once per process
    trading_placement_batch: int = Field(default=200, ge=1)
    trading_placement_concurrency: int = Field(default=1, ge=1)
    trading_wait_seconds: float = Field(default=5, ge=0)  # placeOrder waits for the engine
    trading_price_band_bps: int = Field(default=1000, ge=1)  # limit price vs last price
    trading_max_open_orders: int = Field(default=200, ge=1)  # per user
    trading_max_order_notional_usd: Decimal = Field(default=Decimal(1_000_000), gt=0)
    market_maker_enabled: bool = False  # `serve` turns it on for the embedded default
    market_maker_interval_seconds: float = Field(default=1.0, gt=0)
    market_maker_seed: int = 1  # of its random walk: the same seed, the same prices
    market_maker_levels: int = Field(default=5, ge=1, le=20)  # quotes per side and market
    market_maker_spread_bps: int = Field(default=20, ge=1)  # from its best bid to its best ask
    market_maker_volatility_bps: int = Field(default=10, ge=0)  # walk step (one std deviation)
    market_maker_trade_probability: float = Field(default=0.5, ge=0, le=1)  # per market, cycle
    equity_snapshot_interval_seconds: float = Field(default=3600, ge=0)

    # notifications and price alerts (README: "Notifications"); 0 turns a job off
    notifications_interval_seconds: float = Field(default=0.2, ge=0)  # events -> notifications
    notification_email_interval_seconds: float = Field(default=1, ge=0)
    price_alerts_interval_seconds: float = Field(default=0.2, ge=0)  # trades -> fired alerts
    price_alerts_max_active: int = Field(default=50, ge=1)  # per user
    # leaderboard (README: "Leaderboard"): how often the statistics are recomputed (0: no
    # job), the trades a leader needs in a period to be ranked, how long answers are cached
    # (0: not cached)
    leaderboard_interval_seconds: float = Field(default=300, ge=0)
    leaderboard_min_trades: int = Field(default=5, ge=0)
    leaderboard_cache_ttl_seconds: int = Field(default=60, ge=0)

    # social trading: who may lead (README: "Social trading: leaders and following")
    leader_min_kyc_level: int = Field(default=1, ge=0)
    leader_min_equity_usd: Decimal = Field(default=Decimal(100), ge=0)
    leader_min_closed_trades: int = Field(default=5, ge=0)  # SELL fills of the user

    # copy trading (README: "Copy trading"): run the copy worker in the server (false when
    # `python -m app copy-worker` runs it), its poll interval besides the engines' NOTIFY,
    # leader fill events per batch, follows placed at once; the profit share job
    copy_worker_enabled: bool = True
    copy_poll_seconds: float = Field(default=0.05, gt=0)
    copy_batch_size: int = Field(default=200, ge=1)
    copy_concurrency: int = Field(default=256, ge=1)  # follows placed at once (group commit)
    profit_share_interval_seconds: float = Field(default=3600, ge=0)  # 0: no job
    # trading bots: how often the bots job looks for bots to wake (0: no job)
    bot_poll_seconds: float = Field(default=0.05, ge=0)
    # how often a server claims backtests that are queued or were left by a server that
    # stopped (their lease expired) and runs them (0: no job; then only the server that
    # queued one runs it)
    backtest_resume_interval_seconds: float = Field(default=5, ge=0)

    # partner access and abuse protection (README: "Partner access")
    trusted_documents_manifest: Path | None = None  # Apollo persisted-query manifest (JSON)
    trusted_documents_only: bool = False  # allowlist mode for every client
    persisted_query_ttl_seconds: int = Field(default=86400, ge=60)  # APQ documents in Redis
    persisted_query_max_bytes: int = Field(default=16 * 1024, ge=1024)  # a document to register
    persisted_query_registrations: int = Field(default=60, ge=1)  # per client and hour
    max_request_bytes: int = Field(default=64 * 1024, ge=1024)  # an HTTP request's body (413)
    max_query_depth: int = Field(default=12, ge=2)
    max_query_aliases: int = Field(default=30, ge=0)
    max_query_tokens: int = Field(default=3000, ge=100)
    max_query_cost: int = Field(default=1000, ge=1)
    # what validation's field merging may compare (graphql_schema/gateway/limits.py, _MergeWalk)
    max_query_fields: int = Field(default=2000, ge=10)  # fragments counted where spread
    max_merge_comparisons: int = Field(default=500, ge=10)
    execution_timeout_seconds: float = Field(default=10, gt=0)
    # rate limits: budgets of query cost per window (GCRA in Redis, shared by all processes)
    rate_limit_window_seconds: float = Field(default=60, gt=0)
    rate_limit_anonymous: int = Field(default=600, ge=1)  # per client IP
    rate_limit_authenticated: int = Field(default=3000, ge=1)  # per user or per API key
    rate_limit_orders: int = Field(default=120, ge=1)  # order placements per user or API key
    login_window_seconds: float = Field(default=300, gt=0)
    login_attempts_per_ip: int = Field(default=60, ge=1)
    login_attempts_per_account: int = Field(default=20, ge=1)
    login_backoff_after_failures: int = Field(default=5, ge=1)
    login_backoff_max_seconds: float = Field(default=900, gt=0)
    api_key_last_used_interval_seconds: int = Field(default=60, ge=1)
    ws_max_subscriptions: int = Field(default=100, ge=1)  # operations per connection
    ws_max_message_bytes: int = Field(default=64 * 1024, ge=1024)
    # permessage-deflate: off by default. Compression is per socket (its own zlib stream),
    # so with a book's deltas going to thousands of sockets it is most of the server's CPU
    # per delivery, to save bytes on messages of a few hundred
    ws_per_message_deflate: bool = False
    ws_allowed_origins: list[str] = []  # cross-origin pages allowed to open a WebSocket
    # Cache-Control max-age of an anonymous persisted GET of public market data (0: none)
    public_query_cache_seconds: int = Field(default=2, ge=0)
    # WebSocket authority (README: "WebSocket"): connection_init must come within this time
    # (both protocols); open sockets per client IP and server process; how often a signed-in
    # socket re-checks its credential besides the revocation broadcast and its token's expiry
    ws_connection_init_timeout_seconds: float = Field(default=10, gt=0)
    ws_max_connections_per_client: int = Field(default=20, ge=1)
    ws_auth_recheck_seconds: float = Field(default=30, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _public_url_follows_host_and_port(cls, data: Any) -> Any:
        """Links in emails point at the server itself unless PUBLIC_URL says otherwise."""
        if not isinstance(data, dict) or data.get("public_url"):
            return data
        host = data.get("host") or cls.model_fields["host"].default
        port = data.get("port") or cls.model_fields["port"].default
        return {**data, "public_url": f"http://{host}:{port}"}

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
        if self.smtp_url is None or not self.smtp_url.get_secret_value().strip():
            raise InsecureSettings(
                "SMTP_URL is required in production: without it mails (with their "
                "verification and reset links) would only be written to the log"
            )
        for name, prefixes in _STRIPE_SECRETS.items():
            value = getattr(self, name).get_secret_value().strip()
            if "placeholder" in value or not value.startswith(prefixes):
                raise InsecureSettings(f"{name.upper()} must be set to a real Stripe secret")
        if self.stripe_api_base and not self.stripe_api_base.startswith("https://"):
            raise InsecureSettings("STRIPE_API_BASE must be an https:// URL in production")
        if any(not url.startswith("https://") for url in self.exchange_api_bases.values()):
            raise InsecureSettings("EXCHANGE_API_BASES must be https:// URLs in production")
        if self.exchange_master_keys is None:
            raise InsecureSettings(
                "EXCHANGE_MASTER_KEYS is required in production (KEY_ID:BASE64 of 32 random"
                " bytes): it seals the API secrets of connected exchange accounts"
            )
        for key in self.exchange_key_ring()[1].values():
            if len(set(key)) < _MIN_DISTINCT_KEY_BYTES:
                raise InsecureSettings("EXCHANGE_MASTER_KEYS holds a placeholder key")
        return self

    @model_validator(mode="after")
    def _exchange_key_ring_is_well_formed(self) -> Settings:
        self.exchange_key_ring()  # raises ValueError on a malformed ring
        return self

    def exchange_key_ring(self) -> tuple[str, dict[str, bytes]]:
        """(the active key id, every key by id) of EXCHANGE_MASTER_KEYS; unset (never in
        production): one local key, ``local``, derived from SECRET_KEY."""
        if self.exchange_master_keys is None:
            derived = hmac.new(
                self.secret_key.get_secret_value().encode(), _LOCAL_KEY_LABEL, hashlib.sha256
            ).digest()
            return "local", {"local": derived}
        keys: dict[str, bytes] = {}
        for entry in self.exchange_master_keys.get_secret_value().split(","):
            key_id, _, encoded = entry.strip().partition(":")
            try:
                key = base64.b64decode(encoded, validate=True)
            except ValueError:
                key = b""
            if not _KEY_ID.fullmatch(key_id) or len(key) != 32 or key_id in keys:
                raise ValueError(
                    "EXCHANGE_MASTER_KEYS: each entry is KEY_ID:BASE64 with a distinct id"
                    " (letters, digits, . _ -) and 32 bytes of key"
                )
            keys[key_id] = key
        active = self.exchange_master_key_id or next(iter(keys))
        if active not in keys:
            raise ValueError("EXCHANGE_MASTER_KEY_ID names no key of EXCHANGE_MASTER_KEYS")
        return active, keys

    @model_validator(mode="after")
    def _allowlist_needs_a_manifest(self) -> Settings:
        if self.trusted_documents_only and self.trusted_documents_manifest is None:
            raise ValueError("TRUSTED_DOCUMENTS_ONLY needs TRUSTED_DOCUMENTS_MANIFEST")
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
