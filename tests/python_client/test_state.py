"""Item state through the client: kinds, documents by JSON Patch, a game's moves."""

from __future__ import annotations

import pytest

from api.client import HTTPError
from tests.python_client.conftest import NewClient, me


async def test_kinds_and_a_document_changed_by_patches(new_client: NewClient) -> None:
    alice = await new_client()
    assert {k["kind"] for k in await alice.kinds()} >= {"document", "tictactoe"}
    item = (await alice.create_item("notes", kind="document"))["id"]
    assert await alice.state(item) == {
        "item_id": item,
        "kind": "document",
        "version": 0,
        "state": {},
    }
    changed = await alice.patch(item, [{"op": "add", "path": "/title", "value": "Plan"}])
    assert (changed["version"], changed["state"]) == (1, {"title": "Plan"})
    # Optimistic concurrency: a `test` that no longer holds changes nothing.
    with pytest.raises(HTTPError) as stale:
        await alice.patch(
            item,
            [
                {"op": "test", "path": "/title", "value": "Old"},
                {"op": "replace", "path": "/title", "value": "New"},
            ],
        )
    assert stale.value.status == 409
    with pytest.raises(HTTPError) as wrong:
        await alice.patch(item, [{"op": "remove", "path": "/missing"}])
    assert wrong.value.status == 422
    assert (await alice.state(item))["version"] == 1


async def test_a_game_of_tictactoe_with_its_rules(new_client: NewClient) -> None:
    alice, bob = await new_client(), await new_client()
    item = (await alice.create_item("game", kind="tictactoe"))["id"]
    await alice.add_member(item, await me(bob), "writer")
    await alice.action(item, {"move": 0})
    with pytest.raises(HTTPError) as out_of_turn:
        await alice.action(item, {"move": 1})
    assert out_of_turn.value.status == 409 and isinstance(out_of_turn.value.detail, str)
    for player, cell in ((bob, 3), (alice, 1), (bob, 4)):
        await player.action(item, {"move": cell})
    final = await alice.action(item, {"move": 2})
    assert final["version"] == 5
    assert final["state"]["board"][:3] == ["X", "X", "X"]
    with pytest.raises(HTTPError) as over:
        await bob.action(item, {"move": 5})
    assert over.value.status == 409
