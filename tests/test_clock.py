"""Timestamps as the service shows and stores them."""

from __future__ import annotations

from datetime import UTC, datetime

from api.clock import iso_z
from api.items.sqlite_store import sqlite_ts


def test_iso_z_is_utc_to_the_millisecond_aware_or_not() -> None:
    assert iso_z(datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)) == "2026-01-02T03:04:05.678Z"
    assert iso_z(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05.000Z"
    assert iso_z(datetime(999, 12, 31, 23, 59, 59, 999999)) == "0999-12-31T23:59:59.999Z"


def test_iso_z_formats_each_timestamp_however_often_it_is_asked() -> None:
    first = datetime(2026, 1, 2, 3, 4, 5, 1000, tzinfo=UTC)
    second = datetime(2026, 1, 2, 3, 4, 6, 2000, tzinfo=UTC)
    assert [iso_z(first), iso_z(first), iso_z(second), iso_z(first)] == [
        "2026-01-02T03:04:05.001Z",
        "2026-01-02T03:04:05.001Z",
        "2026-01-02T03:04:06.002Z",
        "2026-01-02T03:04:05.001Z",
    ]


def test_sqlite_ts_is_what_sqlalchemy_stores_for_a_datetime() -> None:
    ts = datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)
    assert sqlite_ts(ts) == "2026-01-02 03:04:05.006000"
    assert sqlite_ts(ts.replace(microsecond=0)) == "2026-01-02 03:04:05.000000"
