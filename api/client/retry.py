"""Reconnect delays: exponential backoff with jitter, so restarted servers are not stampeded."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before reconnect `attempt` (0 for the first after a drop)."""
        base = min(self.maximum, self.initial * self.factor ** min(attempt, 64))
        # Jitter spreads the reconnects of many clients dropped at once; not a secret.
        return base * (0.5 + random.random() / 2)  # noqa: S311
