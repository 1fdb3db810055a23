"""Time, as the service stores and shows it: aware UTC, ISO-8601 with a `Z`."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso_z(ts: datetime) -> str:
    """Millisecond precision, the precision messages are stored with."""
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"
