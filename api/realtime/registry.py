"""Every open socket of this process, by session and by user (item and monitor alike)."""

from __future__ import annotations

from collections import Counter, defaultdict

from api.realtime.outbox import Outbox


class Registry:
    def __init__(self) -> None:
        self._by_session: defaultdict[str, set[Outbox]] = defaultdict(set)
        self._per_user: Counter[str] = Counter()

    def add(self, outbox: Outbox) -> None:
        self._by_session[outbox.session_id].add(outbox)
        self._per_user[outbox.user_id] += 1

    def remove(self, outbox: Outbox) -> bool:
        """Forget the socket; False if it was not registered."""
        sessions = self._by_session.get(outbox.session_id)
        if sessions is None or outbox not in sessions:
            return False
        sessions.discard(outbox)
        if not sessions:
            del self._by_session[outbox.session_id]
        self._per_user[outbox.user_id] -= 1
        if self._per_user[outbox.user_id] <= 0:
            del self._per_user[outbox.user_id]
        return True

    def move_session(self, outbox: Outbox, session_id: str) -> None:
        """The socket is now governed by another session (after a token refresh)."""
        if outbox.session_id == session_id:
            return
        if not self.remove(outbox):
            outbox.session_id = session_id
            return
        outbox.session_id = session_id
        self.add(outbox)

    def of_session(self, session_id: str) -> tuple[Outbox, ...]:
        return tuple(self._by_session.get(session_id, ()))

    def sockets_of_user(self, user_id: str) -> int:
        return self._per_user[user_id]

    def all(self) -> list[Outbox]:
        return [outbox for outboxes in self._by_session.values() for outbox in outboxes]
