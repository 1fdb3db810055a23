"""Publish: stored messages per second, one item and many, over WebSocket and REST."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from bench.context import Context
from bench.fixtures import Target, prepare
from bench.results import Measurement, Metric, ScenarioResult, Value
from bench.scenarios.common import guarded
from bench.servers import Backend, Kind, ServerProcess

OPEN_WAIT = 60.0

METRICS = (
    Metric("stored_per_s", "stored msg/s", "higher", 0),
    Metric("cpu_us_per_message", "server CPU µs / message", "lower", 0),
    Metric("failed", "failed publishes", "zero"),
    Metric("dup", "duplicated seqs", "zero"),
    Metric("gaps", "missing seqs", "zero"),
)


@dataclass(frozen=True)
class Case:
    mode: str  # "ws" or "rest"
    items: int
    # One socket in one client process with this many publishes unacknowledged (0: the
    # plan's window, one socket per item and process).
    one_socket_window: int = 0

    @property
    def name(self) -> str:
        where = "1 item" if self.items == 1 else f"{self.items} items"
        if self.one_socket_window:
            where += f", one socket, {self.one_socket_window} in flight"
        return f"{'WebSocket' if self.mode == 'ws' else 'REST'}, {where}"


def seq_check(seqs: list[tuple[str, int]]) -> tuple[int, int]:
    """(duplicated, missing) acknowledged seqs: each item's must be exactly 1..n."""
    by_item: defaultdict[str, list[int]] = defaultdict(list)
    for item_id, seq in seqs:
        by_item[item_id].append(seq)
    dup = missing = 0
    for values in by_item.values():
        distinct = set(values)
        dup += len(values) - len(distinct)
        missing += max(distinct) - len(distinct)
    return dup, missing


def _commands(ctx: Context, case: Case, target: Target, items: list[str]) -> dict[int, Any]:
    pool = ctx.pool
    commands: dict[int, dict[str, Any]] = {}
    for index in range(1 if case.one_socket_window else pool.size):
        if case.mode == "ws":
            # One socket per item; on one item, one socket per client process.
            mine = items if case.items == 1 else items[index :: pool.size]
            urls = {item: target.ws_url(item, publisher=True) for item in mine}
        else:
            urls = {}
        commands[index] = {
            "op": "load_open",
            "mode": case.mode,
            "host": target.host,
            "port": target.port,
            "urls": urls,
            "token": target.owner_token,
            "connections": ctx.plan.rest_connections,
            "within": OPEN_WAIT,
        }
    return commands


async def measure(
    ctx: Context, server: ServerProcess, target: Target, case: Case, items: list[str]
) -> dict[str, Value]:
    plan = ctx.plan
    pool = ctx.pool
    window = plan.publish_window_one_item if case.items == 1 else plan.publish_window_many_items
    window = case.one_socket_window or window
    await pool.call(_commands(ctx, case, target, items), OPEN_WAIT)
    try:
        within = plan.phase_grace + plan.publish_total / 50
        shares = [plan.publish_total] if case.one_socket_window else pool.split(plan.publish_total)
        commands = {
            index: {
                "op": "load_run",
                "total": share,
                "window": window,
                "items": items,
                "within": within,
            }
            for index, share in enumerate(shares)
        }
        with server.sampled(f"{server.workdir.name} {case.name}"):
            cpu0 = server.cpu_seconds()
            replies = await pool.call(commands, within)
            cpu = server.cpu_seconds() - cpu0
    finally:
        await pool.each("load_close", wait=OPEN_WAIT, within=OPEN_WAIT)
    acked = sum(r["acked"] for r in replies)
    seconds = max(r["finished"] for r in replies) - min(r["started"] for r in replies)
    dup, gaps = seq_check([(item, seq) for r in replies for item, seq in r["seqs"]])
    errors = sum(r["errors"] for r in replies) + sum(r["timed_out"] for r in replies)
    sample = next((r["error_sample"] for r in replies if r["error_sample"]), "")
    if sample:
        ctx.log(f"publish: {case.name}: errors, e.g. {sample}")
    return {
        "acked": acked,
        "stored_per_s": acked / seconds if acked and seconds > 0 else None,
        "cpu_us_per_message": cpu / acked * 1e6 if acked else None,
        "server_cpu_s": round(cpu, 3),
        "errors": errors,
        "failed": plan.publish_total - acked,
        "dup": dup,
        "gaps": gaps,
    }


async def run(ctx: Context) -> ScenarioResult:
    plan = ctx.plan
    cases = [
        Case("ws", 1),
        Case("ws", plan.publish_items),
        Case("rest", 1),
        Case("rest", plan.publish_items),
        # The `websockets` client's default receive queue (16 frames) under more
        # unacknowledged publishes than it holds answers: no cliff past 32.
        *(Case("ws", 1, one_socket_window=w) for w in plan.publish_windows_one_socket),
    ]
    result = ScenarioResult(
        "publish",
        "Publish: stored messages per second",
        notes=[
            f"{plan.publish_total:,} messages per case, spread over {ctx.pool.size} client "
            "processes. WebSocket: one publishing socket per item (on one item, one per "
            f"process), up to {plan.publish_window_one_item} (one item) or "
            f"{plan.publish_window_many_items} (many items) unacknowledged publishes each; "
            "each publisher also receives its item's `message` frames, as the protocol has "
            f"it. REST: {plan.rest_connections} keep-alive connections per process, one "
            "request at a time each, items taken in turn.",
            "A message counts once acknowledged (`ack` or 201). The baselines store nothing "
            "(an in-memory seq per item): their figures are the ceiling of the transport; "
            "the raw `websockets` server has no REST.",
            "Each item's acknowledged seqs must be exactly 1…n: duplicated and missing seqs "
            "are counted.",
            "The one-socket cases publish everything through a single socket of the "
            "`websockets` asyncio client with its default settings (a receive queue of 16 "
            "frames), with the named number of publishes unacknowledged.",
        ],
    )
    servers: list[tuple[Kind, Backend | None]] = []
    for kind in ctx.kinds:
        servers += [(kind, b) for b in ctx.publish_backends] if kind == "ours" else [(kind, None)]
    for kind, backend in servers:
        label = f"ours ({backend.name})" if backend else kind
        with guarded(ctx, result, label), ctx.server("publish", kind, backend) as server:
            target = prepare(server, sum(c.items for c in cases), members=False)
            free = list(target.items)
            for case in cases:
                items, free = free[: case.items], free[case.items :]
                if (kind == "raw" and case.mode == "rest") or case.mode not in ctx.publish_modes:
                    continue
                ctx.log(f"publish: {label}: {case.name}")
                metrics = await measure(ctx, server, target, case, items)
                result.add(
                    Measurement(
                        "publish",
                        case.name,
                        kind,
                        backend.name if backend else None,
                        metrics,
                        {"total": plan.publish_total, "mode": case.mode, "items": case.items},
                    )
                )
    for backend in ctx.publish_backends:
        for case in (c for c in cases if c.mode in ctx.publish_modes):
            database = backend.database if len(ctx.publish_backends) > 1 else ""
            label = f"{case.name} ({database})" if database else case.name
            result.compare(case.name, METRICS, label=label, ours_backend=backend.name)
    return result
