"""One measured phase of fan-out: publish N messages, collect what every subscriber got."""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass

from bench.plan import Plan
from bench.pool import Pool
from bench.publisher import Publisher
from bench.results import Value
from bench.servers import ServerProcess

ARM_TIMEOUT = 30.0


def percentile(ordered: array[float] | list[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence."""
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class PhaseResult:
    subscribers: int
    sent: int
    wanted: int
    publisher_stalled: bool
    acked: int
    refused: int  # publishes the server answered with an error (never stored)
    received: int
    lost: int
    dup: int
    ooo: int
    seconds: float  # first publish → last receipt
    server_cpu: float
    client_cpu: float
    latencies: list[float]  # seconds, ascending
    slow_received: int
    slow_close_codes: list[int | None]

    def metrics(self) -> dict[str, Value]:
        p50 = percentile(self.latencies, 50)
        p99 = percentile(self.latencies, 99)
        return {
            "subscribers": self.subscribers,
            "sent": self.sent,
            "acked": self.acked,
            "refused": self.refused,
            "delivered": self.received,
            "delivered_per_s": self.received / self.seconds if self.seconds > 0 else None,
            "cpu_us_per_delivery": self.server_cpu / self.received * 1e6 if self.received else None,
            "server_cpu_s": round(self.server_cpu, 3),
            "client_cpu_s": round(self.client_cpu, 3),
            "client_cpu_pct": self.client_cpu / self.seconds * 100 if self.seconds > 0 else None,
            "p50_ms": p50 * 1000 if p50 is not None else None,
            "p99_ms": p99 * 1000 if p99 is not None else None,
            "max_ms": self.latencies[-1] * 1000 if self.latencies else None,
            "lost": self.lost,
            "dup": self.dup,
            "ooo": self.ooo,
            "publisher_stalled": int(self.publisher_stalled),
        }


async def run_phase(
    plan: Plan,
    pool: Pool,
    server: ServerProcess,
    publisher: Publisher,
    name: str,
    count: int,
    rate: float,
    pad: int = 0,
) -> PhaseResult:
    """Publish `count` messages (at `rate`/s, 0 = burst); wait for every subscriber."""
    armed = await pool.each("arm", wait=ARM_TIMEOUT, name=name, limit=count)
    subscribers = sum(r["armed"] for r in armed)
    client_cpu0 = sum(r["cpu"] for r in armed)
    with server.sampled(f"{server.kind} {name}"):
        cpu0 = server.cpu_seconds()
        expected_seconds = count / rate if rate else 0.0
        sent = await publisher.paced(
            name, count, rate, within=expected_seconds + plan.phase_grace, pad=pad
        )
        deliveries = max(1, subscribers * sent.count)
        within = plan.phase_grace + deliveries / plan.min_delivery_rate
        refused = await publisher.answers(sent.count, plan.idle_cutoff)
        replies = await pool.each(
            "collect",
            wait=within,
            sent=sent.count,
            refused=len(refused),
            within=within,
            idle=plan.idle_cutoff,
        )
        cpu1 = server.cpu_seconds()
    latencies = array("d")
    for reply in replies:
        latencies.frombytes(reply["latencies"])
    last = max(r["last"] for r in replies)
    return PhaseResult(
        subscribers=subscribers,
        sent=sent.count,
        wanted=count,
        publisher_stalled=sent.stalled,
        acked=publisher.acked,
        refused=len(refused),
        received=sum(r["received"] for r in replies),
        lost=sum(r["lost"] for r in replies),
        dup=sum(r["dup"] for r in replies),
        ooo=sum(r["ooo"] for r in replies),
        seconds=max(0.0, last - sent.first),
        server_cpu=cpu1 - cpu0,
        client_cpu=sum(r["cpu"] for r in replies) - client_cpu0,
        latencies=sorted(latencies),
        slow_received=sum(r["slow_received"] for r in replies),
        slow_close_codes=[c for r in replies for c in r["slow_close_codes"]],
    )
