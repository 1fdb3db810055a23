"""The scenarios, by name: each runs the three servers and returns its figures."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bench.context import Context
from bench.results import ScenarioResult
from bench.scenarios import batch, connect, fanout, memory, multiplex, publish, slow, state

Scenario = Callable[[Context], Awaitable[ScenarioResult]]

SCENARIOS: dict[str, Scenario] = {
    "fanout": fanout.run,
    "connect": connect.run,
    "memory": memory.run,
    "publish": publish.run,
    "slow": slow.run,
    "batch": batch.run,
    "state": state.run,
    "multiplex": multiplex.run,
}
