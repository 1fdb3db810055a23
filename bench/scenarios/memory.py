"""Memory: the server's RSS per idle authenticated socket."""

from __future__ import annotations

import asyncio

from bench.context import Context
from bench.fixtures import prepare
from bench.results import Measurement, Metric, ScenarioResult, Value
from bench.scenarios.common import close_all, guarded, subscribe

WARM_UP = 50  # per client process, opened and closed before the baseline RSS

METRICS = (
    Metric("kb_per_socket", "RSS KB / socket", "lower"),
    Metric("rss_mb", "server RSS MB", "lower"),
)


async def run(ctx: Context) -> ScenarioResult:
    plan = ctx.plan
    result = ScenarioResult(
        "memory",
        "Memory: idle sockets",
        notes=[
            "RSS (VmRSS of the server's process tree) with N idle sockets open, minus the RSS "
            "after a warm-up of a few sockets opened and closed, divided by N. The service's "
            "sockets are authenticated, with their `ready` frame received.",
        ],
    )
    cases: list[str] = []
    for kind in ctx.kinds:
        with guarded(ctx, result, kind), ctx.server("memory", kind) as server:
            target = prepare(server, 1)
            url = target.ws_url(target.items[0])
            try:
                await subscribe(ctx, url, WARM_UP * ctx.pool.size)
                await close_all(ctx)
                await asyncio.sleep(2 * plan.settle_seconds)
                rss0 = server.rss_bytes()
                opened = 0
                for step in plan.memory_steps:
                    ctx.log(f"memory: {kind}: {step:,} sockets")
                    await subscribe(ctx, url, step - opened)
                    opened = step
                    await asyncio.sleep(2 * plan.settle_seconds)
                    rss = server.rss_bytes()
                    case = f"{step:,} idle sockets"
                    metrics: dict[str, Value] = {
                        "sockets": step,
                        "rss_mb": rss / 2**20,
                        "baseline_rss_mb": rss0 / 2**20,
                        "kb_per_socket": (rss - rss0) / step / 1024,
                    }
                    result.add(
                        Measurement(
                            "memory",
                            case,
                            kind,
                            ctx.backend.name if kind == "ours" else None,
                            metrics,
                            {"sockets": step},
                        )
                    )
                    if case not in cases:
                        cases.append(case)
            finally:
                await close_all(ctx)
    for case in cases:
        result.compare(case, METRICS)
    return result
