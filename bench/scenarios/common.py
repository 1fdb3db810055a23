"""Helpers the scenarios share."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.context import Context
from bench.results import ScenarioResult

CLOSE_WAIT = 30.0


class ScenarioError(RuntimeError):
    pass


async def subscribe(
    ctx: Context,
    url: str,
    n: int,
    *,
    slow: bool = False,
    rcvbuf: int = 0,
    mss: int = 0,
    items: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Open `n` subscribers on the workers (on `/ws`, each subscribed to `items`); every
    one of them or an error."""
    reply = await ctx.pool.connect(
        url,
        n,
        concurrency=ctx.plan.connect_concurrency,
        within=ctx.connect_limit(n),
        slow=slow,
        rcvbuf=rcvbuf,
        mss=mss,
        items=items,
    )
    if reply["failed"]:
        raise ScenarioError(f"{reply['failed']} of {n} sockets did not open: {reply['errors']}")
    return reply


async def close_all(ctx: Context) -> None:
    await ctx.pool.each("close", wait=CLOSE_WAIT, within=CLOSE_WAIT)


@contextmanager
def guarded(ctx: Context, result: ScenarioResult, label: str) -> Iterator[None]:
    """Record a failure of one server's run and go on with the next one."""
    try:
        yield
    except Exception as exc:
        message = f"{label}: {type(exc).__name__}: {exc}"
        result.errors.append(message)
        ctx.log(f"{result.name}: FAILED {message}\n{traceback.format_exc()}")
