"""State changes over a channel: `patch` and `action` frames, and `?state=1`.

The item channel hands these frames here (its own frame types are parsed first); each
change is queued on the state writer without waiting, and answered once stored or
refused, in the order the frames came: `ack` with the new version, or an `error` frame
(`conflict`, `illegal`, `bad_request`, `forbidden`, `too_large`), the socket staying open.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Annotated, Any, Literal, Protocol

import orjson
from fastapi import WebSocket
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
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
Ref = Annotated[str, Field(max_length=64)]


class _Frame(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class PatchFrame(_Frame):
    """Apply JSON Patch operations to a `document` item's state (owner and writers)."""

    type: Literal["patch"]
    ops: list[Any]
    ref: Ref | None = None


class ActionFrame(_Frame):
    """Make a move in a game item, such as `{"move": 4}` in `tictactoe`."""

    type: Literal["action"]
    action: Any
    ref: Ref | None = None


class StateFrame(_Frame):
    """The item's state: the snapshot after `ready` (no `sender`), then every change."""

    type: Literal["state"] = "state"
    item_id: str
    version: int
    state: dict[str, Any]
    sender: str | None = None


class StateAckFrame(_Frame):
    """The answer to a `patch` or `action`: stored as this version."""

    type: Literal["ack"] = "ack"
    ref: str | None = None
    version: int


StateClientFrame = Annotated[PatchFrame | ActionFrame, Field(discriminator="type")]
_parse: TypeAdapter[PatchFrame | ActionFrame] = TypeAdapter(StateClientFrame)
TYPES = frozenset({"patch", "action"})


def wants_state(websocket: WebSocket) -> bool:
    """`?state=1`: the socket gets the state snapshot and every change. Any other value
    leaves it off, as for `batch`."""
    return websocket.query_params.get("state") == "1"


def ack_frame(ref: str | None, version: int) -> str:
    body: dict[str, object] = {"type": "ack", "version": version}
    if ref is not None:
        body["ref"] = ref
    return orjson.dumps(body).decode()


class TakesToken(Protocol):
    def take(self) -> bool: ...


class StateFrames:
    """The `patch` / `action` side of one socket."""

    __slots__ = ("_bucket", "_inflight", "_outbox", "_principal", "_runtime")

    def __init__(
        self,
        runtime: Runtime,
        outbox: Outbox,
        principal: Callable[[], Principal],
        bucket: TakesToken,
    ) -> None:
        self._runtime = runtime
        self._outbox = outbox
        self._principal = principal
        self._bucket = bucket
        self._inflight: deque[asyncio.Future[Outcome]] | None = None

    async def handle(self, text: str) -> bool:
        """Act on `text` if it is a `patch` or `action` frame; False if it is not one."""
        try:
            raw = orjson.loads(text)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(raw, dict) or raw.get("type") not in TYPES:
            return False
        ref = raw.get("ref")
        valid_ref = ref if isinstance(ref, str) and len(ref) <= 64 else None
        try:
            frame = _parse.validate_python(raw)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "frame"
            await self._answer_now(protocol.BAD_REQUEST, f"{where}: {first['msg']}", valid_ref)
            return True
        if not self._bucket.take():
            await self._answer_now(protocol.RATE_LIMITED, "changing too fast; slow down", frame.ref)
            return True
        await self._submit(frame)
        return True

    async def _submit(self, frame: PatchFrame | ActionFrame) -> None:
        inflight = self._inflight
        if inflight is None:
            inflight = self._inflight = deque()
        while inflight and inflight[0].done():
            inflight.popleft()
        if len(inflight) >= MAX_INFLIGHT:
            await asyncio.wait([inflight[0]])  # backpressure: stop reading a while
        principal = self._principal()
        field, value = (
            ("ops", frame.ops) if isinstance(frame, PatchFrame) else ("action", frame.action)
        )
        future = self._runtime.states.submit(
            Change(self._outbox.item_id, principal.user_id, principal.username, field, value)
        )
        future.add_done_callback(partial(self._answer, frame.ref))
        inflight.append(future)

    async def _answer_now(self, code: str, detail: str, ref: str | None) -> None:
        """An answer that needs no store: after those of the changes in flight."""
        if self._inflight:
            await asyncio.wait(list(self._inflight))
            self._inflight = None
        self._outbox.push(0, protocol.error_frame(code, detail, ref))

    def _answer(self, ref: str | None, future: asyncio.Future[Outcome]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            self._error(protocol.UNAVAILABLE, "the change was not stored; send it again", ref)
            return
        outcome = future.result()
        if isinstance(outcome, StoredState):
            self._outbox.push(0, ack_frame(ref, outcome.version))
        elif isinstance(outcome, Refusal):
            self._error(outcome.code, outcome.reason, ref)
        elif isinstance(outcome, Forbidden):
            self._error(protocol.FORBIDDEN, FORBIDDEN_DETAIL, ref)
        elif isinstance(outcome, NotFound):
            self._outbox.request_close(protocol.POLICY_VIOLATION, protocol.FORBIDDEN)

    def _error(self, code: str, detail: str, ref: str | None) -> None:
        self._outbox.push(0, protocol.error_frame(code, detail, ref))


ASYNCAPI_SENT = (StateFrame, StateAckFrame)
ASYNCAPI_RECEIVED = (PatchFrame, ActionFrame)


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
