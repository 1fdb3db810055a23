"""What every scenario gets: the plan, the client workers, where servers run."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.plan import Plan
from bench.pool import Pool
from bench.servers import KINDS, Backend, External, Kind, ServerProcess, running


@dataclass
class Context:
    plan: Plan
    pool: Pool
    backend: Backend  # the service's backend for every scenario but publish
    publish_backends: list[Backend]  # publish runs the service on each of these
    external: External
    workdir: Path
    kinds: tuple[Kind, ...] = KINDS  # the servers to run (all three but for debugging)
    profile_dir: Path | None = None  # `--profile`: where the service's profiles go
    publish_modes: tuple[str, ...] = ("ws", "rest")  # `--publish-modes`: the cases to run
    profile_baselines: bool = False  # `--profile-baselines`: sample the baselines too
    started: float = field(default_factory=time.monotonic)

    def log(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[{elapsed:7.1f}s] {message}", file=sys.stderr, flush=True)

    @contextmanager
    def server(
        self, scenario: str, kind: Kind, backend: Backend | None = None
    ) -> Iterator[ServerProcess]:
        backend = backend or self.backend
        label = f"{kind} ({backend.name})" if kind == "ours" else kind
        self.log(f"{scenario}: starting {label}")
        workdir = self.workdir / (
            f"{scenario}-{kind}-{backend.name}" if kind == "ours" else f"{scenario}-{kind}"
        )
        with running(kind, workdir, backend, self.external) as server:
            server.profile_dir = self.profile_dir
            server.profile_baselines = self.profile_baselines
            yield server

    def connect_limit(self, sockets: int) -> float:
        """Time allowed to open `sockets` sockets."""
        return 30.0 + sockets / self.plan.min_handshake_rate
