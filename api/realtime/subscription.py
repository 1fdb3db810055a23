"""One item followed on a multiplexed socket (`/ws`)."""

from __future__ import annotations

from typing import Protocol

from api.realtime import protocol
from api.realtime.outbox import Outbox

# A subscription's place in the item's presence.
ABSENT, JOINING, JOINED = 0, 1, 2


class Owner(Protocol):
    """The socket's side of its subscriptions (api/routes/multiplex_session)."""

    def lost(self, subscription: Subscription) -> None:
        """Access to the item is gone (member removed, item deleted): end it there."""


class Subscription:
    """A `/ws` socket's place in one item's stream.

    The item's stream pushes its frames here as it does to an item socket's outbox;
    they go on to the socket's one outbox (one bounded queue, one overflow policy for
    all its items) with this subscription as their cursor, so messages are deduplicated
    and caught up per item. One per item per socket, so kept small: slots only, and
    nothing allocated until needed.

    Until `start` (the `subscribed` frame is queued), messages are dropped (the
    catch-up covers them, it runs up to where the stream stood at the start) and
    unsequenced frames (state changes, presence) are held, to follow that frame.
    """

    __slots__ = (
        "_held",
        "catch_up_to",
        "ended",
        "item_id",
        "last_seq",
        "outbox",
        "owner",
        "presence",
    )

    def __init__(self, outbox: Outbox, item_id: str, owner: Owner) -> None:
        self.outbox = outbox
        self.item_id = item_id
        self.owner = owner
        self.last_seq = 0  # highest seq of the item sent (or dropped as already sent)
        self.catch_up_to = 0
        # () before the start with nothing held, a list once something is; None after.
        self._held: tuple[()] | list[str] | None = ()
        self.ended = False
        self.presence = ABSENT  # counted in the item's presence: JOINING, then JOINED

    # What revocations and presence look at: the socket's.

    @property
    def user_id(self) -> str:
        return self.outbox.user_id

    @property
    def username(self) -> str:
        return self.outbox.username

    @property
    def session_id(self) -> str:
        return self.outbox.session_id

    @property
    def started(self) -> bool:
        return self._held is None

    def push(self, seq: int, frame: str) -> None:
        held = self._held
        if held is None:
            if seq:
                self.outbox.push(seq, frame, self)
            else:
                self.outbox.push(0, protocol.naming_item(frame, self.item_id), self)
        elif not seq and not self.ended:
            if isinstance(held, list):
                held.append(frame)
            else:
                self._held = [frame]

    def start(self, first: tuple[str, ...]) -> None:
        """Queue `first` (`subscribed`, then the state snapshot if asked), the catch-up
        (`last_seq` to `catch_up_to`), then what was held."""
        held, self._held = self._held, None
        outbox = self.outbox
        for frame in first:
            outbox.push(0, frame)
        if self.catch_up_to > self.last_seq:
            outbox.catch_up(self)
        for frame in held or ():
            self.push(0, frame)

    def end(self) -> None:
        """Nothing more of the item: a catch-up queued or under way stops at its page."""
        self.ended = True
        self.catch_up_to = 0
        if self._held:
            self._held = ()

    def request_close(self, code: int, reason: str) -> None:
        """Lost access ends the subscription alone; anything else (the broker or the
        store failing) closes the socket, which resubscribes with `since`."""
        if code == protocol.POLICY_VIOLATION and reason == protocol.FORBIDDEN:
            if not self.ended:
                self.owner.lost(self)
        else:
            self.outbox.request_close(code, reason)
