"""What a kind is: an initial state and a rule that turns a state and a change into the next.

A kind never touches the database or the network: it is given the current state (a
JSON object, already decoded), the change a client sent and who sent it, and returns
the next state or raises a `Refusal` saying why not. The store applies changes one
after another on the stored version, so `apply` needs no locking of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

JSONObject = dict[str, Any]
ChangeField = Literal["ops", "action"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change: the item's owner or one of its writers (readers never get here)."""

    username: str
    role: str  # "owner" or "writer"


class Refusal(Exception):
    """A change that is not applied; `reason` is shown to the client as is."""

    code: ClassVar[str] = "bad_request"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Conflict(Refusal):
    """The state is not what the change expected (a failed JSON Patch `test`)."""

    code = "conflict"


class Illegal(Refusal):
    """Against the kind's rules: not your turn, cell taken, game over..."""

    code = "illegal"


class Invalid(Refusal):
    """Malformed, does not apply to the state, or the wrong kind of change."""

    code = "bad_request"


class Kind:
    """Subclass this, set the class attributes, implement `initial` and `apply`, and
    register the class in `api.kinds.KINDS`."""

    name: ClassVar[str]
    description: ClassVar[str]
    # The field of a change request that carries this kind's changes: JSON Patch
    # operations (`{"ops": [...]}`) or a game action (`{"action": {...}}`).
    change_field: ClassVar[ChangeField]

    def initial(self, owner: str) -> JSONObject:
        """The state of a newly created item owned by `owner` (version 0)."""
        raise NotImplementedError

    def apply(self, state: JSONObject, change: Any, actor: Actor) -> JSONObject:
        """The next state. Must not modify `state`; raises a `Refusal` to refuse."""
        raise NotImplementedError
