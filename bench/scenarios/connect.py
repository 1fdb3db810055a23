"""Connect: handshakes per second and server CPU per handshake, counted to `ready`."""

from __future__ import annotations

import asyncio
import time

from bench.context import Context
from bench.fixtures import prepare
from bench.results import Measurement, Metric, ScenarioResult
from bench.scenarios.common import close_all, guarded, subscribe

WARM_UP = 20  # per client process, opened and closed before measuring

METRICS = (
    Metric("handshakes_per_s", "handshakes/s", "higher", 0),
    Metric("cpu_us_per_handshake", "server CPU µs / handshake", "lower", 0),
    Metric("failed", "failed", "zero"),
)


async def run(ctx: Context) -> ScenarioResult:
    plan = ctx.plan
    n = plan.connect_count
    concurrency = plan.connect_concurrency * ctx.pool.size
    case = f"{n:,} sockets, {concurrency} in flight"
    result = ScenarioResult(
        "connect",
        "Connect: handshakes to the `ready` frame",
        notes=[
            "The service's handshakes are authenticated (`?token=` access token: JWT, "
            "session and item access checked) and end with its `ready` frame; the baselines' "
            "are unauthenticated and end with a `ready` frame of the same shape.",
            "Sockets stay open until all are counted; CPU is the server's over the whole "
            "batch, divided by the handshakes.",
        ],
    )
    for kind in ctx.kinds:
        with guarded(ctx, result, kind), ctx.server("connect", kind) as server:
            target = prepare(server, 1)
            url = target.ws_url(target.items[0])
            try:
                await subscribe(ctx, url, WARM_UP * ctx.pool.size)
                await close_all(ctx)
                await asyncio.sleep(plan.settle_seconds)
                ctx.log(f"connect: {kind}: {case}")
                with server.sampled(f"connect {case}"):
                    cpu0 = server.cpu_seconds()
                    started = time.time()
                    reply = await ctx.pool.connect(
                        url,
                        n,
                        concurrency=plan.connect_concurrency,
                        within=ctx.connect_limit(n),
                    )
                    cpu = server.cpu_seconds() - cpu0
                opened = reply["opened"]
                seconds = reply["last_ready"] - started
                metrics = {
                    "opened": opened,
                    "failed": reply["failed"],
                    "handshakes_per_s": opened / seconds if opened and seconds > 0 else None,
                    "cpu_us_per_handshake": cpu / opened * 1e6 if opened else None,
                    "server_cpu_s": round(cpu, 3),
                }
                if reply["errors"]:
                    result.notes.append(f"{kind}: failed handshakes, e.g. {reply['errors'][0]}")
                result.add(
                    Measurement(
                        "connect",
                        case,
                        kind,
                        ctx.backend.name if kind == "ours" else None,
                        metrics,
                        {"count": n, "concurrency": concurrency},
                    )
                )
            finally:
                await close_all(ctx)
    result.compare(case, METRICS)
    return result
