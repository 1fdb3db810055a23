"""Item state without a database: changes, stored versions, and how a group applies.

The stores (`sqlite_state`, `postgres_state`, and `state.apply_many` through SQLAlchemy)
lock the group's items and read their states and the authors' roles in the storing
transaction, hand them to `apply_group`, and write what it returns in that same
transaction. A group's changes to one item apply one after another, each to the state
the previous one made; a refused change writes nothing and keeps the version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from api import kinds
from api.errors import DomainError, Forbidden, NotFound
from api.kinds import Actor, Refusal

WRITERS = ("owner", "writer")


class TooLarge(Refusal):
    """The state the change would produce is larger than MAX_STATE_BYTES."""

    code = "too_large"


@dataclass(frozen=True, slots=True)
class StoredState:
    """An item's state at one version; `sender` made that version (None for version 0)."""

    item_id: str
    kind: str
    version: int
    state: str  # JSON text
    sender: str | None = None

    def body(self) -> str:
        """The REST answer: `{"item_id","kind","version","state"}`."""
        return orjson.dumps(
            {
                "item_id": self.item_id,
                "kind": self.kind,
                "version": self.version,
                "state": orjson.Fragment(self.state),
            }
        ).decode()

    def frame(self) -> str:
        """The channel's `state` frame, encoded once and sent to every socket as is."""
        return state_frame(self.item_id, self.version, self.state, self.sender)


def state_frame(item_id: str, version: int, state: str, sender: str | None) -> str:
    body: dict[str, object] = {
        "type": "state",
        "item_id": item_id,
        "version": version,
        "state": orjson.Fragment(state),
    }
    if sender is not None:
        body["sender"] = sender
    return orjson.dumps(body).decode()


@dataclass(frozen=True, slots=True)
class Change:
    """A change to apply: `field` is "ops" (a JSON Patch) or "action" (a game move)."""

    item_id: str
    user_id: str
    username: str
    field: str
    value: Any


Outcome = StoredState | DomainError | Refusal


def encode_state(state: object) -> str:
    return orjson.dumps(state).decode()


@dataclass(frozen=True, slots=True)
class Locked:
    """An item as its storing transaction read it, with its state row locked."""

    kind: str
    owner_id: str
    version: int
    state: str  # JSON text


@dataclass(slots=True)
class Applied:
    """A group's outcomes (one per change, in order) and what to write for them."""

    outcomes: list[Outcome]
    # Each changed item's new version and state.
    states: dict[str, tuple[int, str]] = field(default_factory=dict)
    # (item id, version, sender, state) of the versions to keep (the last `keep` per item).
    history: list[tuple[str, int, str, str]] = field(default_factory=list)
    # Items whose kept versions up to this one are to be deleted (see `prune_upto`).
    prune: dict[str, int] = field(default_factory=dict)


def prune_upto(before: int, after: int, keep: int) -> int | None:
    """The version up to which an item's kept versions go, or None to leave them.

    Pruning every group would cost a delete per change: it happens when the versions
    cross a multiple of a tenth of `keep` instead, so that at least the last `keep`
    versions, and at most a tenth more, are kept."""
    step = max(1, keep // 10)
    return after - keep if after // step != before // step and after > keep else None


def apply_group(
    changes: Sequence[Change],
    items: Mapping[str, Locked],
    roles: Mapping[tuple[str, str], str],
    max_bytes: int,
    keep: int,
) -> Applied:
    """`items`: the group's items that exist; `roles`: (item id, user id) -> the role
    of each author who is a member (the owner needs none)."""
    applied = Applied([])
    current: dict[str, tuple[Locked, int, Any, str]] = {}  # item -> (row, version, state, text)
    history = applied.history
    for change in changes:
        item_id = change.item_id
        row = items.get(item_id)
        role = None if row is None else _role(row, roles, change)
        if row is None or role is None:
            applied.outcomes.append(NotFound("item not found"))
            continue
        if role not in WRITERS:
            applied.outcomes.append(Forbidden("readers cannot change the state"))
            continue
        now = current.get(item_id)
        if now is None:
            now = current[item_id] = (row, row.version, orjson.loads(row.state), row.state)
        try:
            state, text = _apply(row.kind, now[2], change, role, max_bytes)
        except Refusal as refusal:
            applied.outcomes.append(refusal)
            continue
        version = now[1] + 1
        current[item_id] = (row, version, state, text)
        applied.outcomes.append(StoredState(item_id, row.kind, version, text, change.username))
        history.append((item_id, version, change.username, text))
    for item_id, (row, version, _, text) in current.items():
        if version != row.version:
            applied.states[item_id] = (version, text)
            upto = prune_upto(row.version, version, keep)
            if upto is not None:
                applied.prune[item_id] = upto
    if len(history) > len(applied.states) and keep < len(history):
        # Only the last `keep` of each item need storing; older ones would be pruned.
        last = {item_id: version for item_id, (version, _) in applied.states.items()}
        applied.history = [h for h in history if h[1] > last[h[0]] - keep]
    return applied


def _role(row: Locked, roles: Mapping[tuple[str, str], str], change: Change) -> str | None:
    if row.owner_id == change.user_id:
        return "owner"
    return roles.get((change.item_id, change.user_id))


def _apply(
    kind_name: str, state: Any, change: Change, role: str, max_bytes: int
) -> tuple[Any, str]:
    kind = kinds.KINDS.get(kind_name)
    if kind is None:
        raise kinds.Invalid(f"this service no longer offers the kind {kind_name!r}")
    if change.field != kind.change_field:
        raise kinds.Invalid(f"a {kind.name} item is changed by {kind.change_field!r}")
    new = kind.apply(state, change.value, Actor(change.username, role))
    try:
        text = encode_state(new)
    except TypeError as exc:  # integers beyond 64 bits, nesting beyond 255 levels
        raise kinds.Invalid(f"the state cannot be stored: {exc}") from exc
    # Characters never outnumber bytes; encode only when it could matter.
    if len(text) > max_bytes // 4 and len(text.encode()) > max_bytes:
        raise TooLarge(f"the state would exceed {max_bytes} bytes")
    return new, text
