"""Prometheus metrics (prometheus-client).

Each worker process keeps its own figures. With several workers behind one port, set
PROMETHEUS_MULTIPROC_DIR (an empty directory shared by the workers) before starting
them, and `/metrics` aggregates every worker's files; otherwise scrape each worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any, cast

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

OPEN_SOCKETS = Gauge(
    "item_channels_open_sockets",
    "WebSocket connections open on item channels and the monitor",
    multiprocess_mode="livesum",
)
SOCKETS_REFUSED = Counter(
    "item_channels_sockets_refused", "Handshakes refused, by close reason", ["reason"]
)
MESSAGES_STORED = Counter("item_channels_messages_stored", "Messages stored")
MESSAGES_DELIVERED = Counter(
    "item_channels_messages_delivered", "Message frames handed to sockets for sending"
)
DELIVERY_LATENCY = Histogram(
    "item_channels_delivery_latency_seconds",
    "From storing a message to sending it on a socket (sampled)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
QUEUE_OVERFLOWS = Counter(
    "item_channels_queue_overflows", "Sockets closed because their outgoing queue was full"
)
BROKER_RECONNECTS = Counter("item_channels_broker_reconnects", "Broker reconnections")
GAP_FILLS = Counter(
    "item_channels_gap_fills", "Messages re-read from the store because the broker lost them"
)


TASKS = Gauge(
    "item_channels_asyncio_tasks",
    "asyncio tasks alive in this worker (leak detection)",
    multiprocess_mode="livesum",
)


def render() -> tuple[bytes, str]:
    """The exposition text, aggregated over workers in multiprocess mode."""
    with contextlib.suppress(RuntimeError):  # no running loop: rendered outside a server
        TASKS.set(len(asyncio.all_tasks()))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        # Registers itself with `registry` (the library leaves it untyped).
        cast(Any, MultiProcessCollector)(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
