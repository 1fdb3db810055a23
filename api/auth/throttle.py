"""Failed-login throttling: per username and per client address, in this process."""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque


class FailureThrottle:
    """Refuses a key after `limit` failures within `window` seconds.

    Memory is bounded: at most `max_keys` keys are tracked, the least recently failed
    forgotten first, so a flood of random usernames cannot grow it without end.
    """

    def __init__(self, limit: int, window: float, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, key: str) -> int:
        """Seconds until `key` may try again; 0 when it may now."""
        failures = self._failures.get(key)
        if failures is None:
            return 0
        now = time.monotonic()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if len(failures) < self.limit:
            return 0
        return max(1, math.ceil(failures[0] + self.window - now))

    def fail(self, key: str) -> None:
        failures = self._failures.pop(key, None) or deque(maxlen=self.limit)
        failures.append(time.monotonic())
        self._failures[key] = failures
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)
