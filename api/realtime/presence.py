"""Who is online per item: a user joins with their first socket and leaves with their last."""

from __future__ import annotations

from collections import defaultdict
from typing import Protocol


class Presence(Protocol):
    async def join(self, item_id: str, username: str, socket_key: int) -> int | None:
        """Count a socket; the item's user count when this user just came online."""
        ...

    async def leave(self, item_id: str, username: str, socket_key: int) -> int | None:
        """Forget a socket; the item's user count when this user just went offline."""
        ...

    async def users(self, item_id: str) -> list[str]:
        """Usernames online on the item, in code-point order."""
        ...


class MemoryPresence:
    """Presence for a single process."""

    def __init__(self) -> None:
        self._items: defaultdict[str, defaultdict[str, set[int]]] = defaultdict(
            lambda: defaultdict(set)
        )

    async def join(self, item_id: str, username: str, socket_key: int) -> int | None:
        users = self._items[item_id]
        sockets = users[username]
        sockets.add(socket_key)
        return len(users) if len(sockets) == 1 else None

    async def leave(self, item_id: str, username: str, socket_key: int) -> int | None:
        users = self._items.get(item_id)
        if users is None or socket_key not in users.get(username, ()):
            return None
        sockets = users[username]
        sockets.discard(socket_key)
        if sockets:
            return None
        del users[username]
        count = len(users)
        if not users:
            del self._items[item_id]
        return count

    async def users(self, item_id: str) -> list[str]:
        return sorted(self._items.get(item_id, {}))
