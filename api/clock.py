"""Time, as the service stores and shows it: aware UTC, ISO-8601 with a `Z`."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


# The last timestamp formatted: a stored group's messages share theirs, so each message
# frame of a group after the first finds its text here.
_last_formatted: tuple[datetime | None, str] = (None, "")


def iso_z(ts: datetime) -> str:
    """Millisecond precision, the precision messages are stored with; `ts` in UTC (aware
    or not)."""
    global _last_formatted
    last, text = _last_formatted
    if ts is last:
        return text
    # isoformat is C and always writes a four-digit year: its first 23 characters are
    # the date and time to the millisecond (strftime took twice as long).
    text = ts.isoformat(timespec="milliseconds")[:23] + "Z"
    _last_formatted = (ts, text)
    return text
