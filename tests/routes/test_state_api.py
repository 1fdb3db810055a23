"""CONTRACT §4c over REST: kinds, item state, changes and their refusals."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest

from tests.servers import LiveServer
from tests.support import Api, User

MakeServer = Callable[..., AbstractContextManager[LiveServer]]


async def new_item(api: Api, owner: User, kind: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "stateful"}
    if kind is not None:
        body["kind"] = kind
    r = await api.http.post("/items", json=body, headers=owner.headers)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def get_state(api: Api, user: User, item_id: str) -> httpx.Response:
    return await api.http.get(f"/items/{item_id}/state", headers=user.headers)


async def change(api: Api, user: User, item_id: str, body: Any) -> httpx.Response:
    return await api.http.post(f"/items/{item_id}/state", json=body, headers=user.headers)


async def version_of(api: Api, user: User, item_id: str) -> tuple[int, Any]:
    r = await get_state(api, user, item_id)
    assert r.status_code == 200, r.text
    return r.json()["version"], r.json()["state"]


# --- kinds and items -----------------------------------------------------------------------


async def test_kinds_are_listed_for_any_user(api: Api) -> None:
    user = await api.user()
    r = await api.http.get("/kinds", headers=user.headers)
    assert r.status_code == 200, r.text
    listed = {k["kind"]: k for k in r.json()}
    assert {"document", "tictactoe"} <= set(listed)
    assert all(set(k) == {"kind", "description"} and k["description"] for k in r.json())
    anonymous = await api.http.get("/kinds")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"


async def test_items_carry_their_kind(api: Api) -> None:
    owner = await api.user()
    doc = await new_item(api, owner)
    game = await new_item(api, owner, "tictactoe")
    assert doc["kind"] == "document" and game["kind"] == "tictactoe"
    listed = (await api.http.get("/items", headers=owner.headers)).json()
    assert {i["id"]: i["kind"] for i in listed} == {doc["id"]: "document", game["id"]: "tictactoe"}
    got = await api.http.get(f"/items/{game['id']}", headers=owner.headers)
    assert got.json()["kind"] == "tictactoe"


@pytest.mark.parametrize("kind", ["chess", "", None, 3, ["document"]])
async def test_an_unknown_kind_is_422(api: Api, kind: Any) -> None:
    owner = await api.user()
    r = await api.http.post("/items", json={"name": "x", "kind": kind}, headers=owner.headers)
    assert r.status_code == 422, r.text
    assert (await api.http.get("/items", headers=owner.headers)).json() == []


# --- reading -------------------------------------------------------------------------------


async def test_a_new_document_is_empty_at_version_0(api: Api) -> None:
    owner = await api.user()
    item = (await new_item(api, owner))["id"]
    r = await get_state(api, owner, item)
    assert r.status_code == 200
    assert r.json() == {"item_id": item, "kind": "document", "version": 0, "state": {}}


async def test_a_new_game_names_its_owner_x(api: Api) -> None:
    owner = await api.user()
    item = (await new_item(api, owner, "tictactoe"))["id"]
    assert (await get_state(api, owner, item)).json() == {
        "item_id": item,
        "kind": "tictactoe",
        "version": 0,
        "state": {
            "board": [None] * 9,
            "players": {"X": owner.username, "O": None},
            "turn": "X",
            "winner": None,
        },
    }


async def test_members_read_the_state_and_others_get_404(api: Api) -> None:
    owner, reader, stranger = await api.user(), await api.user(), await api.user()
    item = (await new_item(api, owner))["id"]
    await api.share(owner, item, reader, "reader")
    assert (await get_state(api, reader, item)).status_code == 200
    for user, target in ((stranger, item), (owner, "no-such-item")):
        r = await get_state(api, user, target)
        assert r.status_code == 404 and r.json() == {"detail": "item not found"}
    assert (await get_state(api, owner, "bad id!")).status_code == 422
    assert (await api.http.get(f"/items/{item}/state")).status_code == 401


# --- documents -----------------------------------------------------------------------------


async def test_patches_apply_in_order_and_bump_the_version(api: Api) -> None:
    owner, writer = await api.user(), await api.user()
    item = (await new_item(api, owner))["id"]
    await api.share(owner, item, writer, "writer")
    r = await change(api, owner, item, {"ops": [{"op": "add", "path": "/todo", "value": []}]})
    assert r.status_code == 200, r.text
    assert r.json() == {"item_id": item, "kind": "document", "version": 1, "state": {"todo": []}}
    r = await change(
        api,
        writer,
        item,
        {
            "ops": [
                {"op": "test", "path": "/todo", "value": []},
                {"op": "add", "path": "/todo/-", "value": {"text": "milk", "done": False}},
                {"op": "replace", "path": "/todo/0/done", "value": True},
            ]
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2
    assert await version_of(api, owner, item) == (2, {"todo": [{"text": "milk", "done": True}]})


async def test_a_failed_test_op_is_409_and_changes_nothing(api: Api) -> None:
    owner = await api.user()
    item = (await new_item(api, owner))["id"]
    await change(api, owner, item, {"ops": [{"op": "add", "path": "/n", "value": 1}]})
    r = await change(
        api,
        owner,
        item,
        {
            "ops": [
                {"op": "replace", "path": "/n", "value": 5},
                {"op": "test", "path": "/n", "value": 2},
            ]
        },
    )
    assert r.status_code == 409, r.text
    assert isinstance(r.json()["detail"], str) and "test" in r.json()["detail"]
    assert await version_of(api, owner, item) == (1, {"n": 1})


@pytest.mark.parametrize(
    "body",
    [
        {"ops": [{"op": "remove", "path": "/missing"}]},
        {"ops": [{"op": "replace", "path": "/a/b", "value": 1}]},
        {"ops": [{"op": "add", "path": "no-slash", "value": 1}]},
        {"ops": [{"op": "add", "path": "/list/7", "value": 1}]},
        {"ops": [{"op": "jump", "path": "/a"}]},
        {"ops": [{"path": "/a", "value": 1}]},
        {"ops": [{"op": "add", "path": "/a"}]},
        {"ops": [{"op": "move", "from": "/nowhere", "path": "/a"}]},
        {"ops": [{"op": "replace", "path": "", "value": [1]}]},
        {"ops": [{"op": "add", "path": "/huge", "value": 10**30}]},
        {"ops": {"op": "add", "path": "/a", "value": 1}},
        {"ops": ["add"]},
        {"action": {"move": 4}},
        {"ops": [], "action": {"move": 4}},
        {},
        {"ops": [], "extra": 1},
        [],
    ],
)
async def test_bad_changes_to_a_document_are_422(api: Api, body: Any) -> None:
    owner = await api.user()
    item = (await new_item(api, owner))["id"]
    await change(api, owner, item, {"ops": [{"op": "add", "path": "/list", "value": [1]}]})
    r = await change(api, owner, item, body)
    assert r.status_code == 422, r.text
    assert isinstance(r.json()["detail"], list) and r.json()["detail"][0]["msg"]
    assert await version_of(api, owner, item) == (1, {"list": [1]})


async def test_readers_get_403_and_strangers_404(api: Api) -> None:
    owner, reader, stranger = await api.user(), await api.user(), await api.user()
    item = (await new_item(api, owner))["id"]
    await api.share(owner, item, reader, "reader")
    ops = {"ops": [{"op": "add", "path": "/a", "value": 1}]}
    r = await change(api, reader, item, ops)
    assert r.status_code == 403 and isinstance(r.json()["detail"], str)
    for user, target in ((stranger, item), (owner, "no-such-item")):
        r = await change(api, user, target, ops)
        assert r.status_code == 404 and r.json() == {"detail": "item not found"}
    assert await version_of(api, owner, item) == (0, {})


async def test_a_state_over_max_state_bytes_is_413(make_server: MakeServer) -> None:
    with make_server(max_state_bytes=1024) as srv:
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=30) as http:
            api = Api(srv, http)
            owner = await api.user()
            item = (await new_item(api, owner))["id"]
            # The JSON text {"s":"..."} is exactly the limit with 1016 characters.
            fits = {"ops": [{"op": "add", "path": "/s", "value": "x" * 1016}]}
            r = await change(api, owner, item, fits)
            assert r.status_code == 200, r.text
            over = {"ops": [{"op": "replace", "path": "/s", "value": "é" * 509}]}  # 1018 bytes
            r = await change(api, owner, item, over)
            assert r.status_code == 413, r.text
            assert isinstance(r.json()["detail"], str)
            assert (await version_of(api, owner, item))[0] == 1


# --- tictactoe -----------------------------------------------------------------------------


async def test_a_whole_game_over_rest(api: Api) -> None:
    x, o, third, reader = [await api.user() for _ in range(4)]
    item = (await new_item(api, x, "tictactoe"))["id"]
    await api.share(x, item, o, "writer")
    await api.share(x, item, third, "writer")
    await api.share(x, item, reader, "reader")

    async def play(user: User, cell: Any) -> httpx.Response:
        return await change(api, user, item, {"action": {"move": cell}})

    assert (await play(o, 4)).json() == {"detail": "not your turn"}
    assert (await play(x, 4)).status_code == 200
    assert (await play(o, 4)).json() == {"detail": "cell 4 is taken"}
    assert (await play(x, 0)).json() == {"detail": "not your turn"}
    r = await play(o, 0)
    assert r.status_code == 200 and r.json()["state"]["players"]["O"] == o.username
    assert (await play(third, 1)).status_code == 409  # not a player
    assert (await play(reader, 1)).status_code == 403
    for cell in (9, "1", None):
        assert (await play(x, cell)).status_code == 422
    bad = await change(api, x, item, {"ops": [{"op": "add", "path": "/a", "value": 1}]})
    assert bad.status_code == 422
    for user, cell in ((x, 1), (o, 3), (x, 7)):  # X: 4, 1, 7 — the middle column
        assert (await play(user, cell)).status_code == 200
    final = await get_state(api, reader, item)
    assert final.json()["version"] == 5
    assert final.json()["state"]["winner"] == "X" and final.json()["state"]["turn"] is None
    assert (await play(o, 8)).json() == {"detail": "the game is over"}
    assert (await version_of(api, x, item))[0] == 5


# --- races ---------------------------------------------------------------------------------


async def test_racing_writers_get_contiguous_versions(api: Api) -> None:
    """8 writers × 50 patches, each guarded by a `test` of the version it read."""
    owner = await api.user()
    item = (await new_item(api, owner))["id"]
    writers = [await api.user() for _ in range(8)]
    for writer in writers:
        await api.share(owner, item, writer, "writer")
    await change(api, owner, item, {"ops": [{"op": "add", "path": "/log", "value": []}]})

    async def write(w: int, user: User) -> tuple[list[str], list[str], list[int]]:
        acked: list[str] = []
        refused: list[str] = []
        versions: list[int] = []
        for n in range(50):
            _, state = await version_of(api, user, item)
            entry = f"{w}-{n}"
            r = await change(
                api,
                user,
                item,
                {
                    "ops": [
                        {"op": "test", "path": "/log", "value": state["log"]},
                        {"op": "add", "path": "/log/-", "value": entry},
                    ]
                },
            )
            if r.status_code == 200:
                acked.append(entry)
                versions.append(r.json()["version"])
            else:
                assert r.status_code == 409, r.text
                refused.append(entry)
        return acked, refused, versions

    results = await asyncio.gather(*(write(w, u) for w, u in enumerate(writers)))
    acked = [e for a, _, _ in results for e in a]
    refused = [e for _, r, _ in results for e in r]
    versions = sorted(v for _, _, vs in results for v in vs)
    final_version, final = await version_of(api, owner, item)
    assert sorted(final["log"]) == sorted(acked)
    assert not set(refused) & set(final["log"])
    assert versions == list(range(2, final_version + 1))
    assert len(acked) + len(refused) == 400
