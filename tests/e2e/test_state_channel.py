"""CONTRACT §4c over the item channel: `?state=1` snapshots and `state` frames, and
`patch` / `action` frames with their answers, against a real server and client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from api.db import make_engine, make_session_factory
from api.items.state import Change, StoredState, apply_many
from tests.servers import (
    POSTGRES_URL,
    REDIS_URL,
    Backend,
    LiveServer,
    postgres_database,
    settings_for,
)
from tests.support import Api, User, closed, error_frame, read_until, ready, recv

MakeServer = Callable[..., AbstractContextManager[LiveServer]]
STATE = {"state": "1"}


async def new_item(api: Api, owner: User, kind: str = "document") -> str:
    r = await api.http.post("/items", json={"name": "s", "kind": kind}, headers=owner.headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def rest_patch(api: Api, user: User, item: str, *ops: dict[str, Any]) -> dict[str, Any]:
    r = await api.http.post(f"/items/{item}/state", json={"ops": list(ops)}, headers=user.headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def opened(api: Api, user: User, item: str, **query: str) -> ClientConnection:
    ws, _ = await ready(api.server, item, user.token, query=query)
    return ws


async def snapshot(ws: ClientConnection) -> dict[str, Any]:
    frame = await recv(ws)
    assert frame["type"] == "state", frame
    return frame


async def send(ws: ClientConnection, frame: dict[str, Any]) -> None:
    await ws.send(json.dumps(frame))


# State frames read past while waiting for an answer, per socket, for `next_state`.
_skipped: dict[int, list[dict[str, Any]]] = {}


async def answer(ws: ClientConnection) -> dict[str, Any]:
    """The next `ack` or `error`; state frames on the way are kept for `next_state`."""
    while True:
        frame = await recv(ws)
        if frame["type"] in ("ack", "error"):
            return frame
        if frame["type"] == "state":
            _skipped.setdefault(id(ws), []).append(frame)


async def next_state(ws: ClientConnection) -> dict[str, Any]:
    kept = _skipped.get(id(ws))
    if kept:
        return kept.pop(0)
    return (await read_until(ws, "state"))[-1]


def add(path: str, value: Any) -> dict[str, Any]:
    return {"op": "add", "path": path, "value": value}


async def test_the_snapshot_comes_right_after_ready(api: Api) -> None:
    owner = await api.user()
    item = await new_item(api, owner)
    await rest_patch(api, owner, item, add("/a", 1))
    ws = await opened(api, owner, item, **STATE)
    async with ws:
        assert await snapshot(ws) == {
            "type": "state",
            "item_id": item,
            "version": 1,
            "state": {"a": 1},
        }
        # Then every change, with its sender, in version order.
        await rest_patch(api, owner, item, add("/b", 2))
        changed = (await read_until(ws, "state"))[-1]
        assert changed == {
            "type": "state",
            "item_id": item,
            "version": 2,
            "state": {"a": 1, "b": 2},
            "sender": owner.username,
        }


async def test_sockets_that_did_not_opt_in_get_no_state_frames(api: Api) -> None:
    owner = await api.user()
    item = await new_item(api, owner)
    plain = await opened(api, owner, item)
    off = await opened(api, owner, item, state="0")
    watching = await opened(api, owner, item, **STATE)
    async with plain, off, watching:
        await snapshot(watching)
        await rest_patch(api, owner, item, add("/a", 1))
        await read_until(watching, "state")
        # The fan-out reached every socket of this process at once: a pong asked for now
        # comes after any state frame that would have been sent.
        for ws in (plain, off):
            await send(ws, {"type": "ping"})
            frames = []
            while not frames or frames[-1]["type"] != "pong":
                frames.append(await recv(ws))
            assert [f["type"] for f in frames if f["type"] != "presence"] == ["pong"]


async def test_patch_frames_are_acknowledged_with_the_version(api: Api) -> None:
    owner, writer = await api.user(), await api.user()
    item = await new_item(api, owner)
    await api.share(owner, item, writer, "writer")
    watcher = await opened(api, owner, item, **STATE)
    ws = await opened(api, writer, item, **STATE)
    async with watcher, ws:
        await snapshot(watcher)
        await snapshot(ws)
        await send(ws, {"type": "patch", "ops": [add("/todo", [])], "ref": "p1"})
        await send(ws, {"type": "patch", "ops": [add("/todo/-", "milk")]})
        assert await answer(ws) == {"type": "ack", "ref": "p1", "version": 1}
        assert await answer(ws) == {"type": "ack", "version": 2}
        for socket in (watcher, ws):
            first = await next_state(socket)
            second = await next_state(socket)
            assert (first["version"], first["sender"]) == (1, writer.username)
            assert second["state"] == {"todo": ["milk"]} and second["version"] == 2
    r = await api.http.get(f"/items/{item}/state", headers=owner.headers)
    assert r.json()["version"] == 2


async def test_refused_changes_get_their_error_and_change_nothing(make_server: MakeServer) -> None:
    with make_server(max_state_bytes=200) as srv:
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=30) as http:
            api = Api(srv, http)
            owner, reader = await api.user(), await api.user()
            item = await new_item(api, owner)
            await api.share(owner, item, reader, "reader")
            await rest_patch(api, owner, item, add("/n", 1))
            ws = await opened(api, owner, item, **STATE)
            ro = await opened(api, reader, item, **STATE)
            async with ws, ro:
                await snapshot(ws)
                await snapshot(ro)
                cases = [
                    ({"ops": [{"op": "test", "path": "/n", "value": 2}]}, "conflict"),
                    ({"ops": [{"op": "remove", "path": "/nope"}]}, "bad_request"),
                    ({"ops": [{"op": "dance", "path": "/n"}]}, "bad_request"),
                    ({"ops": "not a list"}, "bad_request"),
                    ({}, "bad_request"),
                    ({"ops": [add("/big", "x" * 300)]}, "too_large"),
                ]
                for n, (fields, code) in enumerate(cases):
                    await send(ws, {"type": "patch", **fields, "ref": f"r{n}"})
                    assert await answer(ws) == error_frame(code, f"r{n}"), fields
                await send(ws, {"type": "action", "action": {"move": 1}, "ref": "a"})
                assert await answer(ws) == error_frame("bad_request", "a")
                await send(ro, {"type": "patch", "ops": [add("/x", 1)], "ref": "ro"})
                assert await answer(ro) == error_frame("forbidden", "ro")
                # Still open, nothing changed, and a good patch gets version 2.
                await send(ws, {"type": "patch", "ops": [add("/m", 1)], "ref": "ok"})
                assert await answer(ws) == {"type": "ack", "ref": "ok", "version": 2}
                frame = await next_state(ro)
                assert frame["version"] == 2 and frame["state"] == {"n": 1, "m": 1}


async def test_a_game_played_over_two_sockets(api: Api) -> None:
    x, o = await api.user(), await api.user()
    item = await new_item(api, x, "tictactoe")
    await api.share(x, item, o, "writer")
    wx = await opened(api, x, item, **STATE)
    wo = await opened(api, o, item, **STATE)
    async with wx, wo:
        start = await snapshot(wx)
        assert start["state"]["players"] == {"X": x.username, "O": None}
        await snapshot(wo)

        async def move(ws: ClientConnection, cell: Any, ref: str) -> dict[str, Any]:
            await send(ws, {"type": "action", "action": {"move": cell}, "ref": ref})
            return await answer(ws)

        assert await move(wo, 4, "early") == {
            "type": "error",
            "code": "illegal",
            "detail": "not your turn",
            "ref": "early",
        }
        assert await move(wx, 4, "x1") == {"type": "ack", "ref": "x1", "version": 1}
        assert (await move(wo, 4, "o1"))["detail"] == "cell 4 is taken"
        assert (await move(wo, "4", "bad"))["code"] == "bad_request"
        assert (await move(wo, 0, "o2"))["version"] == 2
        await send(wx, {"type": "patch", "ops": [add("/a", 1)], "ref": "p"})
        assert (await answer(wx))["code"] == "bad_request"
        for socket, cell, ref in ((wx, 1, "x2"), (wo, 3, "o3"), (wx, 7, "x3")):
            assert (await move(socket, cell, ref))["type"] == "ack"
        assert (await move(wo, 8, "late"))["detail"] == "the game is over"
        seen = [await next_state(wo) for _ in range(5)]
        assert [f["version"] for f in seen] == [1, 2, 3, 4, 5]
        assert [f["sender"] for f in seen] == [x.username, o.username] * 2 + [x.username]
        assert seen[-1]["state"]["winner"] == "X" and seen[-1]["state"]["turn"] is None


async def test_every_opted_in_socket_sees_every_version_in_order(api: Api) -> None:
    """4 writers × 25 patches at once (on sockets and over REST), 3 watchers joining
    at different moments: each watcher's versions run from its snapshot, none skipped."""
    owner = await api.user()
    item = await new_item(api, owner)
    writers = [await api.user() for _ in range(4)]
    for writer in writers:
        await api.share(owner, item, writer, "writer")
    await rest_patch(api, owner, item, add("/log", []))
    first = await opened(api, owner, item, **STATE)
    sockets = [await opened(api, w, item) for w in writers[:2]]

    async def via_socket(n: int, ws: ClientConnection) -> None:
        for i in range(25):
            await send(ws, {"type": "patch", "ops": [add("/log/-", f"s{n}-{i}")]})
        acks = 0
        while acks < 25:
            frame = await recv(ws)
            assert frame["type"] != "error", frame
            acks += frame["type"] == "ack"

    async def via_rest(n: int, user: User) -> None:
        for i in range(25):
            await rest_patch(api, user, item, add("/log/-", f"r{n}-{i}"))

    async def late_watcher() -> tuple[ClientConnection, int]:
        await asyncio.sleep(0)
        ws = await opened(api, owner, item, **STATE)
        return ws, (await snapshot(ws))["version"]

    start = (await snapshot(first))["version"]
    results = await asyncio.gather(
        *(via_socket(n, ws) for n, ws in enumerate(sockets)),
        *(via_rest(n, w) for n, w in enumerate(writers[2:])),
        late_watcher(),
        late_watcher(),
    )
    watchers = [(first, start), results[-2], results[-1]]
    final = 1 + 100
    try:
        for ws, after in watchers:
            versions = []
            last_state: Any = None
            while not versions or versions[-1] < final:
                frame = (await read_until(ws, "state"))[-1]
                versions.append(frame["version"])
                last_state = frame["state"]
            assert versions == list(range(after + 1, final + 1))
            assert len(last_state["log"]) == 100
    finally:
        for ws, _ in watchers:
            await ws.close()
        for ws in sockets:
            await ws.close()


async def test_a_removed_writer_is_closed_and_changes_nothing(api: Api) -> None:
    owner, writer = await api.user(), await api.user()
    item = await new_item(api, owner)
    await api.share(owner, item, writer, "writer")
    ws = await opened(api, writer, item, **STATE)
    async with ws:
        await snapshot(ws)
        r = await api.http.delete(f"/items/{item}/members/{writer.username}", headers=owner.headers)
        assert r.status_code == 204
        assert await closed(ws) == (1008, "forbidden")
    r = await api.http.post(
        f"/items/{item}/state", json={"ops": [add("/a", 1)]}, headers=writer.headers
    )
    assert r.status_code == 404
    r = await api.http.get(f"/items/{item}/state", headers=owner.headers)
    assert r.json()["version"] == 0


async def test_state_frames_coexist_with_messages(api: Api) -> None:
    owner = await api.user()
    item = await new_item(api, owner)
    ws = await opened(api, owner, item, **STATE)
    async with ws:
        await snapshot(ws)
        await send(ws, {"type": "publish", "data": "hi", "ref": "m"})
        await send(ws, {"type": "patch", "ops": [add("/a", 1)], "ref": "p"})
        frames = []
        while len([f for f in frames if f["type"] in ("ack", "message", "state")]) < 4:
            frames.append(await recv(ws))
        acks = {f["ref"]: f for f in frames if f["type"] == "ack"}
        assert acks == {
            "m": {"type": "ack", "ref": "m", "seq": 1},
            "p": {"type": "ack", "ref": "p", "version": 1},
        }
        assert [f["type"] for f in frames if f["type"] in ("message", "state")].count("state") == 1


async def store_behind_the_brokers_back(server: LiveServer, user: User, item: str) -> int:
    """Apply a change in the store without announcing it: as if the broker lost it."""
    engine = make_engine(server.settings.effective_database_url)
    try:
        async with make_session_factory(engine)() as db:
            (result,) = await apply_many(
                db, [Change(item, user.id, user.username, "ops", [add("/lost", True)])], 65536, 100
            )
    finally:
        await engine.dispose()
    assert isinstance(result, StoredState)
    return result.version


async def test_versions_the_broker_lost_are_read_from_the_store(api: Api) -> None:
    owner = await api.user()
    item = await new_item(api, owner)
    ws = await opened(api, owner, item, **STATE)
    async with ws:
        assert (await snapshot(ws))["version"] == 0
        # Revealed by the next version...
        assert await store_behind_the_brokers_back(api.server, owner, item) == 1
        await rest_patch(api, owner, item, add("/b", 1))
        first, second = await next_state(ws), await next_state(ws)
        assert (first["version"], first["state"]) == (1, {"lost": True})
        assert second["version"] == 2
        # ...or by the poll, when none follows.
        assert await store_behind_the_brokers_back(api.server, owner, item) == 3
        third = await next_state(ws)
        assert third["version"] == 3 and third["sender"] == owner.username


async def test_changes_cross_workers_in_order(tmp_path: Path) -> None:
    """Two servers on one PostgreSQL database and one Redis: a watcher on one sees every
    change made through the other, in version order."""
    if not (POSTGRES_URL and REDIS_URL):
        pytest.skip("needs TEST_POSTGRES_URL and TEST_REDIS_URL")
    backend = Backend("postgres-redis", "postgres", "redis")
    with postgres_database() as url:
        one = LiveServer(settings_for(backend, url, tmp_path)).start()
        two = LiveServer(settings_for(backend, url, tmp_path)).start()
        try:
            async with (
                httpx.AsyncClient(base_url=one.base_url, timeout=30) as h1,
                httpx.AsyncClient(base_url=two.base_url, timeout=30) as h2,
            ):
                api1, api2 = Api(one, h1), Api(two, h2)
                owner = await api1.user()
                item = await new_item(api1, owner)
                watcher = await opened(api1, owner, item, **STATE)
                writer_ws = await opened(api2, owner, item)
                async with watcher, writer_ws:
                    assert (await snapshot(watcher))["version"] == 0

                    async def rest() -> None:
                        for i in range(20):
                            await rest_patch(api2, owner, item, add(f"/r{i}", i))

                    async def socket() -> None:
                        for i in range(20):
                            await send(writer_ws, {"type": "patch", "ops": [add(f"/s{i}", i)]})
                        for _ in range(20):
                            assert (await answer(writer_ws))["type"] == "ack"

                    await asyncio.gather(rest(), socket())
                    versions = [(await next_state(watcher))["version"] for _ in range(40)]
                    assert versions == list(range(1, 41))
        finally:
            one.stop()
            two.stop()


async def test_racing_sockets_with_test_ops(api: Api) -> None:
    """8 writers × 50 patches over sockets, each guarded by a `test` of the counter the
    writer last saw in its own state frames: acknowledged ones are all in the final
    state, refused ones are not, versions 1…N with no gap."""
    owner = await api.user()
    item = await new_item(api, owner)
    writers = [await api.user() for _ in range(8)]
    for writer in writers:
        await api.share(owner, item, writer, "writer")
    await rest_patch(api, owner, item, add("/n", 0), add("/log", []))

    async def write(w: int, user: User) -> tuple[list[str], list[str], list[int]]:
        acked: list[str] = []
        refused: list[str] = []
        versions: list[int] = []
        ws = await opened(api, user, item, **STATE)
        async with ws:
            seen = (await snapshot(ws))["state"]
            for i in range(50):
                entry = f"{w}-{i}"
                ops = [
                    {"op": "test", "path": "/n", "value": seen["n"]},
                    {"op": "replace", "path": "/n", "value": seen["n"] + 1},
                    add("/log/-", entry),
                ]
                await send(ws, {"type": "patch", "ops": ops, "ref": entry})
                while True:  # the answer, keeping the latest state seen on the way
                    frame = await recv(ws)
                    if frame["type"] == "state" and frame["state"]["n"] > seen["n"]:
                        seen = frame["state"]
                    if frame["type"] in ("ack", "error"):
                        break
                assert frame["ref"] == entry
                if frame["type"] == "ack":
                    acked.append(entry)
                    versions.append(frame["version"])
                else:
                    assert frame["code"] == "conflict", frame
                    refused.append(entry)
        return acked, refused, versions

    results = await asyncio.gather(*(write(w, u) for w, u in enumerate(writers)))
    acked = [e for a, _, _ in results for e in a]
    refused = [e for _, r, _ in results for e in r]
    versions = sorted(v for _, _, vs in results for v in vs)
    r = await api.http.get(f"/items/{item}/state", headers=owner.headers)
    final = r.json()
    assert sorted(final["state"]["log"]) == sorted(acked)
    assert not set(refused) & set(final["state"]["log"])
    assert final["state"]["n"] == len(acked)
    assert versions == list(range(2, final["version"] + 1))
    assert len(acked) + len(refused) == 400
