"""How an item's frames travel through the broker: one payload, encoded once."""

from __future__ import annotations


def item_channel(item_id: str) -> str:
    return f"item:{item_id}"


def envelope(seq: int, frame: str, stored_at: float = 0.0) -> bytes:
    """Broker payload: seq (0 for unsequenced frames), the wall-clock time it was stored,
    a newline, the frame."""
    return b"%d %.6f\n%s" % (seq, stored_at, frame.encode())


def open_envelope(payload: bytes) -> tuple[int, float, str]:
    head, _, body = payload.partition(b"\n")
    seq, _, stored_at = head.partition(b" ")
    return int(seq), float(stored_at or 0), body.decode()
