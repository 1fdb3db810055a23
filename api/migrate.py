"""Apply Alembic migrations from inside the app (and from the command line)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

# The repository's top-level migrations/, installed as this package (see pyproject.toml).
MIGRATIONS_PACKAGE = "api.migrations"
# Any constant will do: every worker takes the same lock before migrating.
MIGRATION_LOCK = 715_004_213


def alembic_config(url: str | None = None) -> Config:
    """The installed package's Alembic configuration.

    The project root's alembic.ini only adds logging for the `alembic` command; the
    service needs just where its scripts are, found from the package, not the source tree.
    """
    cfg = Config()
    cfg.set_main_option("script_location", str(files(MIGRATIONS_PACKAGE)))
    cfg.set_main_option("path_separator", "os")
    if url is not None:
        cfg.attributes["url"] = url
    cfg.attributes["quiet"] = True
    return cfg


async def upgrade(engine: AsyncEngine, revision: str = "head") -> str | None:
    """Migrate on a connection of the app's engine; workers starting together queue up.

    Returns the revision the database is at afterwards."""
    async with engine.connect() as conn, foreign_keys_off(conn), conn.begin():
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        await conn.run_sync(_run, "upgrade", revision)
        return await conn.run_sync(_current_revision)


async def downgrade(engine: AsyncEngine, revision: str = "base") -> None:
    async with engine.connect() as conn, foreign_keys_off(conn), conn.begin():
        await conn.run_sync(_run, "downgrade", revision)


@asynccontextmanager
async def foreign_keys_off(conn: AsyncConnection) -> AsyncIterator[None]:
    """On SQLite, foreign keys unenforced while migrating: batch mode rebuilds a table by
    dropping it, and with them enforced the drop would delete, by cascade, every row that
    refers to it (all items, with `users` rebuilt). SQLite ignores the pragma inside a
    transaction, so it is set before one begins, and back after it ends."""
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        await conn.commit()
    try:
        yield
    finally:
        if sqlite:
            await conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            await conn.commit()


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _run(connection: Connection, direction: str, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    getattr(command, direction)(cfg, revision)
