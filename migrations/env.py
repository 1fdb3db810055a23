"""Alembic environment: async engines, and a connection handed over by the app."""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from api.config import Settings
from api.db import Base, make_engine
from api.migrate import foreign_keys_off
from api.models import *  # noqa: F403  (registers every table on Base.metadata)

config = context.config
target_metadata = Base.metadata


def run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode rebuilds tables there.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async() -> None:
    settings = Settings()
    url = config.attributes.get("url") or settings.effective_database_url
    if url.startswith("sqlite"):
        settings.var_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url)
    async with engine.connect() as connection, foreign_keys_off(connection):
        await connection.run_sync(run_with)
        await connection.commit()
    await engine.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    # Called from api.migrate inside the running app, on its own connection.
    run_with(connection)
else:
    if config.config_file_name is not None and not config.attributes.get("quiet"):
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    asyncio.run(run_async())
