"""The benchmark suite still runs: `python -m bench --quick` against all three servers.

Benchmarks are not part of the test suite; this tiny run is, so the bench cannot rot. It
checks that every scenario completes on the service and both baselines, prints its
tables, and that no message was lost, duplicated or delivered out of order.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 480
SCENARIOS = ("fanout", "connect", "memory", "publish", "slow", "batch", "state", "multiplex")
SERVERS = ("ours", "tutorial", "raw")
# Measured against the service's own publishes and item channels: no baseline runs.
OURS_ONLY = ("state", "multiplex")
HEADER = "| case | metric | ours | tutorial | raw | ours÷raw | ours÷tutorial |"


@pytest.mark.timeout(TIMEOUT + 60)
def test_quick_bench_runs_every_scenario_and_loses_nothing(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "bench",
        "--quick",
        "--out",
        str(tmp_path),
        "--record",
        "no",
        "--publish-backends",
        "sqlite-memory",
        "--profile",
        str(tmp_path / "profiles"),
    ]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-6000:]}"

    out = done.stdout
    for title in (
        "## Fan-out",
        "## Connect",
        "## Memory",
        "## Publish",
        "## Slow subscriber",
        "## Batched delivery",
        "## State changes",
        "## Many items on one socket",
        "## Targets",
    ):
        assert title in out
    assert out.count(HEADER) == len(SCENARIOS)
    for server in SERVERS:
        assert f"integrity {server}: lost 0, duplicated 0, out of order 0, missing seqs 0" in out

    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r for r in records if r["type"] == "error"] == []
    measured = {(r["scenario"], r["server"]) for r in records if r["type"] == "measurement"}
    assert measured == {
        (s, k) for s in SCENARIOS for k in SERVERS if s not in OURS_ONLY or k == "ours"
    }
    fanout = [r for r in records if r["type"] == "measurement" and r["scenario"] == "fanout"]
    for record in fanout:
        metrics = record["metrics"]
        assert metrics["delivered"] == metrics["subscribers"] * metrics["sent"] > 0, record
    assert (tmp_path / "latest.md").read_text().startswith("# Benchmark results")
    # --profile left a summary per measured case of the service (py-spy attached).
    summaries = list((tmp_path / "profiles").glob("*.md"))
    assert len(summaries) >= len(SCENARIOS), summaries
    assert all("samples at" in p.read_text() for p in summaries)
