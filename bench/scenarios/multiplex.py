"""Many items on one socket: `/ws` against the item channel, on the same server.

Memory per subscription, and fan-out CPU per delivery through `/ws` beside the item
channel's. Only the service has `/ws`: the baselines are not run.
"""

from __future__ import annotations

import asyncio

from bench.context import Context
from bench.fixtures import Target, prepare
from bench.phases import run_phase
from bench.publisher import Publisher
from bench.results import Measurement, Metric, ScenarioResult, Value
from bench.scenarios.common import ScenarioError, close_all, guarded, subscribe
from bench.scenarios.fanout import METRICS as FANOUT_METRICS
from bench.servers import ServerProcess

WARM_UP = 50  # per client process, opened and closed before the baseline RSS

MEMORY_METRICS = (
    Metric("kb_per_subscription", "RSS KB / extra subscription", "lower", 2),
    Metric("kb_per_socket", "RSS KB / socket (one subscription)", "lower"),
    Metric("rss_mb", "server RSS MB", "lower"),
)


async def run(ctx: Context) -> ScenarioResult:
    plan = ctx.plan
    n, k = plan.multiplex_sockets, plan.multiplex_subscriptions
    result = ScenarioResult(
        "multiplex",
        "Many items on one socket: `/ws` against the item channel",
        notes=[
            f"{n:,} sockets on `/ws`, each subscribed to {k} items, against {n:,} item-channel "
            "sockets on one item, on the same server; one publisher socket publishes on "
            "that item (the others are quiet), so each socket gets every message once.",
            "Memory: RSS after a warm-up, then with the `/ws` sockets open and one "
            f"subscription each, then after each subscribed to {k - 1} more items: the "
            "difference divided by the added subscriptions. Measured first, on a fresh "
            "server, so that no freed socket's memory is reused by the next ones.",
            "Only the service has `/ws`: the ours column is the service, on its default "
            "backend; the baselines are not run here.",
        ],
    )
    if "ours" not in ctx.kinds:
        return result
    cases: list[str] = []
    with guarded(ctx, result, "ours"), ctx.server("multiplex", "ours") as server:
        target = prepare(server, k)
        publisher = await Publisher.open(target.ws_url(target.items[0], publisher=True))
        try:
            await subscribe(ctx, target.multiplex_url(), WARM_UP * ctx.pool.size)
            await close_all(ctx)
            await asyncio.sleep(2 * plan.settle_seconds)
            cases.append(await _memory(ctx, server, target, result))
            cases += await _fanout(ctx, server, publisher, result, "ws", f"/ws, {n:,} × {k}")
            await close_all(ctx)
            await subscribe(ctx, target.ws_url(target.items[0]), n)
            cases += await _fanout(ctx, server, publisher, result, "item", f"item channel, {n:,}")
        finally:
            await close_all(ctx)
            await publisher.close()
    for case in cases:
        metrics = MEMORY_METRICS if case.startswith("memory") else FANOUT_METRICS
        result.compare(case, metrics)
    return result


async def _memory(
    ctx: Context, server: ServerProcess, target: Target, result: ScenarioResult
) -> str:
    """Open the `/ws` sockets with one subscription, then add the others; RSS at each."""
    plan = ctx.plan
    n, k = plan.multiplex_sockets, plan.multiplex_subscriptions
    rss0 = server.rss_bytes()
    ctx.log(f"multiplex: {n:,} sockets on /ws, 1 subscription each")
    await subscribe(ctx, target.multiplex_url(), n, items=target.items[:1])
    await asyncio.sleep(2 * plan.settle_seconds)
    rss1 = server.rss_bytes()
    ctx.log(f"multiplex: {k - 1} more subscriptions each")
    within = ctx.connect_limit(n * (k - 1))
    replies = await ctx.pool.each(
        "subscribe",
        wait=within,
        items=list(target.items[1:]),
        concurrency=plan.connect_concurrency,
        within=within,
    )
    failed = sum(r["failed"] for r in replies)
    if failed:
        errors = [e for r in replies for e in r["errors"]][:5]
        raise ScenarioError(f"{failed} sockets could not subscribe: {errors}")
    await asyncio.sleep(2 * plan.settle_seconds)
    rss = server.rss_bytes()
    added = n * (k - 1)
    case = f"memory, {n:,} sockets × {k} subscriptions"
    metrics: dict[str, Value] = {
        "rss_mb": rss / 2**20,
        "baseline_rss_mb": rss0 / 2**20,
        "kb_per_socket": (rss1 - rss0) / n / 1024,
        "kb_per_subscription": (rss - rss1) / added / 1024 if added else None,
    }
    result.add(
        Measurement(
            "multiplex",
            case,
            "ours",
            ctx.backend.name,
            metrics,
            {"socket": "ws", "mode": "memory", "sockets": n, "subscriptions": k},
        )
    )
    return case


async def _fanout(
    ctx: Context,
    server: ServerProcess,
    publisher: Publisher,
    result: ScenarioResult,
    socket: str,
    label: str,
) -> list[str]:
    """A burst then a paced stream on the published item; one measurement each."""
    plan = ctx.plan
    await asyncio.sleep(plan.settle_seconds)
    paced = max(1, round(plan.multiplex_rate * plan.paced_seconds))
    names = []
    for mode, count, rate in (
        ("burst", plan.multiplex_burst, 0.0),
        ("paced", paced, plan.multiplex_rate),
    ):
        name = f"{label}, burst of {count}" if mode == "burst" else f"{label}, {rate:g} msg/s"
        ctx.log(f"multiplex: {name}")
        phase = await run_phase(
            plan, ctx.pool, server, publisher, f"mux-{socket}-{mode}", count, rate
        )
        result.add(
            Measurement(
                "multiplex",
                name,
                "ours",
                ctx.backend.name,
                phase.metrics(),
                {"socket": socket, "mode": mode, "count": count, "rate": rate},
            )
        )
        names.append(name)
    return names
