"""`python -m bench`: start the servers, run the scenarios, report."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.clients import run_loop
from bench.context import Context
from bench.plan import FULL, QUICK
from bench.pool import Pool
from bench.report import (
    checks,
    checks_table,
    integrity,
    load_average,
    machine,
    markdown,
    scenario_text,
    write_jsonl,
)
from bench.results import ScenarioResult
from bench.scenarios import SCENARIOS
from bench.servers import (
    BACKENDS,
    KINDS,
    ROOT,
    Backend,
    External,
    postgres_version,
    raise_nofile,
    redis_version,
    unavailable,
)

RECORD = ROOT / "bench" / "RESULTS.md"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the service against the FastAPI tutorial and raw websockets.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny N: checks that everything runs (about a minute)"
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=list(SCENARIOS),
        help="run only this scenario (repeatable); default: all",
    )
    parser.add_argument(
        "--backend",
        choices=list(BACKENDS),
        default="sqlite-memory",
        help="the service's storage + broker (default sqlite-memory)",
    )
    parser.add_argument(
        "--publish-backends",
        help="comma-separated backends of the publish scenario "
        "(default: sqlite-memory, and postgres-redis when PostgreSQL and Redis answer)",
    )
    parser.add_argument(
        "--publish-modes",
        default="ws,rest",
        help="comma-separated transports of the publish scenario's cases: ws, rest (default both)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
        ),
        help="a database to connect to; each server gets a fresh database next to it",
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument(
        "--servers",
        default=",".join(KINDS),
        help="comma-separated servers to run (default: all three; fewer for debugging)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=max(2, os.cpu_count() or 2),
        help="client processes (default: the core count, at least 2)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "bench" / "results",
        help="where results.jsonl (appended) and latest.md go (default bench/results/)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample the service with py-spy during each case; profiles go to DIR",
    )
    parser.add_argument(
        "--profile-baselines",
        action="store_true",
        help="with --profile: sample the baselines too (for comparing where the time goes)",
    )
    parser.add_argument(
        "--record",
        choices=("auto", "yes", "no"),
        default="auto",
        help=f"write {RECORD.relative_to(ROOT)}: auto = for a full run of every scenario",
    )
    return parser.parse_args(argv)


def _backends(args: argparse.Namespace, external: External) -> tuple[Backend, list[Backend]]:
    backend = BACKENDS[args.backend]
    needs_external = backend.name == "postgres-redis"
    if args.publish_backends:
        names = [n.strip() for n in args.publish_backends.split(",") if n.strip()]
        unknown = [n for n in names if n not in BACKENDS]
        if unknown:
            sys.exit(f"unknown backend(s): {', '.join(unknown)}")
        publish = [BACKENDS[n] for n in names]
        needs_external |= any(b.name == "postgres-redis" for b in publish)
        reason = unavailable(external) if needs_external else None
        if reason:
            sys.exit(f"postgres-redis is not available: {reason}")
        return backend, publish
    reason = unavailable(external)
    if needs_external and reason:
        sys.exit(f"postgres-redis is not available: {reason}")
    publish = [BACKENDS["sqlite-memory"]]
    if reason:
        print(f"publish: PostgreSQL + Redis skipped ({reason})", file=sys.stderr)
    else:
        publish.append(BACKENDS["postgres-redis"])
    return backend, publish


async def _run(ctx: Context, names: list[str]) -> dict[str, ScenarioResult]:
    results: dict[str, ScenarioResult] = {}
    for name in names:
        ctx.log(f"scenario {name}")
        try:
            result = await SCENARIOS[name](ctx)
        except Exception as exc:  # a broken scenario must not lose the others' figures
            result = ScenarioResult(name, name, errors=[f"{type(exc).__name__}: {exc}"])
            ctx.log(f"scenario {name} failed: {exc!r}")
        results[name] = result
        print(scenario_text(result), flush=True)
    return results


def _integrity_lines(results: dict[str, ScenarioResult]) -> list[str]:
    lines = []
    for server in ("ours", "tutorial", "raw"):
        totals = integrity(results, server)
        lines.append(
            f"integrity {server}: lost {totals['lost']}, duplicated {totals['dup']}, "
            f"out of order {totals['ooo']}, missing seqs {totals['gaps']}"
            + (" (slow scenario excluded)" if server != "ours" else "")
        )
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    raise_nofile()  # before any thread; the servers and client processes inherit it
    plan = QUICK if args.quick else FULL
    kinds = tuple(k for k in KINDS if k in args.servers.split(","))
    if not kinds:
        sys.exit(f"--servers: choose among {', '.join(KINDS)}")
    names = args.scenario or list(SCENARIOS)
    modes = tuple(m.strip() for m in args.publish_modes.split(",") if m.strip())
    if not modes or set(modes) - {"ws", "rest"}:
        sys.exit("--publish-modes: choose among ws, rest")
    external = External(args.postgres_url, args.redis_url)
    backend, publish_backends = _backends(args, external)
    if not {"publish", "state"} & set(names):  # the scenarios run on each publish backend
        publish_backends = [b for b in publish_backends if b == backend] or [backend]
    uses_external = any(b.name == "postgres-redis" for b in [backend, *publish_backends])
    extra: dict[str, Any] = {
        "run": uuid.uuid4().hex[:12],
        "plan": plan.name,
        "backend": backend.name,
        "publish_backends": [b.name for b in publish_backends],
        "scenarios": names,
        "client_processes": args.workers,
    }
    if uses_external:
        extra["postgres"] = postgres_version(external)
        extra["redis"] = asyncio.run(redis_version(external))
    info = machine(ROOT, extra)
    load1 = float(info["load_at_start"].split()[0]) if info["load_at_start"][0].isdigit() else 0
    if load1 > (os.cpu_count() or 1) / 2:
        print(
            f"warning: load average {info['load_at_start']}: other work on this machine will "
            "disturb the figures (rates and latencies most, CPU per operation least)",
            file=sys.stderr,
        )
    command = "python -m bench" + "".join(f" {a}" for a in (argv or sys.argv[1:]))

    started = time.monotonic()
    pool = Pool(args.workers)
    workdir = Path(tempfile.mkdtemp(prefix="ic-bench-"))
    results: dict[str, ScenarioResult] = {}
    try:
        pool.start()
        ctx = Context(plan, pool, backend, publish_backends, external, workdir, kinds, args.profile)
        ctx.publish_modes = modes
        ctx.profile_baselines = args.profile_baselines
        ctx.log(f"{plan.name} plan, scenarios {', '.join(names)}, backend {backend.name}")
        results = _run_on_loop(ctx, names)
    finally:
        pool.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    info["load_at_end"] = load_average()
    info["duration_s"] = round(time.monotonic() - started, 1)
    write_jsonl(args.out / "results.jsonl", info, results)
    report = markdown(info, command, results, plan.name)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.md").write_text(report)
    # A profiled run's figures carry the sampler's small cost: not a run for the record.
    full_run = (
        not args.quick
        and not args.profile
        and set(names) == set(SCENARIOS)
        and kinds == KINDS
        and set(modes) == {"ws", "rest"}
    )
    if args.record == "yes" or (args.record == "auto" and full_run):
        RECORD.write_text(report)
        print(f"wrote {RECORD}", file=sys.stderr)
    print("## Targets\n\n" + checks_table(checks(results)) + "\n")
    print("\n".join(_integrity_lines(results)))
    print(f"\nresults: {args.out / 'results.jsonl'}, {args.out / 'latest.md'}")
    if any(r.errors for r in results.values()):
        sys.exit(1)


def _run_on_loop(ctx: Context, names: list[str]) -> dict[str, ScenarioResult]:
    box: dict[str, dict[str, ScenarioResult]] = {}

    async def go() -> None:
        box["results"] = await _run(ctx, names)

    run_loop(go())
    return box["results"]
