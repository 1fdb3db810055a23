"""Command line: `python -m api serve|migrate|check-config|...` (installed as `item-channels`).

`listen` and `publish` belong to the Python client (`api.client.cli`), which this command
hands them to, so that the installed `item-channels` offers both sides."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import math
import sys
from collections.abc import Awaitable, Callable, Sequence

import uvicorn
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from api import migrate
from api.auth import sessions, users
from api.auth.security import ACCESS, TokenCodec, configure_password_hashing
from api.check_config import check_config, startup_problems
from api.config import ConfigError, Settings
from api.db import make_engine, make_session_factory, prepare_sqlite
from api.errors import Conflict
from api.routes.schemas import NewCredentials
from api.server import PROTOCOL
from api.startup import origin_warning, raise_fd_limit


def serve(args: argparse.Namespace) -> None:
    if problems := startup_problems():  # one line each, not a traceback
        sys.exit("\n".join(problems))
    settings = Settings()
    try:
        settings.signing_key  # noqa: B018  (refuse to start on a bad key, before forking)
    except ConfigError as exc:
        sys.exit(str(exc))
    warning = origin_warning(args.host, settings)
    if warning:
        print(f"WARNING:  {warning}", file=sys.stderr, flush=True)
    raise_fd_limit()  # before the workers start: they inherit it
    uvicorn.run(
        "api.main:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=args.proxy_headers,
        forwarded_allow_ips=args.forwarded_allow_ips,
        # Pinned, not "auto" (whose pick has changed between uvicorn releases): the
        # implementation the benchmarks measure, whose parser refuses an oversized
        # frame from its header, before reading its payload.
        ws="websockets-sansio",
        # The protocol's frame limit, enforced by the WebSocket parser itself (1009).
        ws_max_size=settings.max_message_bytes,
        # Small JSON frames gain little from permessage-deflate, and each compressed
        # socket holds ~100 KB of zlib state: off unless asked for.
        ws_per_message_deflate=settings.ws_compression,
        ws_ping_interval=settings.ws_ping_interval,
        ws_ping_timeout=settings.ws_ping_timeout,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace),
        # httptools with limits on request heads and connections (api/server.py).
        http=PROTOCOL,
    )


def run_migrations(args: argparse.Namespace) -> None:
    settings = Settings()

    async def go() -> None:
        url = settings.effective_database_url
        prepare_sqlite(url, settings.var_dir)
        engine = make_engine(url)
        try:
            reached = await migrate.upgrade(engine, args.revision)
        finally:
            await engine.dispose()
        print(f"database at revision {reached or 'base (empty)'}")

    asyncio.run(go())


async def _with_db(settings: Settings, work: Callable[[AsyncSession], Awaitable[str]]) -> str:
    url = settings.effective_database_url
    prepare_sqlite(url, settings.var_dir)
    engine = make_engine(url)
    try:
        if settings.auto_migrate:
            await migrate.upgrade(engine)
        async with make_session_factory(engine)() as db:
            return await work(db)
    finally:
        await engine.dispose()


def create_user(args: argparse.Namespace) -> None:
    settings = Settings()
    configure_password_hashing(settings.password_hash_time_cost, settings.password_hash_memory_kib)
    password = args.password or getpass.getpass("password: ")
    try:
        NewCredentials(username=args.username, password=password)
    except ValidationError as exc:
        sys.exit(f"invalid: {exc.errors(include_url=False)[0]['msg']}")

    async def work(db: AsyncSession) -> str:
        try:
            user = await users.register(db, args.username, password)
        except Conflict:
            sys.exit("username already taken")
        return user.id

    print(asyncio.run(_with_db(settings, work)))


def issue_token(args: argparse.Namespace) -> None:
    """Open a session for a user and print an access token of it (for scripts and tests)."""
    settings = Settings()
    ttl = args.ttl or settings.access_token_ttl

    async def work(db: AsyncSession) -> str:
        user = await users.get_by_username(db, args.username)
        if user is None:
            sys.exit("no such user")
        _, session = await sessions.open_session(db, user, max(ttl, settings.session_ttl))
        codec = TokenCodec(settings.signing_key, settings.jwt_algorithm, settings.jwt_leeway)
        token, _ = codec.encode(sub=user.id, sid=session.id, typ=ACCESS, ttl=ttl)
        return token

    print(asyncio.run(_with_db(settings, work)))


CLIENT_COMMANDS = ("listen", "publish")


def _client_command(argv: Sequence[str]) -> bool:
    """Whether the command named in argv is one of the client's (its options may come
    first, so the first word that names any command decides)."""
    server_commands = ("serve", "migrate", "check-config", "create-user", "issue-token")
    for word in argv:
        if word in CLIENT_COMMANDS:
            return True
        if word in server_commands:
            return False
    return False


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if _client_command(argv):
        from api.client import cli  # the client's dependencies only when asked for

        cli.main(argv)
        return
    parser = argparse.ArgumentParser(
        prog="item-channels",
        epilog="Also: `item-channels listen|publish ...` follow or write an item channel "
        "(see `item-channels listen --help`).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("serve", help="run the service")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--proxy-headers", action="store_true", help="trust X-Forwarded-*")
    p.add_argument("--forwarded-allow-ips", default="127.0.0.1")
    p.set_defaults(func=serve)

    p = commands.add_parser("migrate", help="apply database migrations")
    p.add_argument("revision", nargs="?", default="head")
    p.set_defaults(func=run_migrations)

    p = commands.add_parser(
        "check-config", help="check the settings, database and broker; non-zero on a problem"
    )
    p.set_defaults(func=lambda _: sys.exit(check_config()))

    p = commands.add_parser("create-user", help="register a user")
    p.add_argument("username")
    p.add_argument("--password", help="read from the terminal when omitted")
    p.set_defaults(func=create_user)

    p = commands.add_parser("issue-token", help="print an access token for a user")
    p.add_argument("username")
    p.add_argument("--ttl", type=int, default=0, help="seconds (default ACCESS_TOKEN_TTL)")
    p.set_defaults(func=issue_token)

    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
