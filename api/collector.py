"""Garbage-collector settings for a process that holds thousands of sockets.

Every open socket is a few hundred objects that live as long as it does (protocol
state, buffers, a task and its coroutine frames). CPython's full collection walks all
of them, and with the default thresholds it runs every few seconds under load: with
5,000 sockets each run stopped the event loop for about half a second, the whole
latency tail of the fan-out. Two changes make full collections short and rare:

- `gc.freeze()` once started: the objects of the startup (modules, classes, the app)
  live forever anyway; frozen, no collection walks them again.
- a higher first threshold: fewer young collections means fewer objects that merely
  happen to be in flight (a queued frame, a pending future) promoted to the old
  generation, whose growth is what triggers a full collection.

Reference counting still frees everything at once that is not in a cycle; cycles are
still collected, only less often.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000  # allocations between young collections (CPython's default: 700)
MIDDLE_THRESHOLD = 20  # young collections per middle one (default 10)
OLD_THRESHOLD = 20  # middle collections before a full one is considered (default 10)


def tune_collector() -> None:
    gc.collect()  # garbage left by the startup is not frozen with it
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
