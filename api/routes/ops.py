"""Health and readiness."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from api import metrics
from api.deps import RuntimeDep
from api.realtime import asyncapi as asyncapi_document

router = APIRouter(tags=["operations"])
CHECK_TIMEOUT = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """200 while the process runs."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "A dependency does not answer"}})
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """200 when the database and the broker answer; 503 naming the failing part."""

    async def database() -> None:
        async with runtime.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    checks = {"database": database, "broker": runtime.broker.ping}
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            await asyncio.wait_for(check(), CHECK_TIMEOUT)
            results[name] = "ok"
        except Exception as exc:  # any failure means "not ready", and says which part
            results[name] = f"unavailable: {type(exc).__name__}"
    ready = all(v == "ok" for v in results.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", **results}, 200 if ready else 503
    )


@router.get("/metrics", response_class=Response)
async def metrics_text() -> Response:
    """Prometheus text format."""
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


@router.get("/asyncapi.json")
async def asyncapi(request: Request) -> dict[str, Any]:
    """The channel protocol as an AsyncAPI 3 document."""
    secure = request.url.scheme in ("https", "wss")
    return asyncapi_document.build(request.app.version, request.url.netloc, secure)
