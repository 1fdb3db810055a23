"""State changes against message publishes of the same size, in the same server.

Each pair of cases runs on one server, one after the other, with the same sockets,
windows and payload: the publish (the baseline: a stored, numbered, delivered message)
and the state change (a `patch` setting `/d` to the publish's data: a stored, versioned,
delivered state). The figure that matters is their ratio of server CPU per operation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.context import Context
from bench.fixtures import Target, prepare
from bench.results import Measurement, Metric, ScenarioResult, Value
from bench.scenarios.common import guarded
from bench.scenarios.publish import seq_check
from bench.servers import ServerProcess

OPEN_WAIT = 60.0

METRICS = (
    Metric("acked_per_s", "acknowledged /s", "higher", 0),
    Metric("cpu_us_per_op", "server CPU µs / operation", "lower", 0),
    Metric("cpu_ratio", "CPU ÷ the publish's (same run)", "", 2),
    Metric("failed", "failed", "zero"),
    Metric("dup", "duplicated seqs / versions", "zero"),
    Metric("gaps", "missing seqs / versions", "zero"),
)


@dataclass(frozen=True)
class Shape:
    name: str
    sockets: int
    window: int  # unacknowledged per socket


@dataclass(frozen=True)
class Case:
    shape: Shape
    change: bool

    @property
    def name(self) -> str:
        what = "state change" if self.change else "publish"
        return f"{what}, {self.shape.name}"


def shapes(ctx: Context) -> list[Shape]:
    plan = ctx.plan
    return [
        Shape(f"one socket, {plan.state_window} in flight", 1, plan.state_window),
        Shape(
            f"{plan.state_writers} writers racing on one item, "
            f"{plan.state_writer_window} in flight each",
            plan.state_writers,
            plan.state_writer_window,
        ),
    ]


def _url(target: Target, item: str, change: bool) -> str:
    # State sockets opt in to `state` frames, as publishers get their `message` frames.
    url = target.ws_url(item, publisher=True)
    return f"{url}&state=1" if change else url


async def measure(
    ctx: Context, server: ServerProcess, target: Target, case: Case, item: str
) -> dict[str, Value]:
    plan, pool = ctx.plan, ctx.pool
    sockets = case.shape.sockets
    # The sockets spread over the client processes (one socket: the first process only).
    per_process = [sockets // pool.size + (n < sockets % pool.size) for n in range(pool.size)]
    used = [n for n, copies in enumerate(per_process) if copies]
    # Each process's share in proportion to its sockets (each socket then sends as many).
    shares = [plan.state_total * per_process[n] // sockets for n in used]
    shares[0] += plan.state_total - sum(shares)
    opens: dict[int, Any] = {
        n: {
            "op": "load_open",
            "mode": "ws",
            "host": target.host,
            "port": target.port,
            "urls": {item: _url(target, item, case.change)},
            "token": target.owner_token,
            "connections": 0,
            "within": OPEN_WAIT,
            "copies": per_process[n],
        }
        for n in used
    }
    await pool.call(opens, OPEN_WAIT)
    try:
        within = plan.phase_grace + plan.state_total / 50
        runs = {
            n: {
                "op": "load_run",
                "total": share,
                "window": case.shape.window,
                "items": [item],
                "within": within,
                "change": case.change,
                "pad": plan.state_pad,
            }
            for n, share in zip(used, shares, strict=True)
        }
        with server.sampled(f"{server.workdir.name} {case.name}"):
            cpu0 = server.cpu_seconds()
            replies = await pool.call(runs, within)
            cpu = server.cpu_seconds() - cpu0
    finally:
        await pool.each("load_close", wait=OPEN_WAIT, within=OPEN_WAIT)
    acked = sum(r["acked"] for r in replies)
    seconds = max(r["finished"] for r in replies) - min(r["started"] for r in replies)
    dup, gaps = seq_check([(item, seq) for r in replies for _, seq in r["seqs"]])
    sample = next((r["error_sample"] for r in replies if r["error_sample"]), "")
    if sample:
        ctx.log(f"state: {case.name}: errors, e.g. {sample}")
    return {
        "acked": acked,
        "acked_per_s": acked / seconds if acked and seconds > 0 else None,
        "cpu_us_per_op": cpu / acked * 1e6 if acked else None,
        "server_cpu_s": round(cpu, 3),
        "errors": sum(r["errors"] + r["timed_out"] for r in replies),
        "failed": plan.state_total - acked,
        "dup": dup,
        "gaps": gaps,
    }


async def run(ctx: Context) -> ScenarioResult:
    plan = ctx.plan
    result = ScenarioResult(
        "state",
        "State changes: CPU per change against a publish of the same size",
        notes=[
            f"{plan.state_total:,} operations per case, on a fresh `document` item each. A "
            'publish carries `{"i", "t", "pad"}` '
            f"({plan.state_pad} characters of padding); a state change is the `patch` "
            '`[{"op": "add", "path": "/d", "value": <the same data>}]`, so the state stays '
            "the size of one message. State sockets open with `?state=1` and receive every "
            "version, as publishers receive their item's messages.",
            "Each publish case and its state case run on the same server one after the "
            "other; `CPU ÷ the publish's` is the state case's server CPU per acknowledged "
            "change over the publish case's per acknowledged message. Only the service "
            "runs: the baselines have no state.",
            "Versions and seqs acknowledged must be exactly 1…n per item.",
        ],
    )
    cases = [Case(shape, change) for shape in shapes(ctx) for change in (False, True)]
    for backend in ctx.publish_backends:
        label = f"ours ({backend.name})"
        with guarded(ctx, result, label), ctx.server("state", "ours", backend) as server:
            target = prepare(server, len(cases), members=False)
            baseline: float | None = None
            for case, item in zip(cases, target.items, strict=True):
                ctx.log(f"state: {label}: {case.name}")
                metrics = await measure(ctx, server, target, case, item)
                cpu = metrics["cpu_us_per_op"]
                if not case.change:
                    baseline = float(cpu) if cpu else None
                    metrics["cpu_ratio"] = 1.0
                else:
                    metrics["cpu_ratio"] = float(cpu) / baseline if cpu and baseline else None
                result.add(
                    Measurement(
                        "state",
                        case.name,
                        "ours",
                        backend.name,
                        metrics,
                        {
                            "change": case.change,
                            "sockets": case.shape.sockets,
                            "window": case.shape.window,
                            "total": plan.state_total,
                        },
                    )
                )
    for backend in ctx.publish_backends:
        for case in cases:
            database = backend.database if len(ctx.publish_backends) > 1 else ""
            label = f"{case.name} ({database})" if database else case.name
            result.compare(case.name, METRICS, label=label, ours_backend=backend.name)
    return result
