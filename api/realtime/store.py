"""The hub's window onto stored messages, provided by the layer above: reads only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Protocol

# Messages read from the store per query when filling a gap or catching a socket up.
FILL_PAGE = 500

# (item_id, after, upto) -> [(seq, frame text)] for after < seq <= upto, ascending.
FetchRange = Callable[[str, int, int], Awaitable[list[tuple[int, str]]]]


class Store(Protocol):
    async def fetch(self, item_id: str, after: int, upto: int) -> list[tuple[int, str]]:
        """`message` frames with after < seq <= upto, ascending."""
        ...

    async def latest(self, item_ids: Collection[str]) -> dict[str, int]:
        """The last seq stored for each existing item."""
        ...
