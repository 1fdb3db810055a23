"""One slow subscriber among many must not change the others' latency."""

from __future__ import annotations

import asyncio

from bench.context import Context
from bench.fixtures import prepare
from bench.phases import PhaseResult, run_phase
from bench.publisher import Publisher
from bench.results import Measurement, Metric, ScenarioResult, Value
from bench.scenarios.common import close_all, guarded, subscribe

METRICS = (
    Metric("p50_ms", "others' p50 ms", "lower"),
    Metric("p99_ms", "others' p99 ms", "lower"),
    Metric("max_ms", "others' max ms", "lower"),
    Metric("lost", "others' lost", "zero"),
    Metric("dup", "others' duplicated", "zero"),
    Metric("ooo", "others' out of order", "zero"),
)
SLOWED = (
    Metric("p99_change", "others' p99 slowed ÷ steady", "lower", 2),
    Metric("slow_received", "slow subscriber: received", ""),
    Metric("slow_closed", "slow subscriber: closed with", ""),
)


def _metrics(phase: PhaseResult) -> dict[str, Value]:
    metrics = phase.metrics()
    codes = [c for c in phase.slow_close_codes if c is not None]
    metrics["slow_received"] = phase.slow_received
    metrics["slow_closed"] = codes[0] if codes else 0
    return metrics


async def run(ctx: Context) -> ScenarioResult:
    plan = ctx.plan
    n = plan.slow_subscribers
    count = max(1, round(plan.slow_rate * plan.slow_seconds))
    steady = f"{n - 1:,} subs, {plan.slow_rate:g} msg/s × {count}"
    slowed = f"{n - 1:,} subs + 1 stalled, {plan.slow_rate:g} msg/s × {count}"
    result = ScenarioResult(
        "slow",
        "Slow subscriber: one stalled socket among many",
        notes=[
            f"{n:,} subscribers on one item, one of them on a slow link (a "
            f"{plan.slow_rcvbuf}-byte receive buffer and {plan.slow_mss}-byte segments, so "
            "the server's kernel buffers tens of KB for it rather than megabytes). Two paced "
            f"phases, messages padded to {plan.slow_padding:,} bytes of data: the others "
            "alone, then with the slow one connected and not reading its socket at all. The "
            "others' figures must not change.",
            "The tutorial's broadcast awaits each send in turn: once the stalled socket's "
            "buffers are full it waits forever, and everyone else stops receiving (their "
            "messages count as lost when the phase's time limit runs out). `broadcast()` "
            "never waits: the stalled socket's messages pile up in its write buffer.",
            "`slow subscriber: closed with` is the close code it saw (0: still open).",
        ],
    )
    for kind in ctx.kinds:
        with guarded(ctx, result, kind), ctx.server("slow", kind) as server:
            target = prepare(server, 1)
            item = target.items[0]
            publisher = await Publisher.open(target.ws_url(item, publisher=True))
            try:
                await subscribe(ctx, target.ws_url(item), n - 1)
                await asyncio.sleep(plan.settle_seconds)
                phases: dict[str, PhaseResult] = {}
                for case, stalled in ((steady, False), (slowed, True)):
                    if stalled:
                        # A fresh connection: its small window and segments keep the
                        # server's send buffer for it small (no warmed-up congestion window).
                        await subscribe(
                            ctx,
                            target.ws_url(item),
                            1,
                            slow=True,
                            rcvbuf=plan.slow_rcvbuf,
                            mss=plan.slow_mss,
                        )
                        await ctx.pool.each("stall", wait=10, on=True)
                        await asyncio.sleep(plan.settle_seconds)
                    ctx.log(f"slow: {kind}: {case}")
                    phases[case] = await run_phase(
                        plan,
                        ctx.pool,
                        server,
                        publisher,
                        "stalled" if stalled else "steady",
                        count,
                        plan.slow_rate,
                        pad=plan.slow_padding,
                    )
                before, after = _metrics(phases[steady]), _metrics(phases[slowed])
                p99_before, p99_after = before.get("p99_ms"), after.get("p99_ms")
                after["p99_change"] = (
                    p99_after / p99_before
                    if isinstance(p99_before, float)
                    and isinstance(p99_after, float)
                    and p99_before > 0
                    else None
                )
                backend = ctx.backend.name if kind == "ours" else None
                params = {"subscribers": n, "rate": plan.slow_rate, "padding": plan.slow_padding}
                result.add(Measurement("slow", steady, kind, backend, before, params))
                result.add(Measurement("slow", slowed, kind, backend, after, params))
            finally:
                await close_all(ctx)
                await publisher.close()
    result.compare(steady, METRICS)
    result.compare(slowed, METRICS + SLOWED)
    return result
