"""The broker and presence backends the contract suites run against."""

from __future__ import annotations

import pytest

from tests.servers import REDIS_URL

BACKEND_URLS = [
    pytest.param("memory://", id="memory"),
    pytest.param(
        REDIS_URL or "redis://unset",
        id="redis",
        marks=pytest.mark.skipif(not REDIS_URL, reason="needs TEST_REDIS_URL"),
    ),
]
