"""`python -m api.client listen|publish`: follow or write an item channel from a shell."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import os
import sys
from collections.abc import Sequence

from api.client.errors import ClientError, NotRecovered
from api.client.http import Client

DEFAULT_URL = "http://127.0.0.1:8000"


def _credentials(p: argparse.ArgumentParser, defaults: bool) -> None:
    """The connection options, accepted before and after the command. After it, they
    default to SUPPRESS, so that argparse keeps any value given before it."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    url = os.environ.get("ITEM_CHANNELS_URL", DEFAULT_URL)
    p.add_argument("--url", default=default(url), help="server URL")
    p.add_argument(
        "--token", default=default(None), help="access token (default: $ITEM_CHANNELS_TOKEN)"
    )
    p.add_argument(
        "--username",
        default=default(os.environ.get("ITEM_CHANNELS_USERNAME")),
        help="log in as this user; the password is read from $ITEM_CHANNELS_PASSWORD "
        "or the terminal",
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="item-channels", description=__doc__)
    _credentials(p, defaults=True)
    commands = p.add_subparsers(dest="command", required=True)
    listen = commands.add_parser("listen", help="print one JSON line per message")
    listen.add_argument("item_id")
    listen.add_argument("--since", type=int, help="replay the messages after this seq")
    _credentials(listen, defaults=False)
    publish = commands.add_parser("publish", help="publish a JSON value, print its seq")
    publish.add_argument("item_id")
    publish.add_argument("data", help='a JSON value, e.g. \'{"text": "hi"}\'')
    _credentials(publish, defaults=False)
    return p


async def _authenticate(client: Client, args: argparse.Namespace) -> None:
    token = args.token or os.environ.get("ITEM_CHANNELS_TOKEN")
    if token:
        client.tokens.set(token)
    elif args.username:
        password = os.environ.get("ITEM_CHANNELS_PASSWORD") or getpass.getpass("password: ")
        await client.login(args.username, password)
    else:
        raise SystemExit("give --token, $ITEM_CHANNELS_TOKEN or --username")


async def listen(client: Client, item_id: str, since: int | None) -> None:
    async with client.channel(item_id, since=since) as channel:
        while True:
            try:
                async for message in channel:
                    print(json.dumps(message, ensure_ascii=False), flush=True)
            except NotRecovered as gap:
                print(f"item-channels: {gap}", file=sys.stderr, flush=True)


async def publish(client: Client, item_id: str, data: object) -> None:
    async with client.channel(item_id) as channel:
        print(await channel.publish(data), flush=True)


async def run(args: argparse.Namespace) -> None:
    async with Client(args.url) as client:
        await _authenticate(client, args)
        if args.command == "listen":
            await listen(client, args.item_id, args.since)
        else:
            await publish(client, args.item_id, args.data)


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command == "publish":
        try:
            args.data = json.loads(args.data)
        except ValueError as exc:
            raise SystemExit(f"item-channels: DATA is not JSON: {exc}") from None
    if args.command == "listen" and args.since is not None and args.since < 0:
        raise SystemExit("item-channels: --since must be a non-negative integer")
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        pass
    except ClientError as exc:
        raise SystemExit(f"item-channels: {exc}") from None
    with contextlib.suppress(BrokenPipeError):
        sys.stdout.flush()
