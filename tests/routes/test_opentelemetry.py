"""OPENTELEMETRY: FastAPI's native telemetry is opt-in. Off (the default), a request
never asks OpenTelemetry for its providers; on, FastAPI asks, as it does by default."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from opentelemetry import trace

from tests.support import Api


@pytest.fixture
def provider_lookups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per call FastAPI makes to `trace.get_tracer_provider`."""
    calls: list[int] = []
    original: Callable[[], Any] = trace.get_tracer_provider

    def counted() -> Any:
        calls.append(1)
        return original()

    monkeypatch.setattr(trace, "get_tracer_provider", counted)
    return calls


@pytest.mark.parametrize(
    ("settings", "enabled"), [({}, False), ({"opentelemetry": True}, True)], ids=["default", "on"]
)
def test_telemetry_is_opt_in(
    make_server: Any, provider_lookups: list[int], settings: dict[str, Any], enabled: bool
) -> None:
    with make_server(**settings) as srv:

        async def publish() -> None:
            async with httpx.AsyncClient(base_url=srv.base_url, timeout=30) as http:
                api = Api(srv, http)
                owner = await api.user()
                item = await api.item(owner)
                before = len(provider_lookups)
                r = await http.post(
                    f"/items/{item}/messages", json={"data": 1}, headers=owner.headers
                )
                assert r.status_code == 201, r.text
                assert (len(provider_lookups) > before) is enabled

        asyncio.run(publish())
