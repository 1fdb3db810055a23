from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import BACKENDS, Backend, LiveServer, live_server
from tests.support import Api


@pytest.fixture(scope="session", params=BACKENDS, ids=[b.name for b in BACKENDS])
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def server(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One shared server per backend; tests use fresh users and items, so they don't collide."""
    with live_server(backend, tmp_path_factory.mktemp(backend.name)) as srv:
        yield srv


@pytest.fixture
def make_server(
    backend: Backend, tmp_path: Path
) -> Callable[..., AbstractContextManager[LiveServer]]:
    """A server with its own settings, e.g. `with make_server(access_token_ttl=2) as srv:`."""

    def make(**overrides: Any) -> AbstractContextManager[LiveServer]:
        return live_server(backend, tmp_path, **overrides)

    return make


@pytest.fixture
async def api(server: LiveServer) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        yield Api(server, http)
