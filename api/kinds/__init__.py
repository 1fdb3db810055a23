"""Kinds of item state: how an item's state starts and how it may change.

To add one, subclass `Kind` (see `api.kinds.base`) and add an instance to `KINDS`.
"""

from __future__ import annotations

from api.kinds.base import Actor, Conflict, Illegal, Invalid, Kind, Refusal
from api.kinds.document import Document
from api.kinds.tictactoe import TicTacToe

DEFAULT_KIND = "document"
KINDS: dict[str, Kind] = {kind.name: kind for kind in (Document(), TicTacToe())}


def get_kind(name: str) -> Kind:
    """The registered kind; `KeyError` for one this service does not offer."""
    return KINDS[name]


__all__ = [
    "DEFAULT_KIND",
    "KINDS",
    "Actor",
    "Conflict",
    "Illegal",
    "Invalid",
    "Kind",
    "Refusal",
    "get_kind",
]
