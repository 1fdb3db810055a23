"""Group commits: whatever is waiting to be stored goes to the store in one transaction.

Message publishes and state changes of every socket and REST call of a process queue
on a `GroupCommit` (one per kind of write). One task takes everything queued when it
gets its turn — a lone request is never delayed waiting for a group to fill — and hands
it to the store, which stores the group in one transaction and returns one result per
request, in order. Only then are the callers answered: acknowledged means committed. A
store that raises (unreachable, transaction refused) stored nothing of the group, and
every caller of the group is told `Unavailable` (and may try again); the requests
queued behind it go in the next group, as usual. After the answers, `after` gets the
group's results (to hand what was stored to the deliveries).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, Protocol, TypeVar, cast

from api.errors import Unavailable

log = logging.getLogger(__name__)

Request = TypeVar("Request")
Result = TypeVar("Result")
Request_contra = TypeVar("Request_contra", contravariant=True)
Result_co = TypeVar("Result_co", covariant=True)

# How long `stop` waits for the queue to drain.
DRAIN_TIMEOUT = 30.0


class CommitStore(Protocol[Request_contra, Result_co]):
    async def open(self) -> None:
        """Connect (a store that cannot connect yet retries at its next group)."""
        ...

    async def close(self) -> None: ...

    async def store(self, group: Sequence[Request_contra]) -> Sequence[Result_co]:
        """Store a group in one transaction, one result per request, in order; raises
        (nothing stored) when the database cannot be reached or refuses the transaction."""
        ...


class GroupCommit(Generic[Request, Result]):
    def __init__(
        self,
        store: CommitStore[Request, Result],
        *,
        name: str,
        max_group: int,
        raises: tuple[type[BaseException], ...] = (),
        after: Callable[[Sequence[Result]], Awaitable[None]] | None = None,
    ) -> None:
        """`raises`: results of these types fail their caller's future instead of
        resolving it (a refusal the caller handles as an exception)."""
        self._store = store
        self._name = name
        self._max_group = max(1, max_group)
        self._raises = raises
        self._after = after
        self._queue: deque[tuple[Request, asyncio.Future[Result]]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        await self._store.open()
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        """Store what is queued, then stop."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, DRAIN_TIMEOUT)
            except TimeoutError:
                log.error("%s did not drain in time", self._name)
        await self._store.close()

    def submit(self, request: Request) -> asyncio.Future[Result]:
        """Queue a request; its future resolves once the group it went in is committed."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        self._wake.set()
        return future

    async def _run(self) -> None:
        queue = self._queue
        while not (self._stopping and not queue):
            await self._wake.wait()
            self._wake.clear()
            while queue:
                size = min(self._max_group, len(queue))
                await self._commit([queue.popleft() for _ in range(size)])

    async def _commit(self, group: list[tuple[Request, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._store.store([request for request, _ in group])
            if len(results) != len(group):
                raise RuntimeError(f"{len(results)} results for a group of {len(group)}")
        except Exception as exc:
            log.warning("%s: storing a group of %d failed: %r", self._name, len(group), exc)
            for _, future in group:
                if not future.done():
                    failure = Unavailable()
                    failure.__cause__ = exc
                    future.set_exception(failure)
            return
        raises = self._raises
        for (_, future), result in zip(group, results, strict=True):
            if future.done():  # its caller gave up waiting; stored all the same
                continue
            if raises and isinstance(result, raises):
                future.set_exception(cast(BaseException, result))
            else:
                future.set_result(result)
        if self._after is None:
            return
        try:
            await self._after(results)
        except Exception:
            # Stored: the deliveries fill the gap from the store.
            log.warning("%s: handing a stored group on failed", self._name, exc_info=True)
