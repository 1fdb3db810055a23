"""Migrations: up, down and up again on fresh databases, no drift from the models, and the
documented `alembic upgrade head` followed by an app start (which migrates itself)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from api import migrate
from api.config import Settings
from api.db import Base, make_engine
from tests.servers import POSTGRES_URL, TEST_SECRET, LiveServer, postgres_database
from tests.support import unique

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MODEL_TABLES = {
    "users",
    "auth_sessions",
    "items",
    "memberships",
    "messages",
    "used_tickets",
    "item_states",
    "state_changes",
}


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database (entered outside the event loop: postgres uses asyncio.run)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'migrations.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("TEST_POSTGRES_URL is not set")
    with postgres_database() as url:
        yield url


def head_revision() -> str:
    head = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
    assert head is not None
    return head


async def tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


def _diff(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return compare_metadata(context, Base.metadata)  # type: ignore[no-any-return]


async def schema_drift(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        return await conn.run_sync(_diff)


# --- upgrade, downgrade, upgrade ------------------------------------------------------------


async def test_upgrade_downgrade_upgrade_matches_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert await tables(engine) == set()

        await migrate.upgrade(engine)
        assert await tables(engine) == MODEL_TABLES | {"alembic_version"}
        assert await current_revision(engine) == head_revision()

        await migrate.downgrade(engine, "base")
        assert await tables(engine) == {"alembic_version"}
        assert await current_revision(engine) is None

        await migrate.upgrade(engine)
        assert await tables(engine) == MODEL_TABLES | {"alembic_version"}
        assert await current_revision(engine) == head_revision()
        assert await schema_drift(engine) == []

        # Upgrading an up-to-date database is a no-op.
        await migrate.upgrade(engine)
        assert await current_revision(engine) == head_revision()
    finally:
        await engine.dispose()


async def test_items_created_before_states_become_documents(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        await migrate.upgrade(engine, "0001")
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO users (id, username, password_hash, created_at)"
                    " VALUES ('u1', 'alice', 'x', CURRENT_TIMESTAMP)"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO items (id, name, owner_id, created_at, last_seq)"
                    " VALUES ('old', 'old item', 'u1', CURRENT_TIMESTAMP, 3)"
                )
            )
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            kind = await conn.scalar(text("SELECT kind FROM items WHERE id = 'old'"))
            row = (await conn.execute(text("SELECT version, state FROM item_states"))).one()
        assert kind == "document"
        assert tuple(row) == (0, "{}")
    finally:
        await engine.dispose()


def test_models_cover_every_migrated_table() -> None:
    assert set(Base.metadata.tables) == MODEL_TABLES


# --- the documented CLI, then the app ------------------------------------------------------


def alembic_cli(url: str, var_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url, "VAR_DIR": str(var_dir)}
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_upgrade_then_app_start_is_harmless(database_url: str, tmp_path: Path) -> None:
    done = alembic_cli(database_url, tmp_path, "upgrade", "head")
    assert done.returncode == 0, done.stderr

    engine = make_engine(database_url)
    try:
        assert asyncio.run(current_revision(engine)) == head_revision()
    finally:
        asyncio.run(engine.dispose())

    settings = Settings(database_url=database_url, secret_key=TEST_SECRET, var_dir=tmp_path)
    server = LiveServer(settings).start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            username = unique()
            creds = {"username": username, "password": "long enough password"}
            assert http.post("/auth/register", json=creds).status_code == 201
            token = http.post("/auth/token", data=creds).json()["access_token"]
            r = http.post(
                "/items", json={"name": "after cli"}, headers={"Authorization": f"Bearer {token}"}
            )
            assert r.status_code == 201, r.text
    finally:
        server.stop()
    assert not server.thread.is_alive()

    # Running the CLI again after the app migrated (and wrote data) is harmless too.
    again = alembic_cli(database_url, tmp_path, "upgrade", "head")
    assert again.returncode == 0, again.stderr
    current = alembic_cli(database_url, tmp_path, "current")
    assert current.returncode == 0, current.stderr
    assert head_revision() in current.stdout

    engine = make_engine(database_url)

    async def check() -> None:
        try:
            assert await schema_drift(engine) == []
            async with engine.connect() as conn:
                count = await conn.scalar(
                    text("SELECT count(*) FROM users WHERE username = :u"), {"u": username}
                )
            assert count == 1
        finally:
            await engine.dispose()

    asyncio.run(check())
