"""Command line: `python -m api serve|migrate` (also installed as `item-channels`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import uvicorn

from api import migrate
from api.config import ConfigError, Settings
from api.db import make_engine


def serve(args: argparse.Namespace) -> None:
    settings = Settings()
    try:
        settings.signing_key  # noqa: B018  (refuse to start on a bad key, before forking)
    except ConfigError as exc:
        sys.exit(str(exc))
    uvicorn.run(
        "api.main:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=args.proxy_headers,
        forwarded_allow_ips=args.forwarded_allow_ips,
        # The protocol's frame limit, enforced by the WebSocket parser itself (1009).
        ws_max_size=settings.max_message_bytes,
        # Small JSON frames gain little from permessage-deflate, and each compressed
        # socket holds ~100 KB of zlib state: off unless asked for.
        ws_per_message_deflate=settings.ws_compression,
        ws_ping_interval=settings.ws_ping_interval,
        ws_ping_timeout=settings.ws_ping_timeout,
        timeout_graceful_shutdown=settings.shutdown_grace,
    )


def run_migrations(args: argparse.Namespace) -> None:
    settings = Settings()

    async def go() -> None:
        url = settings.effective_database_url
        if url.startswith("sqlite"):
            settings.var_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(url)
        try:
            await migrate.upgrade(engine, args.revision)
        finally:
            await engine.dispose()

    asyncio.run(go())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="item-channels")
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

    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
