"""PostgreSQL: a writer's own asyncpg connection, used by one group-commit loop.

A lost connection fails the group in flight (its callers are told `unavailable`:
nothing was acknowledged) and the next group connects again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
# A group that takes longer has lost its server: fail it rather than hang the writer.
COMMAND_TIMEOUT = 30.0

T = TypeVar("T")


def asyncpg_dsn(url: str) -> str:
    """The SQLAlchemy URL as a libpq-style DSN for asyncpg."""
    _, sep, rest = url.partition("://")
    return f"postgresql://{rest}" if sep else url


class PostgresWriter:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: Any = None  # asyncpg.Connection

    async def open(self) -> None:
        try:
            await self._connection()
        except (OSError, asyncpg.PostgresError, TimeoutError):
            log.warning("the store is not reachable yet; retrying at the next group")

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(
                self._dsn, timeout=CONNECT_TIMEOUT, command_timeout=COMMAND_TIMEOUT
            )
        return self._conn

    async def run(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """`work(connection)`; a failure other than the server's refusal (which rolled
        back what it refused) leaves the connection in an unknown state: dropped."""
        conn = await self._connection()
        try:
            return await work(conn)
        except asyncpg.PostgresError:
            raise
        except BaseException:
            # Lost, timed out or cancelled mid-statement: start afresh.
            self._conn = None
            conn.terminate()
            raise
