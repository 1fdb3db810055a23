"""Baseline 2: a raw `websockets` server fanning out with `broadcast()` — the pure-Python ceiling.

The service's frames without authentication or storage: a `ready` frame on connect; a
`publish` gets an in-memory seq, goes to every socket on the item (the sender's included)
as one `message` frame written with `broadcast()`, and is answered with an `ack`.
`GET /healthz` answers 200. There is no REST publish.

    python bench/baselines/raw.py --port 8001
"""

from __future__ import annotations

import argparse
import asyncio
import resource
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

MAX_MESSAGE_BYTES = 65536


@dataclass(eq=False)
class Room:
    sockets: set[ServerConnection] = field(default_factory=set)
    seq: int = 0


rooms: dict[str, Room] = {}


def item_of(path: str) -> str:
    parts = path.partition("?")[0].strip("/").split("/")
    if len(parts) == 3 and parts[0] == "items" and parts[2] == "ws":
        return parts[1]
    return "default"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def health(connection: ServerConnection, request: Request) -> Response | None:
    if request.path == "/healthz":
        return connection.respond(HTTPStatus.OK, "ok\n")
    return None


async def handler(ws: ServerConnection) -> None:
    item_id = item_of(ws.request.path if ws.request else "/")
    room = rooms.setdefault(item_id, Room())
    await ws.send(
        orjson.dumps({"type": "ready", "item_id": item_id, "last_seq": room.seq}).decode()
    )
    room.sockets.add(ws)
    try:
        async for text in ws:
            frame: dict[str, Any] = orjson.loads(text)
            if frame.get("type") == "publish":
                room.seq += 1
                message = {
                    "type": "message",
                    "item_id": item_id,
                    "seq": room.seq,
                    "sender": "anonymous",
                    "data": frame.get("data"),
                    "ts": now_iso(),
                }
                broadcast(room.sockets, orjson.dumps(message).decode())
                ack = {"type": "ack", "ref": frame.get("ref"), "seq": room.seq}
                await ws.send(orjson.dumps(ack).decode())
            elif frame.get("type") == "ping":
                await ws.send('{"type":"pong"}')
    except ConnectionClosed:
        pass
    finally:
        room.sockets.discard(ws)


async def run(host: str, port: int) -> None:
    async with serve(
        handler,
        host,
        port,
        process_request=health,
        compression=None,
        max_size=MAX_MESSAGE_BYTES,
        ping_interval=20,
        ping_timeout=20,
        backlog=2048,  # uvicorn's default, as for the service
    ) as server:
        await server.serve_forever()


def raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    raise_nofile()
    try:
        import uvloop  # the event loop uvicorn picks for the service, when installed
    except ImportError:
        asyncio.run(run(args.host, args.port))
    else:
        uvloop.run(run(args.host, args.port))


if __name__ == "__main__":
    main()
