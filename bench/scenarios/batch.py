"""Batched delivery (`?batch=1`) under overload: a burst far beyond what clients read."""

from __future__ import annotations

import asyncio

from bench.context import Context
from bench.fixtures import prepare
from bench.phases import run_phase
from bench.publisher import Publisher
from bench.results import Measurement, ScenarioResult
from bench.scenarios.common import close_all, guarded, subscribe
from bench.scenarios.fanout import METRICS


async def run(ctx: Context) -> ScenarioResult:
    plan = ctx.plan
    subscribers, burst = plan.batch_subscribers, plan.batch_burst
    case = f"{subscribers:,} subs, burst of {burst}"
    result = ScenarioResult(
        "batch",
        "Batched delivery under overload",
        notes=[
            "The fan-out burst again, bigger: the publisher sends faster than the "
            "subscribers' client processes can read, so frames pile up in every socket's "
            "buffers. The service's subscribers connect with `?batch=1`, and what piles up "
            "for a socket goes out as one `batch` frame; the baselines have no such mode "
            "and send every message as a frame of its own.",
            "Loss, duplicates and order are counted per message, batches unpacked.",
        ],
    )
    for kind in ctx.kinds:
        with guarded(ctx, result, kind), ctx.server("batch", kind) as server:
            target = prepare(server, 1)
            item = target.items[0]
            publisher = await Publisher.open(target.ws_url(item, publisher=True))
            try:
                await subscribe(ctx, target.ws_url(item, batch=kind == "ours"), subscribers)
                await asyncio.sleep(plan.settle_seconds)
                ctx.log(f"batch: {kind}: {case}")
                phase = await run_phase(
                    plan, ctx.pool, server, publisher, f"batch{subscribers}", burst, 0.0
                )
                result.add(
                    Measurement(
                        "batch",
                        case,
                        kind,
                        ctx.backend.name if kind == "ours" else None,
                        phase.metrics(),
                        {"subscribers": subscribers, "mode": "burst", "count": burst},
                    )
                )
            finally:
                await close_all(ctx)
                await publisher.close()
    result.compare(case, METRICS)
    return result
