"""Matching `ack` and `error` frames to the publishes waiting for them, by `ref`."""

from __future__ import annotations

import asyncio
import itertools

from api.client.errors import PublishError


class Acks:
    """The publishes sent on a channel and not yet answered."""

    def __init__(self) -> None:
        self._refs = itertools.count(1)
        self._pending: dict[str, asyncio.Future[int]] = {}

    def expect(self) -> tuple[str, asyncio.Future[int]]:
        """A new ref, and the future its answer resolves."""
        ref = f"p{next(self._refs)}"
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending[ref] = future
        return ref, future

    def forget(self, ref: str) -> None:
        self._pending.pop(ref, None)

    def acked(self, ref: object, seq: int) -> bool:
        future = self._pending.pop(ref, None) if isinstance(ref, str) else None
        if future is None:
            return False
        if not future.done():
            future.set_result(seq)
        return True

    def refused(self, ref: object, code: str, detail: str) -> bool:
        future = self._pending.pop(ref, None) if isinstance(ref, str) else None
        if future is None:
            return False
        if not future.done():
            future.set_exception(PublishError(code, detail))
        return True

    def fail_all(self, error: BaseException) -> None:
        """The socket is gone: nothing sent on it will be answered."""
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)
