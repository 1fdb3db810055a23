"""The kinds on their own: initial states, JSON Patch through the library, game rules."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from api.kinds import KINDS, Actor, Conflict, Illegal, Invalid, get_kind

OWNER = Actor("alice", "owner")
WRITER = Actor("bob", "writer")
THIRD = Actor("carol", "writer")


def test_the_registry_offers_document_and_tictactoe() -> None:
    assert {"document", "tictactoe"} <= set(KINDS)
    for name, kind in KINDS.items():
        assert kind.name == name
        assert kind.description
        assert kind.change_field in ("ops", "action")
    with pytest.raises(KeyError):
        get_kind("chess")


# --- document --------------------------------------------------------------------------------

document = get_kind("document")


def test_document_applies_rfc6902_operations() -> None:
    state = {"a": {"b": [1, 2]}, "x": 1}
    ops = [
        {"op": "add", "path": "/a/b/-", "value": 3},
        {"op": "remove", "path": "/x"},
        {"op": "copy", "from": "/a/b", "path": "/c"},
        {"op": "move", "from": "/c", "path": "/d"},
        {"op": "replace", "path": "/a/b/0", "value": "one"},
        {"op": "test", "path": "/d", "value": [1, 2, 3]},
        {"op": "add", "path": "/~1slash", "value": True},
    ]
    assert document.apply(state, ops, OWNER) == {
        "a": {"b": ["one", 2, 3]},
        "d": [1, 2, 3],
        "/slash": True,
    }
    assert document.initial("alice") == {}


def test_a_failed_test_op_is_a_conflict_and_leaves_the_state_alone() -> None:
    state = {"n": 1, "log": []}
    before = copy.deepcopy(state)
    ops = [
        {"op": "add", "path": "/log/-", "value": "first"},
        {"op": "test", "path": "/n", "value": 2},
    ]
    with pytest.raises(Conflict, match="test failed"):
        document.apply(state, ops, OWNER)
    assert state == before


@pytest.mark.parametrize(
    "ops",
    [
        {"op": "add", "path": "/a", "value": 1},  # not an array
        ["add"],
        [{"path": "/a", "value": 1}],
        [{"op": "jump", "path": "/a"}],
        [{"op": 3, "path": "/a"}],
        [{"op": "add", "path": "a", "value": 1}],
        [{"op": "add", "path": "/a"}],
        [{"op": "copy", "path": "/a"}],
        [{"op": "remove", "path": "/missing"}],
        [{"op": "replace", "path": "/missing/deeper", "value": 1}],
        [{"op": "add", "path": "/list/9", "value": 1}],
        [{"op": "move", "from": "/nowhere", "path": "/a"}],
        [{"op": "remove", "path": ""}],
        [{"op": "replace", "path": "", "value": [1, 2]}],  # the state stays an object
    ],
)
def test_malformed_or_inapplicable_ops_are_invalid(ops: Any) -> None:
    state = {"list": [1]}
    with pytest.raises(Invalid):
        document.apply(state, ops, OWNER)
    assert state == {"list": [1]}


# --- tictactoe -------------------------------------------------------------------------------

game = get_kind("tictactoe")


def play(*moves: tuple[Actor, int]) -> dict[str, Any]:
    state = game.initial(OWNER.username)
    for actor, cell in moves:
        state = game.apply(state, {"move": cell}, actor)
    return state


def test_the_owner_is_x_and_moves_first() -> None:
    assert game.initial("alice") == {
        "board": [None] * 9,
        "players": {"X": "alice", "O": None},
        "turn": "X",
        "winner": None,
    }
    with pytest.raises(Illegal, match="not your turn"):
        play((WRITER, 0))


def test_the_first_other_player_to_move_becomes_o() -> None:
    state = play((OWNER, 4), (WRITER, 0))
    assert state["players"] == {"X": "alice", "O": "bob"}
    assert state["board"][4] == "X" and state["board"][0] == "O"
    assert state["turn"] == "X"
    with pytest.raises(Illegal, match="not a player"):
        game.apply(play((OWNER, 4), (WRITER, 0), (OWNER, 1)), {"move": 2}, THIRD)


def test_turns_and_taken_cells() -> None:
    with pytest.raises(Illegal, match="not your turn"):
        play((OWNER, 4), (OWNER, 0))
    with pytest.raises(Illegal, match="cell 4 is taken"):
        play((OWNER, 4), (WRITER, 4))
    before = play((OWNER, 4))
    snapshot = copy.deepcopy(before)
    with pytest.raises(Illegal):
        game.apply(before, {"move": 4}, WRITER)
    assert before == snapshot  # a refused move claims nothing, O included


def test_three_in_a_row_wins_and_ends_the_game() -> None:
    state = play((OWNER, 0), (WRITER, 3), (OWNER, 1), (WRITER, 4), (OWNER, 2))
    assert state["winner"] == "X" and state["turn"] is None
    with pytest.raises(Illegal, match="the game is over"):
        game.apply(state, {"move": 8}, WRITER)
    diagonal = play((OWNER, 0), (WRITER, 2), (OWNER, 1), (WRITER, 4), (OWNER, 8), (WRITER, 6))
    assert diagonal["winner"] == "O"


def test_a_full_board_without_a_line_is_a_draw() -> None:
    # X O X / X O O / O X X
    state = play(
        (OWNER, 0), (WRITER, 1), (OWNER, 2), (WRITER, 4), (OWNER, 3),
        (WRITER, 5), (OWNER, 7), (WRITER, 6), (OWNER, 8),
    )  # fmt: skip
    assert state["winner"] == "draw" and state["turn"] is None


@pytest.mark.parametrize(
    "action",
    [None, [], {"move": "4"}, {"move": 9}, {"move": -1}, {"move": True}, {"move": 1.0},
     {"move": 1, "extra": 2}, {"cell": 1}],
)  # fmt: skip
def test_actions_of_the_wrong_shape_are_invalid(action: Any) -> None:
    with pytest.raises(Invalid, match="move"):
        game.apply(game.initial("alice"), action, OWNER)
