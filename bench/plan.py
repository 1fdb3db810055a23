"""How big each scenario is: the full run, and `--quick` (tiny N, seconds)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FanoutCase:
    subscribers: int
    burst: int  # messages published back to back
    rate: float  # paced stream, messages per second


@dataclass(frozen=True)
class Plan:
    name: str
    # fan-out: subscribers on one item, a burst then a paced stream at each size.
    fanout: tuple[FanoutCase, ...]
    paced_seconds: float
    # connect: authenticated handshakes, `connect_concurrency` in flight per client process.
    connect_count: int
    connect_concurrency: int
    # memory: idle sockets open at each step.
    memory_steps: tuple[int, ...]
    # publish: messages per case; sockets per item and unacknowledged publishes each.
    publish_total: int
    publish_items: int
    publish_window_one_item: int
    publish_window_many_items: int
    publish_windows_one_socket: tuple[int, ...]  # one socket, this many unacknowledged
    rest_connections: int  # per client process
    # state: changes (and publishes, the baseline) per case; one socket's unacknowledged
    # ones; racing writers on one document and each one's unacknowledged; padding per change.
    state_total: int
    state_window: int
    state_writers: int
    state_writer_window: int
    state_pad: int
    # slow subscriber: subscribers (the slow one included), paced rate, padding per message;
    # the slow one's receive buffer and maximum segment size (a slow link: the server's
    # kernel then buffers ~50 KB for it instead of megabytes on loopback).
    slow_subscribers: int
    slow_rate: float
    slow_seconds: float
    slow_padding: int
    slow_rcvbuf: int
    slow_mss: int
    # batch: subscribers with `?batch=1` and a burst big enough to overload the clients.
    batch_subscribers: int
    batch_burst: int
    # multiplex: sockets on `/ws` each subscribed to this many items (one of them
    # published on), against as many item-channel sockets on that item.
    multiplex_sockets: int
    multiplex_subscriptions: int
    multiplex_burst: int
    multiplex_rate: float
    # Time limits.
    settle_seconds: float
    phase_grace: float  # beyond the expected end of a phase
    idle_cutoff: float  # a phase with nothing received for this long is over
    min_delivery_rate: float  # deliveries/s below which a phase is cut short
    min_handshake_rate: float


FULL = Plan(
    name="full",
    fanout=(
        FanoutCase(100, burst=500, rate=100.0),
        FanoutCase(1000, burst=100, rate=20.0),
        FanoutCase(5000, burst=20, rate=4.0),
    ),
    paced_seconds=10.0,
    connect_count=2000,
    connect_concurrency=50,
    memory_steps=(5000, 10000),
    # 5,000 made a WebSocket case last 0.4 s: start-up and the CPU clock's 10 ms ticks
    # moved its figure by a fifth between runs.
    publish_total=20000,
    publish_items=100,
    publish_window_one_item=32,
    publish_window_many_items=4,
    publish_windows_one_socket=(32, 64, 256),
    rest_connections=8,
    state_total=5000,
    state_window=64,
    state_writers=8,
    state_writer_window=8,
    state_pad=100,
    slow_subscribers=1000,
    slow_rate=20.0,
    slow_seconds=10.0,
    slow_padding=2048,
    slow_rcvbuf=4096,
    slow_mss=536,
    batch_subscribers=1000,
    batch_burst=500,
    multiplex_sockets=1000,
    multiplex_subscriptions=10,
    multiplex_burst=100,
    multiplex_rate=20.0,
    settle_seconds=1.0,
    phase_grace=15.0,
    idle_cutoff=5.0,
    min_delivery_rate=2000.0,
    min_handshake_rate=20.0,
)

QUICK = Plan(
    name="quick",
    fanout=(FanoutCase(10, burst=20, rate=50.0), FanoutCase(30, burst=10, rate=20.0)),
    paced_seconds=0.5,
    connect_count=40,
    connect_concurrency=10,
    memory_steps=(40, 80),
    publish_total=100,
    publish_items=10,
    publish_window_one_item=8,
    publish_window_many_items=2,
    publish_windows_one_socket=(8, 64),
    rest_connections=2,
    state_total=200,
    state_window=64,
    state_writers=8,
    state_writer_window=8,
    state_pad=100,
    slow_subscribers=20,
    slow_rate=20.0,
    slow_seconds=0.5,
    slow_padding=256,
    slow_rcvbuf=4096,
    slow_mss=536,
    batch_subscribers=20,
    batch_burst=50,
    multiplex_sockets=30,
    multiplex_subscriptions=3,
    multiplex_burst=10,
    multiplex_rate=20.0,
    settle_seconds=0.2,
    phase_grace=10.0,
    idle_cutoff=3.0,
    min_delivery_rate=200.0,
    min_handshake_rate=5.0,
)
