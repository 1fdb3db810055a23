"""What an item's stream delivers to: an item socket's outbox, or one subscription of a
multiplexed socket (`/ws`)."""

from __future__ import annotations

from typing import Protocol


class Sink(Protocol):
    """Takes an item's frames; tells a revocation by `request_close` (1008 `forbidden`)."""

    item_id: str

    @property
    def user_id(self) -> str: ...

    @property
    def username(self) -> str: ...

    @property
    def session_id(self) -> str: ...

    def push(self, seq: int, frame: str) -> None:
        """Queue a frame (seq 0: unsequenced, presence or state); never waits."""

    def request_close(self, code: int, reason: str) -> None:
        """Stop delivering, for `reason`."""
