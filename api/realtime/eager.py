"""Run a coroutine at once, up to the point where it would wait.

Sending a frame to a socket whose write buffer has room never waits, yet awaiting it
from a task per socket costs a task wake-up for every socket and every message: the
bulk of the fan-out's time when messages trickle in. Stepping the send from a plain
callback writes the frame at once, and only a send that has to wait (a full buffer)
gets a task. Python 3.12's eager task factory does this for whole programs; the
service supports 3.11.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Generator
from typing import Any

# Makes the task that finishes a coroutine (a task group's `create_task`, say).
Spawn = Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]


def start_eagerly(
    coro: Coroutine[Any, Any, None], name: str, spawn: Spawn | None = None
) -> asyncio.Task[None] | None:
    """Run `coro` until it finishes or first waits; a task that finishes it in the latter case.

    Its exceptions, when it fails before waiting, are raised here.
    """
    try:
        waiting_for = coro.send(None)
    except StopIteration:
        return None
    resumed = _Resumed(coro, waiting_for)
    if spawn is not None:
        return spawn(resumed, name)
    return asyncio.get_running_loop().create_task(resumed, name=name)


_STARTED = object()


class _Resumed(Coroutine[Any, Any, None]):
    """A coroutine that has already run up to its first wait, for a task to drive on.

    The task's first step gets back what the coroutine waits for; everything after,
    a cancellation before that first step included, goes straight to the coroutine.
    """

    __slots__ = ("_coro", "_first")

    def __init__(self, coro: Coroutine[Any, Any, None], first: Any) -> None:
        self._coro = coro
        self._first = first

    def send(self, value: Any) -> Any:
        first = self._first
        if first is not _STARTED:
            self._first = _STARTED
            return first
        return self._coro.send(value)

    def throw(self, *args: Any) -> Any:
        first = self._first
        self._first = _STARTED
        if first is not _STARTED and isinstance(first, asyncio.Future):
            # Cancelled (or failed) before the task ever waited on it: drop the wait,
            # as a task does with the future it is waiting on when it is cancelled.
            first.cancel()
        return self._coro.throw(*args)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, None]:
        raise TypeError("driven by its task only")
