"""Fan-out: 100, 1,000 and 5,000 subscribers on one item, a burst and a paced stream."""

from __future__ import annotations

import asyncio

from bench.context import Context
from bench.fixtures import prepare
from bench.phases import run_phase
from bench.publisher import Publisher
from bench.results import Measurement, Metric, ScenarioResult
from bench.scenarios.common import close_all, guarded, subscribe

METRICS = (
    Metric("delivered_per_s", "delivered msg/s", "higher", 0),
    Metric("cpu_us_per_delivery", "server CPU µs / delivery", "lower"),
    Metric("p50_ms", "latency p50 ms", "lower"),
    Metric("p99_ms", "latency p99 ms", "lower"),
    Metric("refused", "publishes refused", "zero"),
    Metric("lost", "lost", "zero"),
    Metric("dup", "duplicated", "zero"),
    Metric("ooo", "out of order", "zero"),
    Metric("client_cpu_pct", "client processes CPU % (of one core)", "", 0),
)


def case_name(subscribers: int, mode: str, count: int, rate: float) -> str:
    if mode == "burst":
        return f"{subscribers:,} subs, burst of {count}"
    return f"{subscribers:,} subs, {rate:g} msg/s × {count}"


async def run(ctx: Context) -> ScenarioResult:
    plan = ctx.plan
    result = ScenarioResult(
        "fanout",
        "Fan-out: subscribers on one item",
        notes=[
            "One publisher socket (the item's owner) publishes; every subscriber presents "
            "the same reader account's token (one presence join). The service's abuse "
            "limits (sockets per user, publish rate) are lifted: capacity is measured.",
            "Lost counts the acknowledged messages a subscriber did not get; a publish the "
            "server refused (an `error` frame) is counted apart and expected by no one.",
            "Latency is publish→receipt: the publisher stamps `time.time()` into `data` "
            "when it sends, the subscriber compares on receipt — the same for all three "
            "servers (the service's stored `ts` has millisecond precision only).",
            "Delivered msg/s is deliveries ÷ (last receipt − first publish). The client "
            "processes share the machine's cores with the server: when their CPU nears "
            "100 % per process, a burst's rate and latency are the clients' limit, not the "
            "server's. Server CPU is utime+stime of the server's process tree from /proc, "
            "the figure least disturbed by that.",
        ],
    )
    cases: list[str] = []
    for kind in ctx.kinds:
        with guarded(ctx, result, kind), ctx.server("fanout", kind) as server:
            target = prepare(server, 1)
            item = target.items[0]
            publisher = await Publisher.open(target.ws_url(item, publisher=True))
            try:
                connected = 0
                for case in plan.fanout:
                    await subscribe(ctx, target.ws_url(item), case.subscribers - connected)
                    connected = case.subscribers
                    await asyncio.sleep(plan.settle_seconds)
                    paced = max(1, round(case.rate * plan.paced_seconds))
                    for mode, count, rate in (
                        ("burst", case.burst, 0.0),
                        ("paced", paced, case.rate),
                    ):
                        name = case_name(case.subscribers, mode, count, rate)
                        ctx.log(f"fanout: {kind}: {name}")
                        phase = await run_phase(
                            plan, ctx.pool, server, publisher, f"{mode}{connected}", count, rate
                        )
                        result.add(
                            Measurement(
                                "fanout",
                                name,
                                kind,
                                ctx.backend.name if kind == "ours" else None,
                                phase.metrics(),
                                {"mode": mode, "count": count, "rate": rate},
                            )
                        )
                        if name not in cases:
                            cases.append(name)
            finally:
                await close_all(ctx)
                await publisher.close()
    for name in cases:
        result.compare(name, METRICS)
    return result
