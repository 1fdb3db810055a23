"""The operations monitor socket: `WS /monitor/ws` (its page is served by pages.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Coroutine
from typing import Any

import psutil
from fastapi import APIRouter, WebSocket
from prometheus_client.metrics import MetricWrapperBase
from starlette.websockets import WebSocketDisconnect, WebSocketState

from api import metrics
from api.auth import sessions
from api.auth.credentials import Principal, echoed_subprotocol
from api.clock import iso_z, utcnow
from api.deps import Runtime, RuntimeDep, SocketUser
from api.errors import AuthFailure
from api.realtime import protocol
from api.routes.frames import Ending, read_frames, refusal_code

log = logging.getLogger(__name__)
router = APIRouter(tags=["operations"])

DEFAULT_INTERVAL = 1.0
MIN_INTERVAL = 0.2
MAX_INTERVAL = 60.0
# How often an open monitor socket re-reads its session (revocation reaches it this late
# at most; item sockets are told by the hub instead).
SESSION_CHECK_INTERVAL = 1.0


def parse_interval(raw: str | None) -> float:
    """Seconds between frames: the query value clamped to 0.2-60, 1 when absent or not a number."""
    if raw is None:
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_INTERVAL
    if math.isnan(value):
        return DEFAULT_INTERVAL
    return min(MAX_INTERVAL, max(MIN_INTERVAL, value))


def sample_value(metric: MetricWrapperBase, name: str) -> float:
    """The current value of one sample of a metric of this process, 0 when it has none."""
    for family in metric.collect():
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return 0.0


def open_sockets() -> int:
    """Item channel and monitor sockets open in this process."""
    return int(sample_value(metrics.OPEN_SOCKETS, "item_channels_open_sockets"))


def messages_stored() -> float:
    """Messages stored by this process since it started."""
    return sample_value(metrics.MESSAGES_STORED, "item_channels_messages_stored_total")


class CpuSampler:
    """Host CPU use between two samples, kept per socket.

    `psutil.cpu_percent(interval=None)` measures since its previous call by anyone in
    the process, so two monitor sockets would steal each other's intervals.
    """

    def __init__(self) -> None:
        self._last = psutil.cpu_times()

    @staticmethod
    def _split(times: Any) -> tuple[float, float]:
        total = sum(times)
        # On Linux, guest time is already counted in user and nice time.
        total -= getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
        busy = total - times.idle - getattr(times, "iowait", 0.0)
        return total, busy

    def percent(self) -> float:
        now = psutil.cpu_times()
        total_now, busy_now = self._split(now)
        total_then, busy_then = self._split(self._last)
        self._last = now
        elapsed = total_now - total_then
        if elapsed <= 0:
            return 0.0
        return round(min(100.0, max(0.0, 100.0 * (busy_now - busy_then) / elapsed)), 1)


@router.websocket("/monitor/ws")
async def monitor_socket(websocket: WebSocket, principal: SocketUser, runtime: RuntimeDep) -> None:
    """Host and service figures every `interval` seconds (default 1, clamped to 0.2-60)."""
    interval = parse_interval(websocket.query_params.get("interval"))
    await websocket.accept(subprotocol=echoed_subprotocol(websocket))
    metrics.OPEN_SOCKETS.inc()
    context = {"user_id": principal.user_id, "interval": interval}
    log.info("monitor open", extra=context)
    ending: Ending = None
    try:
        ending = await _MonitorSocket(websocket, runtime, principal, interval).serve()
        if ending is not None:
            with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
                if websocket.application_state != WebSocketState.DISCONNECTED:
                    await websocket.close(*ending)
    finally:
        metrics.OPEN_SOCKETS.dec()
        log.info("monitor closed", extra={**context, "close_code": ending[0] if ending else None})


class _MonitorSocket:
    """A reader, a ticker and a credential guard; the first to finish ends the socket."""

    def __init__(
        self, websocket: WebSocket, runtime: Runtime, principal: Principal, interval: float
    ) -> None:
        self.websocket = websocket
        self.runtime = runtime
        self.principal = principal
        self.interval = interval
        self._send_lock = asyncio.Lock()

    async def serve(self) -> Ending:
        jobs: list[Coroutine[Any, Any, Ending]] = [
            read_frames(self.websocket, self.runtime.settings.max_message_bytes, self.handle),
            self.tick(),
            self.guard(),
        ]
        tasks = [asyncio.create_task(job) for job in jobs]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        first = next(task for task in tasks if task in done)
        try:
            return first.result()
        except (RuntimeError, OSError, WebSocketDisconnect):
            # A send to a socket that went away.
            return None

    async def send(self, text: str) -> None:
        async with self._send_lock:
            await self.websocket.send_text(text)

    async def tick(self) -> Ending:
        loop = asyncio.get_running_loop()
        cpu = CpuSampler()
        stored = messages_stored()
        then = loop.time()
        while True:
            # Sleeping after each frame (rather than on a fixed grid) keeps consecutive
            # frames at least `interval` apart.
            await asyncio.sleep(self.interval)
            now = loop.time()
            total = messages_stored()
            elapsed = now - then
            rate = (total - stored) / elapsed if elapsed > 0 else 0.0
            stored, then = total, now
            frame = protocol.StatsFrame(
                ts=iso_z(utcnow()),
                cpu_percent=cpu.percent(),
                memory_percent=float(psutil.virtual_memory().percent),
                connections=open_sockets(),
                messages_per_s=round(max(0.0, rate), 3),
            )
            await self.send(protocol.encode(frame))

    async def guard(self) -> Ending:
        """Close with 1008 when the session is revoked or expires, or the token expires."""
        checked = time.time()
        while True:
            now = time.time()
            token_exp = self.principal.token_exp
            if token_exp is not None and now >= token_exp:
                return protocol.POLICY_VIOLATION, protocol.TOKEN_EXPIRED
            if now >= self.principal.session_expires_at.timestamp():
                return protocol.POLICY_VIOLATION, protocol.SESSION_REVOKED
            if now - checked >= SESSION_CHECK_INTERVAL:
                checked = now
                async with self.runtime.session_factory() as db:
                    active = await sessions.by_id(db, self.principal.session_id)
                if active is None:
                    return protocol.POLICY_VIOLATION, protocol.SESSION_REVOKED
            wait = SESSION_CHECK_INTERVAL
            if token_exp is not None:
                wait = min(wait, max(0.0, token_exp - now))
            await asyncio.sleep(max(0.01, wait))

    async def handle(self, text: str) -> None:
        try:
            frame = protocol.parse_client_frame(text)
        except protocol.FrameError as exc:
            await self.send(protocol.error_frame(protocol.BAD_REQUEST, exc.detail, exc.ref))
            return
        if isinstance(frame, protocol.PingFrame):
            await self.send(protocol.PONG)
        elif isinstance(frame, protocol.RefreshFrame):
            await self.refresh(frame)
        else:
            await self.send(
                protocol.error_frame(
                    protocol.BAD_REQUEST, "the monitor takes no publish", frame.ref
                )
            )

    async def refresh(self, frame: protocol.RefreshFrame) -> None:
        """As on item channels: the token's `exp` and session govern the socket from now on."""
        try:
            self.principal = await self.runtime.resolver.refreshed(self.principal, frame.token)
        except AuthFailure as exc:
            await self.send(protocol.error_frame(refusal_code(exc), exc.reason))
