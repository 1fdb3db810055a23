"""Batched delivery (opt-in, `?batch=1`): consecutive frames joined into `batch` frames."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

# A batch stays below the 1 MiB frame limit most WebSocket clients default to.
BATCH_MAX_FRAMES = 1000
BATCH_MAX_BYTES = 768 * 1024
_BATCH_HEAD = '{"type":"batch","frames":['


def pack(frames: Sequence[str]) -> Iterator[str]:
    """`frames` in order, as few frames as the limits allow (a lone frame stays as it is)."""
    group: list[str] = []
    size = 0
    for frame in frames:
        frame_size = utf8_size(frame)
        if group and (len(group) == BATCH_MAX_FRAMES or size + frame_size > BATCH_MAX_BYTES):
            yield _join(group)
            group = []
            size = 0
        group.append(frame)
        size += frame_size
    if group:
        yield _join(group)


def utf8_size(frame: str) -> int:
    # orjson writes non-ASCII characters as they are: up to 4 bytes each on the wire.
    return len(frame) if frame.isascii() else len(frame.encode())


def _join(frames: list[str]) -> str:
    return frames[0] if len(frames) == 1 else _BATCH_HEAD + ",".join(frames) + "]}"
