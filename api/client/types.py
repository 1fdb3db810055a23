"""The contract's JSON objects, as typed dictionaries."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class User(TypedDict):
    id: str
    username: str


class Token(TypedDict):
    access_token: str
    token_type: str
    expires_in: NotRequired[int]
    user: NotRequired[User]


class Item(TypedDict):
    id: str
    name: str
    owner: str
    created_at: str
    kind: NotRequired[str]


class Member(TypedDict):
    username: str
    role: str


class Message(TypedDict):
    item_id: str
    seq: int
    sender: str
    data: Any
    ts: str


class Presence(TypedDict):
    count: int
    users: list[str]


class ItemState(TypedDict):
    """An item's state (CONTRACT §4c): what its kind allows, at a version."""

    item_id: str
    kind: str
    version: int
    state: dict[str, Any]


class Kind(TypedDict):
    kind: str
    description: str
