"""Baseline 1: the FastAPI tutorial's `ConnectionManager` on uvicorn.

A list of sockets per item and `await send_text` for each one, as in
https://fastapi.tiangolo.com/advanced/websockets/#handling-disconnections-and-multiple-clients
— with the service's frames and no authentication or storage: a `ready` frame on connect;
a `publish` (over the socket, or `POST /items/{item_id}/messages`) gets an in-memory seq,
is broadcast as a `message` frame (the sender's socket included) and is answered with an
`ack` (or 201). `GET /healthz` answers 200.

    python bench/baselines/tutorial.py --port 8002
"""

from __future__ import annotations

import argparse
import resource
from datetime import UTC, datetime
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, Request, Response, WebSocket, WebSocketDisconnect

MAX_MESSAGE_BYTES = 65536


class ConnectionManager:
    def __init__(self) -> None:
        self.active_connections: list[WebSocket] = []
        self.seq = 0

    async def connect(self, websocket: WebSocket) -> None:
        await websocket.accept()
        self.active_connections.append(websocket)

    def disconnect(self, websocket: WebSocket) -> None:
        self.active_connections.remove(websocket)

    async def send_personal_message(self, message: str, websocket: WebSocket) -> None:
        await websocket.send_text(message)

    async def broadcast(self, message: str) -> None:
        for connection in self.active_connections:
            await connection.send_text(message)


app = FastAPI()
managers: dict[str, ConnectionManager] = {}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def publish(item_id: str, data: Any) -> dict[str, Any]:
    manager = managers.setdefault(item_id, ConnectionManager())
    manager.seq += 1
    message = {
        "item_id": item_id,
        "seq": manager.seq,
        "sender": "anonymous",
        "data": data,
        "ts": now_iso(),
    }
    await manager.broadcast(orjson.dumps({"type": "message", **message}).decode())
    return message


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/items/{item_id}/messages", status_code=201)
async def post_message(item_id: str, request: Request) -> Response:
    body = orjson.loads(await request.body())
    message = await publish(item_id, body.get("data"))
    return Response(orjson.dumps(message), status_code=201, media_type="application/json")


@app.websocket("/items/{item_id}/ws")
async def websocket_endpoint(websocket: WebSocket, item_id: str) -> None:
    manager = managers.setdefault(item_id, ConnectionManager())
    await manager.connect(websocket)
    ready = {"type": "ready", "item_id": item_id, "last_seq": manager.seq}
    await manager.send_personal_message(orjson.dumps(ready).decode(), websocket)
    try:
        while True:
            frame = orjson.loads(await websocket.receive_text())
            if frame.get("type") == "publish":
                message = await publish(item_id, frame.get("data"))
                ack = {"type": "ack", "ref": frame.get("ref"), "seq": message["seq"]}
                await manager.send_personal_message(orjson.dumps(ack).decode(), websocket)
            elif frame.get("type") == "ping":
                await manager.send_personal_message('{"type":"pong"}', websocket)
    except WebSocketDisconnect:
        manager.disconnect(websocket)


def raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    args = parser.parse_args()
    raise_nofile()
    # The service's settings for `python -m api serve` (README defaults).
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        ws_max_size=MAX_MESSAGE_BYTES,
        ws_per_message_deflate=False,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
    )


if __name__ == "__main__":
    main()
