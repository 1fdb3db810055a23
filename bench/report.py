"""Where a run's figures go: stdout, results.jsonl, and a markdown report."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.results import Measurement, ScenarioResult, fmt, table
from bench.servers import LIFTED_LIMITS

PACKAGES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "websockets",
    "uvloop",
    "httptools",
    "sqlalchemy",
    "aiosqlite",
    "asyncpg",
    "redis",
    "orjson",
    "pydantic",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _service_revision(root: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def machine(root: Path, extra: dict[str, Any]) -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": platform.machine(),
        "kernel": platform.release(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
        "packages": versions,
        "service_revision": _service_revision(root),
        "load_at_start": load_average(),
        **extra,
    }


# Targets of the issue, checked against the run's figures.


@dataclass
class Check:
    target: str
    figure: str
    met: bool | None  # None: not measured in this run


def _find(
    results: dict[str, ScenarioResult], scenario: str, server: str, **where: Any
) -> Measurement | None:
    result = results.get(scenario)
    if result is None:
        return None
    for m in result.measurements:
        if m.server != server:
            continue
        facts = {**m.params, **m.metrics, "backend": m.backend, "case": m.case}
        if all(facts.get(k) == v for k, v in where.items()):
            return m
    return None


def _get(m: Measurement | None, key: str) -> float | None:
    if m is None:
        return None
    value = m.metrics.get(key)
    return float(value) if isinstance(value, int | float) else None


def _ratio_check(
    target: str, ours: float | None, raw: float | None, limit: float, unit: str
) -> Check:
    if ours is None or raw is None or raw == 0:
        return Check(target, "not measured", None)
    r = ours / raw
    return Check(target, f"{fmt(ours)} vs {fmt(raw)} {unit}: {r:.2f}×", r <= limit)


def checks(results: dict[str, ScenarioResult]) -> list[Check]:
    burst = {"subscribers": 1000, "mode": "burst"}
    paced = {"subscribers": 1000, "mode": "paced", "rate": 20.0}
    out = [
        _ratio_check(
            "fan-out CPU per delivery at 1,000 subscribers (burst) ≤ 1.15× raw",
            _get(_find(results, "fanout", "ours", **burst), "cpu_us_per_delivery"),
            _get(_find(results, "fanout", "raw", **burst), "cpu_us_per_delivery"),
            1.15,
            "µs",
        )
    ]
    kb = _get(_find(results, "memory", "ours", sockets=10000), "kb_per_socket")
    out.append(
        Check(
            "idle memory ≤ 20 KB per socket (10,000 sockets)",
            "not measured" if kb is None else f"{kb:.1f} KB",
            None if kb is None else kb <= 20,
        )
    )
    out.append(
        _ratio_check(
            "handshake CPU to `ready` ≤ 3× raw's (authenticated)",
            _get(_find(results, "connect", "ours"), "cpu_us_per_handshake"),
            _get(_find(results, "connect", "raw"), "cpu_us_per_handshake"),
            3.0,
            "µs",
        )
    )
    out += write_path_checks(results)
    ws = _get(
        _find(results, "publish", "ours", backend="sqlite-memory", mode="ws", items=1),
        "stored_per_s",
    )
    rest = _get(
        _find(results, "publish", "ours", backend="sqlite-memory", mode="rest", items=1),
        "stored_per_s",
    )
    best = max((v for v in (ws, rest) if v is not None), default=None)
    out.append(
        Check(
            "≥ 10,000 stored msg/s on one item with SQLite",
            "not measured" if best is None else f"WebSocket {fmt(ws)}/s, REST {fmt(rest)}/s",
            None if best is None else best >= 10000,
        )
    )
    ours_batch = _find(results, "batch", "ours", mode="burst")
    batched = _get(ours_batch, "delivered_per_s")
    raw_burst = _get(_find(results, "batch", "raw", mode="burst"), "delivered_per_s")
    faults = sum(_get(ours_batch, k) or 0 for k in ("lost", "dup", "ooo"))
    out.append(
        Check(
            "batched: ≥ 2× raw's delivered msg/s under overload, none lost or out of order",
            "not measured"
            if batched is None or not raw_burst
            else f"{fmt(batched)} vs {fmt(raw_burst)} msg/s: {batched / raw_burst:.2f}×"
            + (f", {faults:.0f} lost/duplicated/out of order" if faults else ""),
            None if batched is None or not raw_burst else batched >= 2 * raw_burst and not faults,
        )
    )
    for sockets, shape in ((1, "one socket"), (8, "8 writers racing on one item")):
        change = _find(
            results, "state", "ours", backend="sqlite-memory", change=True, sockets=sockets
        )
        out.append(
            _ratio_check(
                f"state change CPU ≤ 1.5× a publish's of the same size ({shape}, SQLite)",
                _get(change, "cpu_us_per_op"),
                _get(
                    _find(
                        results,
                        "state",
                        "ours",
                        backend="sqlite-memory",
                        change=False,
                        sockets=sockets,
                    ),
                    "cpu_us_per_op",
                ),
                1.5,
                "µs",
            )
        )
    out.append(
        _ratio_check(
            "p99 ≤ 1.1× raw's at 1,000 subscribers × 20 msg/s",
            _get(_find(results, "fanout", "ours", **paced), "p99_ms"),
            _get(_find(results, "fanout", "raw", **paced), "p99_ms"),
            1.1,
            "ms",
        )
    )
    for mode in ("burst", "paced"):
        out.append(
            _ratio_check(
                f"`/ws` fan-out CPU per delivery ≤ 1.2× the item channel's ({mode})",
                _get(
                    _find(results, "multiplex", "ours", socket="ws", mode=mode),
                    "cpu_us_per_delivery",
                ),
                _get(
                    _find(results, "multiplex", "ours", socket="item", mode=mode),
                    "cpu_us_per_delivery",
                ),
                1.2,
                "µs",
            )
        )
    kb_sub = _get(_find(results, "multiplex", "ours", mode="memory"), "kb_per_subscription")
    out.append(
        Check(
            "memory ≤ 2 KB per additional `/ws` subscription",
            "not measured" if kb_sub is None else f"{kb_sub:.2f} KB",
            None if kb_sub is None else kb_sub <= 2,
        )
    )
    return out


def _publish(
    results: dict[str, ScenarioResult], server: str, case: str, backend: str | None, key: str
) -> float | None:
    return _get(_find(results, "publish", server, case=case, backend=backend), key)


def _ratio(ours: float | None, base: float | None) -> float | None:
    return None if ours is None or not base else ours / base


def write_path_checks(results: dict[str, ScenarioResult]) -> list[Check]:
    """The write path's targets: publish CPU ÷ the tutorial's, the paced fan-out, no cliff."""
    cpu = "cpu_us_per_message"
    limits = {
        "WebSocket, 1 item": 2.0,
        "WebSocket, 100 items": 2.5,
        "REST, 1 item": 1.5,
        "REST, 100 items": 1.5,
    }
    out: list[Check] = []
    ratios: dict[tuple[str, str], float | None] = {}
    for case, limit in limits.items():
        tutorial = _publish(results, "tutorial", case, None, cpu)
        ours = _publish(results, "ours", case, "sqlite-memory", cpu)
        out.append(
            _ratio_check(
                f"{case}, SQLite: CPU per message ≤ {limit:g}× the tutorial's",
                ours,
                tutorial,
                limit,
                "µs",
            )
        )
        for backend in ("sqlite-memory", "postgres-redis"):
            ratios[case, backend] = _ratio(_publish(results, "ours", case, backend, cpu), tutorial)
    ours_rate = _publish(results, "ours", "WebSocket, 1 item", "sqlite-memory", "stored_per_s")
    tutorial_rate = _publish(results, "tutorial", "WebSocket, 1 item", None, "stored_per_s")
    share = _ratio(ours_rate, tutorial_rate)
    out.append(
        Check(
            "WebSocket, 1 item, SQLite: acknowledged msg/s ≥ 0.66× the tutorial's echo rate",
            "not measured"
            if share is None
            else f"{fmt(ours_rate)} vs {fmt(tutorial_rate)} msg/s: {share:.2f}×",
            None if share is None else share >= 0.66,
        )
    )
    out += [
        _ratio_check(
            f"{case}, PostgreSQL + Redis: ≤ 1.5× SQLite's ratio",
            ratios[case, "postgres-redis"],
            ratios[case, "sqlite-memory"],
            1.5,
            "× the tutorial's",
        )
        for case in limits
    ]
    paced = {"subscribers": 100, "mode": "paced", "rate": 100.0}
    for key, what, unit in (
        ("cpu_us_per_delivery", "CPU per delivery", "µs"),
        ("p99_ms", "p99", "ms"),
    ):
        out.append(
            _ratio_check(
                f"paced 100 subscribers × 100 msg/s: {what} ≤ 1.5× raw's",
                _get(_find(results, "fanout", "ours", **paced), key),
                _get(_find(results, "fanout", "raw", **paced), key),
                1.5,
                unit,
            )
        )
    rates = [
        _publish(
            results,
            "ours",
            f"WebSocket, 1 item, one socket, {window} in flight",
            "sqlite-memory",
            "stored_per_s",
        )
        for window in (32, 64, 256)
    ]
    measured = [r for r in rates if r is not None]
    out.append(
        Check(
            "no cliff: 64 and 256 in flight on one socket ≥ 32's rate",
            " / ".join(fmt(r) for r in measured) + " msg/s"
            if len(measured) == len(rates)
            else "not measured",
            min(measured[1:]) >= measured[0] if len(measured) == len(rates) else None,
        )
    )
    return out


def checks_table(items: list[Check]) -> str:
    lines = ["| target | this run | met |", "|---|---|---|"]
    for c in items:
        met = {True: "yes", False: "**no**", None: "–"}[c.met]
        lines.append(f"| {c.target} | {c.figure} | {met} |")
    return "\n".join(lines)


def integrity(results: dict[str, ScenarioResult], server: str) -> dict[str, int]:
    """Lost / duplicated / out-of-order deliveries and missing seqs of `server`, over every
    phase (the baselines' slow-subscriber phases left out: they may lose by design)."""
    totals = {"lost": 0, "dup": 0, "ooo": 0, "gaps": 0}
    for result in results.values():
        if result.name == "slow" and server != "ours":
            continue
        for m in result.measurements:
            if m.server != server:
                continue
            for key in totals:
                value = m.metrics.get(key)
                if isinstance(value, int):
                    totals[key] += value
    return totals


# Output.


def scenario_text(result: ScenarioResult) -> str:
    parts = [f"## {result.title}", ""]
    parts += [f"- {note}" for note in result.notes]
    parts += ["", table(result)]
    if result.errors:
        parts += ["", *[f"- FAILED {e}" for e in result.errors]]
    return "\n".join(parts) + "\n"


def markdown(
    info: dict[str, Any], command: str, results: dict[str, ScenarioResult], plan: str
) -> str:
    packages = ", ".join(f"{k} {v}" for k, v in info["packages"].items())
    services = f"PostgreSQL {info['postgres']}, Redis {info['redis']}" if "postgres" in info else ""
    lines = [
        "# Benchmark results",
        "",
        f"Run on record: `{command}` ({plan} plan), {info['date']}, "
        f"{info.get('duration_s', '?')} s.",
        "",
        f"- Machine: {info['machine']}, {info['cpu']}, {info['cores']} cores, "
        f"{info['memory_gib']} GiB, Linux {info['kernel']}; load average (1, 5, 15 min) "
        f"{info['load_at_start']} at the start, {info.get('load_at_end', '?')} at the end "
        "(other work on the machine disturbs every figure but the CPU ones least)",
        f"- Python {info['python']}; {packages}",
        f"- Service revision: `{info['service_revision']}`; backend "
        f"`{info['backend']}` (publish: {', '.join(info['publish_backends'])})",
        f"- External services: {services or 'none'}",
        "- Servers: **ours** = the service (`python -m api serve`), **tutorial** = FastAPI "
        "tutorial `ConnectionManager` on uvicorn (`bench/baselines/tutorial.py`), **raw** = "
        "`websockets` server with `broadcast()` (`bench/baselines/raw.py`). One at a time, "
        "each on a free loopback port, each with the same client processes.",
        "- The service's abuse limits are lifted for the run (capacity is measured, not "
        f"policy): {', '.join(f'`{k}={v}`' for k, v in LIFTED_LIMITS.items())}.",
        "- Ratios are ours ÷ baseline: for ↑ figures above 1 is better, for ↓ figures "
        "below 1 is better.",
        "",
        "## Targets",
        "",
        checks_table(checks(results)),
        "",
    ]
    return "\n".join(lines) + "\n" + "\n".join(scenario_text(r) for r in results.values())


def write_jsonl(path: Path, run: dict[str, Any], results: dict[str, ScenarioResult]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(json.dumps({"type": "run", **run}) + "\n")
        for result in results.values():
            for m in result.measurements:
                record = {"type": "measurement", "run": run["run"], **asdict(m)}
                out.write(json.dumps(record) + "\n")
            for error in result.errors:
                record = {"type": "error", "run": run["run"], "scenario": result.name}
                out.write(json.dumps({**record, "error": error}) + "\n")
