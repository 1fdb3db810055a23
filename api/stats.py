"""The monitor's figures: one producer per process, however many sockets watch them.

One task samples the host and the service when some watcher is due, and each due
watcher gets a `stats` frame computed against its own previous sample (CPU use and the
message rate are rates over the watcher's own interval). The frame is pushed onto the
watcher's outbox, which never waits: a watcher that went away costs nothing and
raises nothing here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Any

import psutil
from prometheus_client.metrics import MetricWrapperBase

from api import metrics
from api.clock import iso_z, utcnow
from api.realtime import protocol
from api.realtime.outbox import Outbox

log = logging.getLogger(__name__)

# Due times are rounded up to this grid (seconds), so that watchers with close phases
# share one sample; a frame is never early, at most this much late.
GRID = 0.2


def sample_value(metric: MetricWrapperBase, name: str) -> float:
    """The current value of one sample of a metric of this process, 0 when it has none."""
    for family in metric.collect():
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return 0.0


def cpu_split(times: Any) -> tuple[float, float]:
    """(total, busy) CPU seconds of the host since boot."""
    total = float(sum(times))
    # On Linux, guest time is already counted in user and nice time.
    total -= getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    busy = total - times.idle - getattr(times, "iowait", 0.0)
    return total, busy


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # loop time
    cpu_total: float
    cpu_busy: float
    stored: float

    @classmethod
    def now(cls) -> Sample:
        total, busy = cpu_split(psutil.cpu_times())
        stored = sample_value(metrics.MESSAGES_STORED, "item_channels_messages_stored_total")
        return cls(asyncio.get_running_loop().time(), total, busy, stored)


@dataclass(slots=True)
class _Watcher:
    interval: float
    due: float
    last: Sample


class StatsFeed:
    def __init__(self) -> None:
        self._watchers: dict[Outbox, _Watcher] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.samples = 0  # taken since start, for tests and curiosity

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="stats")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def watch(self, outbox: Outbox, interval: float) -> None:
        now = Sample.now()
        self._watchers[outbox] = _Watcher(interval, _due(now.at, interval), now)
        self._changed.set()

    def unwatch(self, outbox: Outbox) -> None:
        self._watchers.pop(outbox, None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._changed.clear()
            if not self._watchers:
                await self._changed.wait()
                continue
            wait = min(w.due for w in self._watchers.values()) - loop.time()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._changed.wait()
                continue
            try:
                self._tick()
            except Exception:
                log.exception("sampling the monitor's figures failed")
                await asyncio.sleep(1)

    def _tick(self) -> None:
        sample = Sample.now()
        self.samples += 1
        memory = float(psutil.virtual_memory().percent)
        connections = int(sample_value(metrics.OPEN_SOCKETS, "item_channels_open_sockets"))
        ts = iso_z(utcnow())
        for outbox, watcher in list(self._watchers.items()):
            if watcher.due > sample.at:
                continue
            then = watcher.last
            elapsed = sample.at - then.at
            rate = (sample.stored - then.stored) / elapsed if elapsed > 0 else 0.0
            frame = protocol.StatsFrame(
                ts=ts,
                cpu_percent=_percent(
                    sample.cpu_busy - then.cpu_busy, sample.cpu_total - then.cpu_total
                ),
                memory_percent=memory,
                connections=connections,
                messages_per_s=round(max(0.0, rate), 3),
            )
            outbox.push(0, protocol.encode(frame))
            watcher.last = sample
            # Counted from this frame: consecutive frames are at least `interval` apart.
            watcher.due = _due(sample.at, watcher.interval)


def _percent(busy: float, total: float) -> float:
    if total <= 0:
        return 0.0
    return round(min(100.0, max(0.0, 100.0 * busy / total)), 1)


def _due(at: float, interval: float) -> float:
    return math.ceil((at + interval) / GRID) * GRID
