"""Who is online per item: a user joins with their first socket and leaves with their last."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Protocol

# (item_id, "join" | "leave", username, users online): how presence changes are announced.
Announce = Callable[[str, str, str, int], Awaitable[None]]


class Presence(Protocol):
    announce: Announce | None

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def join(self, item_id: str, username: str, socket_key: int) -> int | None:
        """Count a socket; the item's user count when this user just came online."""
        ...

    async def leave(self, item_id: str, username: str, socket_key: int) -> int | None:
        """Forget a socket; the item's user count when this user just went offline."""
        ...

    async def users(self, item_id: str) -> list[str]:
        """Usernames online on the item, in code-point order."""
        ...

    async def resync(self) -> None:
        """Rebuild this process's share after the shared store lost it."""
        ...


class MemoryPresence:
    """Presence for a single process."""

    def __init__(self) -> None:
        self.announce: Announce | None = None
        self._items: defaultdict[str, defaultdict[str, set[int]]] = defaultdict(
            lambda: defaultdict(set)
        )

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def resync(self) -> None:
        return None

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
