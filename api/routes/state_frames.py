"""State changes over a channel: `patch` and `action` frames, and `?state=1`.

The socket's session hands these frames here (parsed with the protocol's other frames);
each change is queued on the state writer without waiting, and answered once stored or
refused, in the order the frames came: `ack` with the new version, or an `error` frame
(`conflict`, `illegal`, `bad_request`, `forbidden`, `too_large`), the socket staying open.
On `/ws` the answers name the item (`item_id`), and a change of an item the user has no
access to is `forbidden` (an item socket closes with 1008 `forbidden` instead).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any, Literal

import orjson
from fastapi import WebSocket
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api.auth.credentials import Principal
from api.errors import Forbidden, NotFound
from api.items.state import Change, Outcome, StoredState
from api.kinds import Refusal
from api.realtime import protocol
from api.realtime.outbox import Outbox
from api.runtime import Runtime

# Changes of one socket waiting for their group commit before it stops reading.
MAX_INFLIGHT = 256
FORBIDDEN_DETAIL = "readers cannot change the state"
NO_ACCESS_DETAIL = "no such item, or no access to it"
RATE_DETAIL = "changing too fast; slow down"


class StateFrame(protocol._Frame):
    """The item's state: the snapshot after `ready` (no `sender`), then every change."""

    type: Literal["state"] = "state"
    item_id: str
    version: int
    state: dict[str, Any]
    sender: str | None = None


class StateAckFrame(protocol._Frame):
    """The answer to a `patch` or `action`: stored as this version."""

    type: Literal["ack"] = "ack"
    ref: str | None = None
    version: int


def wants_state(websocket: WebSocket) -> bool:
    """`?state=1`: the socket gets the state snapshot and every change. Any other value
    leaves it off, as for `batch`."""
    return websocket.query_params.get("state") == "1"


def ack_frame(ref: str | None, version: int, item_id: str | None = None) -> str:
    body: dict[str, object] = {"type": "ack"}
    if item_id is not None:
        body["item_id"] = item_id
    body["version"] = version
    if ref is not None:
        body["ref"] = ref
    return orjson.dumps(body).decode()


def change_of(frame: protocol.PatchFrame | protocol.ActionFrame) -> tuple[str, Any]:
    """The field of a `Change` and its value."""
    if isinstance(frame, protocol.PatchFrame):
        return "ops", frame.ops
    return "action", frame.action


class StateFrames:
    """The `patch` / `action` side of one socket (`names_items` on `/ws`)."""

    __slots__ = ("_inflight", "_names_items", "_outbox", "_principal", "_runtime")

    def __init__(
        self,
        runtime: Runtime,
        outbox: Outbox,
        principal: Callable[[], Principal],
        names_items: bool = False,
    ) -> None:
        self._runtime = runtime
        self._outbox = outbox
        self._principal = principal
        self._names_items = names_items
        self._inflight: deque[asyncio.Future[Outcome]] | None = None

    async def submit(self, item_id: str, frame: protocol.PatchFrame | protocol.ActionFrame) -> None:
        """Queue the change; it is answered once stored or refused."""
        inflight = self._inflight
        if inflight is None:
            inflight = self._inflight = deque()
        while inflight and inflight[0].done():
            inflight.popleft()
        if len(inflight) >= MAX_INFLIGHT:
            await asyncio.wait([inflight[0]])  # backpressure: stop reading a while
        principal = self._principal()
        field, value = change_of(frame)
        future = self._runtime.states.submit(
            Change(item_id, principal.user_id, principal.username, field, value)
        )
        future.add_done_callback(partial(self._answer, item_id, frame.ref))
        inflight.append(future)

    async def refuse(self, code: str, detail: str, ref: str | None, item_id: str) -> None:
        """An answer that needs no store: after those of the changes in flight."""
        await self.settle()
        self._error(code, detail, ref, item_id)

    async def settle(self) -> None:
        if self._inflight:
            await asyncio.wait(list(self._inflight))
            self._inflight = None

    def _answer(self, item_id: str, ref: str | None, future: asyncio.Future[Outcome]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            self._error(
                protocol.UNAVAILABLE, "the change was not stored; send it again", ref, item_id
            )
            return
        outcome = future.result()
        if isinstance(outcome, StoredState):
            named = item_id if self._names_items else None
            self._outbox.push(0, ack_frame(ref, outcome.version, named))
        elif isinstance(outcome, Refusal):
            self._error(outcome.code, outcome.reason, ref, item_id)
        elif isinstance(outcome, Forbidden):
            self._error(protocol.FORBIDDEN, FORBIDDEN_DETAIL, ref, item_id)
        elif isinstance(outcome, NotFound):
            if self._names_items:
                self._error(protocol.FORBIDDEN, NO_ACCESS_DETAIL, ref, item_id)
            else:
                self._outbox.request_close(protocol.POLICY_VIOLATION, protocol.FORBIDDEN)

    def _error(self, code: str, detail: str, ref: str | None, item_id: str) -> None:
        named = item_id if self._names_items else None
        self._outbox.push(0, protocol.error_frame(code, detail, ref, named))


ASYNCAPI_SENT = (StateFrame, StateAckFrame)
ASYNCAPI_RECEIVED = (protocol.PatchFrame, protocol.ActionFrame)


def with_state_frames(document: dict[str, Any]) -> dict[str, Any]:
    """The channel's AsyncAPI document with the state frames and `?state=1` added."""
    ref = "#/components/schemas/{model}"
    models: list[type[BaseModel]] = [*ASYNCAPI_SENT, *ASYNCAPI_RECEIVED]
    _, schema = models_json_schema([(m, "serialization") for m in models], ref_template=ref)
    components = document["components"]
    components["schemas"].update(schema.get("$defs", {}))
    channel = document["channels"]["item"]
    channel["bindings"]["ws"]["query"]["properties"]["state"] = {
        "type": "string",
        "description": "`1`: the state snapshot after `ready`, then a `state` frame per change.",
    }
    for model in models:
        name = model.__name__.removesuffix("Frame")
        components["messages"][name] = {
            "name": name,
            "title": name,
            "summary": (model.__doc__ or name).strip().splitlines()[0],
            "contentType": "application/json",
            "payload": {"$ref": ref.format(model=model.__name__)},
        }
        channel["messages"][name] = {"$ref": f"#/components/messages/{name}"}
        operation = "receiveItemFrames" if model in ASYNCAPI_SENT else "sendItemFrames"
        document["operations"][operation]["messages"].append(
            {"$ref": f"#/channels/item/messages/{name}"}
        )
    return document
