"""Real servers for tests: uvicorn on a free loopback port, one per backend."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import uvicorn
from fastapi import FastAPI

from api.config import Settings
from api.main import create_app
from api.server import RequestLimits, protocol_with

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "")
TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"


@dataclass(frozen=True)
class Backend:
    """A storage + broker pair the whole suite runs against."""

    name: str
    database: str  # "sqlite" or "postgres"
    broker: str  # "memory" or "redis"


BACKENDS = [Backend("sqlite-memory", "sqlite", "memory")]
if POSTGRES_URL:
    BACKENDS.append(Backend("postgres-memory", "postgres", "memory"))
if POSTGRES_URL and REDIS_URL:
    BACKENDS.append(Backend("postgres-redis", "postgres", "redis"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _admin_dsn() -> str:
    return POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://").replace(
        "postgresql+psycopg://", "postgresql://"
    )


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one server, dropped afterwards."""
    name = f"ic_test_{uuid.uuid4().hex[:12]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(_admin_dsn())
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    # In a thread of its own: callers may be inside a running event loop.
    def execute(sql: str) -> None:
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, run(sql)).result()

    execute(f'CREATE DATABASE "{name}"')
    base, _, _ = POSTGRES_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def database_url(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "postgres":
        with postgres_database() as url:
            yield url
    else:
        yield f"sqlite+aiosqlite:///{tmp / 'test.db'}"


class LiveServer:
    """uvicorn serving `create_app(settings)` in a thread with its own event loop."""

    def __init__(self, settings: Settings, **uvicorn_options: Any) -> None:
        self.settings = settings
        self.app: FastAPI = create_app(settings)
        self.port = free_port()
        # The protocol `python -m api serve` runs, with this server's settings.
        uvicorn_options.setdefault("http", protocol_with(RequestLimits.from_settings(settings)))
        self.config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="info",
            lifespan="on",
            **uvicorn_options,
        )
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def settings_for(backend: Backend, db_url: str, var_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "broker_url": REDIS_URL if backend.broker == "redis" else "memory://",
        "secret_key": TEST_SECRET,
        "var_dir": var_dir,
        # Shared servers serve many tests from one address and user: limits are tested
        # on servers of their own.
        "login_failures_per_address": 100_000,
        "registrations_per_address": 100_000,
        "password_hash_queue": 100_000,
        # Servers of the suite share one Redis: their counts must not add up.
        "rate_limit_key_prefix": f"ic-test-{uuid.uuid4().hex[:12]}",
        # Cheap hashes keep the suite fast; the production cost is the default.
        "password_hash_time_cost": 1,
        "password_hash_memory_kib": 1024,
        "max_sockets_per_user": 100_000,
        "ws_publish_rate": 100_000,
        "ws_publish_burst": 100_000,
    }
    values.update(overrides)
    return Settings(**values)


@contextmanager
def live_server(backend: Backend, tmp: Path, **overrides: Any) -> Iterator[LiveServer]:
    uvicorn_options = overrides.pop("uvicorn_options", {})
    with database_url(backend.database, tmp) as url:
        server = LiveServer(settings_for(backend, url, tmp, **overrides), **uvicorn_options)
        server.start()
        try:
            yield server
        finally:
            server.stop()
