"""The browser pages (`GET /`, `GET /monitor`) and their static files, from api/web/."""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse

router = APIRouter(include_in_schema=False)

# Package data: wherever the package is installed, not relative to a source tree.
WEB_DIR = Path(str(files("api") / "web"))
# Only plain names of the kinds served here: no paths, so nothing outside WEB_DIR.
STATIC_NAME = re.compile(r"[a-z0-9][a-z0-9-]*\.(js|css|svg)")
MEDIA_TYPES = {
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
    "html": "text/html; charset=utf-8",
}
# Scripts and styles only from this origin, so injected markup could run nothing; data
# goes over this origin's REST and WebSocket endpoints only.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _file(name: str) -> FileResponse:
    path = WEB_DIR / name
    if not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Not Found")
    media_type = MEDIA_TYPES[name.rpartition(".")[2]]
    return FileResponse(path, media_type=media_type, headers=SECURITY_HEADERS)


@router.get("/")
async def index() -> FileResponse:
    """The item channels page."""
    return _file("index.html")


@router.get("/monitor")
async def monitor_page() -> FileResponse:
    """The live monitor page."""
    return _file("monitor.html")


@router.get("/static/{name}")
async def static_file(name: str) -> FileResponse:
    """The browser client module, the pages' scripts and styles."""
    if not STATIC_NAME.fullmatch(name):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Not Found")
    return _file(name)
