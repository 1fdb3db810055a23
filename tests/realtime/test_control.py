"""The control plane: one codec, listeners told once per process, the epoch."""

from __future__ import annotations

import asyncio

import pytest

from api.realtime import control
from api.realtime.control import (
    ControlPlane,
    ItemDeleted,
    MemberRevoked,
    RoleChanged,
    SessionRevoked,
)
from api.realtime.memory import MemoryBroker

COMMANDS = [
    SessionRevoked("s1"),
    MemberRevoked("item", "u1"),
    RoleChanged("item", "u1"),
    ItemDeleted("item"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: type(c).__name__)
def test_commands_survive_the_codec(command: control.Command) -> None:
    assert control.decode(control.encode(command, "worker-a")) == ("worker-a", command)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"[]",
        b"{}",
        b'{"op":"nope","origin":"a"}',
        b'{"op":"session","origin":"a"}',
        b'{"op":"session","origin":"a","session_id":5}',
        b'{"op":"item","item_id":"x"}',
    ],
)
def test_anything_else_is_refused(payload: bytes) -> None:
    with pytest.raises(ValueError):
        control.decode(payload)


async def test_each_worker_applies_a_command_once() -> None:
    broker = MemoryBroker()
    here, there = ControlPlane(broker), ControlPlane(broker)
    seen_here: list[control.Command] = []
    seen_there: list[control.Command] = []
    here.listen(seen_here.append)
    there.listen(seen_there.append)
    await here.start()
    await there.start()
    try:
        await here.send(SessionRevoked("s1"))
        # A barrier from the other side: once it is back here, the echo of s1 has been too.
        await there.send(SessionRevoked("barrier"))
        async with asyncio.timeout(5):
            while len(seen_here) < 2 or len(seen_there) < 2:
                await asyncio.sleep(0.01)
        assert seen_here == [SessionRevoked("s1"), SessionRevoked("barrier")]
        # Its own command at once, the other's when the broker brings it.
        assert sorted(c.session_id for c in seen_there) == ["barrier", "s1"]
    finally:
        await here.stop()
        await there.stop()


def test_the_commands_since_an_epoch() -> None:
    plane = ControlPlane(MemoryBroker())
    before = plane.epoch
    plane.apply(SessionRevoked("s1"))
    middle = plane.epoch
    plane.apply(ItemDeleted("i"))
    assert plane.revoked_since(before) == [SessionRevoked("s1"), ItemDeleted("i")]
    assert plane.revoked_since(middle) == [ItemDeleted("i")]
    assert plane.revoked_since(plane.epoch) == []


def test_an_epoch_older_than_the_log_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(control, "LOG_SIZE", 3)
    plane = ControlPlane(MemoryBroker())
    for n in range(5):
        plane.apply(SessionRevoked(f"s{n}"))
    # Epochs 1-5 were applied; the log holds 3-5.
    assert plane.revoked_since(1) is None
    assert plane.revoked_since(2) == [SessionRevoked(f"s{n}") for n in (2, 3, 4)]
