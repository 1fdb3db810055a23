"""The OpenAPI document, with the credentials REST calls accept declared as security
schemes, so that `/docs` can authenticate its "Try it out" calls.

Declaring them changes nothing about how requests are authenticated (api/deps.py does
that); it only says which operations need a credential, and of which kinds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from api.deps import AUTHENTICATED_INSIDE, current_principal

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    # /docs' Authorize dialog logs in with a username and password through /auth/token.
    "password": {
        "type": "oauth2",
        "description": "Log in with a username and password: an access token (bearer).",
        "flows": {"password": {"tokenUrl": "/auth/token", "scopes": {}}},
    },
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token from /auth/token, /auth/login or /auth/refresh.",
    },
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": "session",
        "description": (
            "The session cookie set by /auth/login (HttpOnly: a browser sends it by itself). "
            "POST/PUT/DELETE with it need an allowed Origin, or none."
        ),
    },
}
# Any one of them will do.
SECURITY: list[dict[str, list[str]]] = [{name: []} for name in SECURITY_SCHEMES]


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any] | None]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _calls(dependency)


def needs_credentials(route: APIRoute) -> bool:
    return route.endpoint in AUTHENTICATED_INSIDE or current_principal in _calls(route.dependant)


def build(app: FastAPI, routers: Iterable[APIRouter]) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
        )
        schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
        routes = [route for router in routers for route in router.routes]
        for route in routes:
            if isinstance(route, APIRoute) and route.include_in_schema and needs_credentials(route):
                for method in route.methods or ():
                    operation = schema["paths"][route.path_format].get(method.lower())
                    if operation is not None:
                        operation["security"] = SECURITY
        app.openapi_schema = schema
    return app.openapi_schema


def install(app: FastAPI, routers: Iterable[APIRouter]) -> None:
    """Serve `build(...)` as /openapi.json (built once, on first request), marking the
    operations of `routers` (the ones `app` includes) that need a credential."""
    routers = list(routers)
    app.openapi = lambda: build(app, routers)  # type: ignore[method-assign]
