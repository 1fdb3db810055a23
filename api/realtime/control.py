"""The control plane: revocation and eviction commands shared by every worker.

A command is applied where it is sent, at once, then published; every other worker
applies it when the broker brings it, and the sender skips its own echo. Listeners
(the hub closing sockets, the caches above evicting entries) are told of each command
once per process.

Every applied command advances this process's `epoch`. A socket's credentials are
checked at some epoch before it is registered; `revoked_since(epoch)` then names the
commands it may have missed in between. A revocation thus reaches every socket checked
before it, and none checked after it (a member added back is not locked out).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from api.realtime.broker import Broker

log = logging.getLogger(__name__)

CHANNEL = "control"
# Commands kept for sockets between their checks and their registration.
LOG_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class SessionRevoked:
    session_id: str


@dataclass(frozen=True, slots=True)
class MemberRevoked:
    item_id: str
    user_id: str


@dataclass(frozen=True, slots=True)
class RoleChanged:
    """Not a revocation (the sockets stay), but cached rights must be read again."""

    item_id: str
    user_id: str


@dataclass(frozen=True, slots=True)
class ItemDeleted:
    item_id: str


@dataclass(frozen=True, slots=True)
class Resync:
    """Local only: the broker was away, any command may have been missed."""


Command = SessionRevoked | MemberRevoked | RoleChanged | ItemDeleted | Resync
Listener = Callable[[Command], None]

_KINDS: dict[str, type[Command]] = {
    "session": SessionRevoked,
    "member": MemberRevoked,
    "role": RoleChanged,
    "item": ItemDeleted,
}
_NAMES = {kind: name for name, kind in _KINDS.items()}


def encode(command: Command, origin: str) -> bytes:
    return orjson.dumps({"op": _NAMES[type(command)], "origin": origin, **asdict(command)})


def decode(payload: bytes) -> tuple[str, Command]:
    """(origin, command); `ValueError` for anything else."""
    try:
        raw: Any = orjson.loads(payload)
        fields = dict(raw)
        kind = _KINDS[fields.pop("op")]
        origin = fields.pop("origin")
        command = kind(**fields)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError("not a control command") from exc
    if not isinstance(origin, str) or not all(isinstance(v, str) for v in fields.values()):
        raise ValueError("not a control command")
    return origin, command


class ControlPlane:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.origin = secrets.token_hex(8)
        self.epoch = 0
        self._log: deque[tuple[int, Command]] = deque(maxlen=LOG_SIZE)
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._receive_forever(), name="control")
        await self._ready.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def send(self, command: Command) -> None:
        """Apply here at once, then on every other worker."""
        self.apply(command)
        await self.broker.publish(CHANNEL, encode(command, self.origin))

    def apply(self, command: Command) -> None:
        self.epoch += 1
        self._log.append((self.epoch, command))
        for listener in self._listeners:
            try:
                listener(command)
            except Exception:
                log.exception("control listener failed")

    def revoked_since(self, epoch: int) -> list[Command] | None:
        """The commands applied after `epoch`; None when they are no longer all known."""
        if epoch >= self.epoch:
            return []
        if not self._log or self._log[0][0] > epoch + 1:
            return None
        # Epochs in the log are consecutive: skip to the first one after `epoch`.
        start = epoch + 1 - self._log[0][0]
        return [command for _, command in itertools.islice(self._log, start, None)]

    async def _receive_forever(self) -> None:
        async with self.broker.subscribe(CHANNEL) as sub:
            self._ready.set()
            async for payload in sub:
                try:
                    origin, command = decode(payload)
                except ValueError:
                    log.warning("ignored a malformed control message")
                    continue
                if origin != self.origin:
                    self.apply(command)
