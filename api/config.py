"""Settings, read from the environment (and an optional `.env` file)."""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIN_SECRET_BYTES = 32
SECRET_KEY_FILE = "secret_key"  # noqa: S105 (a file name)


class ConfigError(RuntimeError):
    """The configuration cannot work; the message says what to change."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    database_url: str = ""
    broker_url: str = "memory://"
    secret_key: SecretStr | None = None
    allowed_origins: Annotated[tuple[str, ...], NoDecode] = ()
    access_token_ttl: int = Field(900, ge=1)
    session_ttl: int = Field(604800, ge=1)
    ws_ticket_ttl: int = Field(60, ge=1)
    max_message_bytes: int = Field(65536, ge=64, le=16 * 1024 * 1024)
    max_state_bytes: int = Field(65536, ge=64, le=16 * 1024 * 1024)

    # Beyond the contract's variables (documented in the README).
    var_dir: Path = Path("var")
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    jwt_leeway: int = Field(0, ge=0, le=300)
    auto_migrate: bool = True
    ws_queue_size: int = Field(1024, ge=1)
    message_retention: int = Field(0, ge=0)
    # Versions of each item's state kept for deliveries that missed some (not an archive).
    state_history: int = Field(1000, ge=1)
    # SQLite durability (see api/items/sqlite_store.py): NORMAL survives a process crash,
    # FULL a power cut too, at one fsync per commit.
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    gap_check_interval: float = Field(1.0, gt=0)
    log_json: bool = False
    # FastAPI's native OpenTelemetry (spans, metrics, logs), for an SDK the deployment
    # configures. Off, requests and handshakes skip FastAPI's per-call provider check.
    opentelemetry: bool = False
    # Argon2id cost: lower only where hashing time matters more than resistance (tests).
    password_hash_time_cost: int = Field(3, ge=1, le=20)
    password_hash_memory_kib: int = Field(65536, ge=8, le=4 * 1024 * 1024)
    # Sessions and item access are cached this long (seconds) for handshakes and
    # token-authenticated requests; revocations evict at once. 0 disables the caches.
    auth_cache_ttl: float = Field(5.0, ge=0, le=300)
    # Abuse limits (see the README's "Limits").
    ws_publish_rate: float = Field(100.0, gt=0)
    ws_publish_burst: int = Field(200, ge=1)
    max_sockets_per_user: int = Field(64, ge=1)
    max_sockets_per_item: int = Field(20000, ge=1)
    # Item subscriptions one `/ws` socket may hold at once.
    max_subscriptions: int = Field(100, ge=1)
    # `refresh` frames per second per socket on average, and the burst allowed.
    ws_refresh_rate: float = Field(1.0, gt=0)
    ws_refresh_burst: int = Field(10, ge=1)
    # Presence changes on an item are announced once per tick, as their net change.
    presence_tick: float = Field(0.1, gt=0, le=10)
    login_failures_per_username: int = Field(5, ge=1)
    login_failures_per_address: int = Field(50, ge=1)
    login_failure_window: int = Field(60, ge=1)
    max_request_bytes: int = Field(1024 * 1024, ge=1024)
    # Limits on the work an unauthenticated client can cause (README, "Limits").
    registrations_per_address: int = Field(20, ge=1)
    registration_window: int = Field(3600, ge=1)
    password_hash_concurrency: int = Field(0, ge=0)  # 0: one per CPU
    password_hash_queue: int = Field(32, ge=0)
    rate_limit_key_prefix: str = Field("ic-limits", min_length=1, max_length=64)
    max_request_head_bytes: int = Field(16384, ge=4096, le=1024 * 1024)
    request_head_timeout: float = Field(10.0, gt=0)
    request_body_timeout: float = Field(30.0, gt=0)
    max_connections: int = Field(0, ge=0)  # per process; 0: the open-file limit less 128
    max_history_page_bytes: int = Field(4 * 1024 * 1024, ge=4096)
    # Host names the service answers to (`Host` header; `*.example.com` allowed); empty:
    # any. Without ALLOWED_ORIGINS the allowed origin follows the Host header.
    trusted_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    # Server options used by `python -m api serve`.
    ws_compression: bool = False
    ws_ping_interval: float = Field(20.0, gt=0)
    ws_ping_timeout: float = Field(20.0, gt=0)
    shutdown_grace: float = Field(10.0, gt=0)
    # Freeze the startup's objects and collect less often (see api/collector.py).
    tune_gc: bool = True

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(o.strip().rstrip("/") for o in value.split(",") if o.strip())
        return value

    @field_validator("trusted_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(h.strip().lower() for h in value.split(",") if h.strip())
        return value

    @field_validator("trusted_hosts")
    @classmethod
    def _check_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for host in value:
            if "*" in host[1:] or (
                host.startswith("*") and host != "*" and not host.startswith("*.")
            ):
                raise ValueError(f"{host!r}: a wildcard is only allowed as '*.example.com'")
        return value

    @cached_property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.var_dir / 'item-channels.db'}"

    @cached_property
    def signing_key(self) -> str:
        """The JWT key: configured, or generated once and kept in `var_dir`."""
        if self.secret_key is not None:
            key = self.secret_key.get_secret_value()
        else:
            key = _load_or_create_key(self.var_dir / SECRET_KEY_FILE)
        # RFC 7518: an HMAC key at least as long as the hash output.
        minimum = max(MIN_SECRET_BYTES, int(self.jwt_algorithm[2:]) // 8)
        if len(key.encode()) < minimum:
            raise ConfigError(
                f"SECRET_KEY must be at least {minimum} bytes long for {self.jwt_algorithm}; "
                "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(64))'"
            )
        return key


def _load_or_create_key(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(64))
    # link() is atomic and refuses to overwrite: workers starting together share one key.
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text().strip()
