"""`tictactoe`: the owner plays X against the first other owner-or-writer to move, as O.

The server enforces every rule: turns (X first), free cells, the end of the game.
"""

from __future__ import annotations

from typing import Any

from api.kinds.base import Actor, Illegal, Invalid, JSONObject, Kind

LINES = (
    (0, 1, 2),
    (3, 4, 5),
    (6, 7, 8),
    (0, 3, 6),
    (1, 4, 7),
    (2, 5, 8),
    (0, 4, 8),
    (2, 4, 6),
)


class TicTacToe(Kind):
    name = "tictactoe"
    description = (
        "Tic-tac-toe with server-side rules: the owner is X, the first other owner or "
        'writer to move becomes O, X moves first; actions are {"move": <cell 0-8>}.'
    )
    change_field = "action"

    def initial(self, owner: str) -> JSONObject:
        return {
            "board": [None] * 9,
            "players": {"X": owner, "O": None},
            "turn": "X",
            "winner": None,
        }

    def apply(self, state: JSONObject, change: Any, actor: Actor) -> JSONObject:
        cell = _cell(change)
        if state["winner"] is not None:
            raise Illegal("the game is over")
        players = dict(state["players"])
        mark = _mark_of(players, actor.username, state["turn"])
        if mark != state["turn"]:
            raise Illegal("not your turn")
        board = list(state["board"])
        if board[cell] is not None:
            raise Illegal(f"cell {cell} is taken")
        board[cell] = mark
        players[mark] = actor.username
        winner = _winner(board)
        return {
            "board": board,
            "players": players,
            "turn": None if winner else ("O" if mark == "X" else "X"),
            "winner": winner,
        }


def _cell(action: Any) -> int:
    if (
        not isinstance(action, dict)
        or set(action) != {"move"}
        or type(action["move"]) is not int
        or not 0 <= action["move"] <= 8
    ):
        raise Invalid('an action is {"move": <cell 0-8>}')
    return int(action["move"])


def _mark_of(players: dict[str, str | None], username: str, turn: str | None) -> str:
    """The mark `username` plays; whoever is not X claims O by making O's first move."""
    if players["X"] == username:
        return "X"
    if players["O"] == username:
        return "O"
    if players["O"] is None:
        if turn == "O":
            return "O"
        raise Illegal("not your turn")
    raise Illegal("not a player")


def _winner(board: list[str | None]) -> str | None:
    for a, b, c in LINES:
        if board[a] is not None and board[a] == board[b] == board[c]:
            return board[a]
    return "draw" if all(board) else None
