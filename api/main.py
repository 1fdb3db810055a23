"""The application factory. `uvicorn api.main:app` serves the module-level `app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI, Request, WebSocket
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import WebSocketRequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.exceptions import WebSocketException
from starlette.websockets import WebSocketState

from api import metrics, migrate
from api.asgi import KeepServerSend
from api.auth.credentials import CredentialResolver, echoed_subprotocol
from api.auth.security import TokenCodec, configure_password_hashing
from api.auth.throttle import FailureThrottle
from api.auth.tickets import ticket_consumer
from api.cache import TTLCache
from api.collector import tune_collector
from api.config import Settings
from api.db import make_engine, make_session_factory
from api.deps import Runtime
from api.items.feed import StoreFeed
from api.items.group_store import group_store_for
from api.items.service import Access
from api.items.writer import MessageWriter
from api.limits import BodyLimit, KeepEncodedSlashes, allow_long_handshake_lines
from api.logs import install_redaction, use_json_logs
from api.realtime import protocol
from api.realtime.broker import broker_from_url
from api.realtime.hub import Hub
from api.realtime.presence import presence_for
from api.routes import auth, channel, items, monitor, ops, pages


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    # Fail at start-up, not at the first login, when the key is unusable.
    signing_key = settings.signing_key
    install_redaction()
    allow_long_handshake_lines()
    configure_password_hashing(settings.password_hash_time_cost, settings.password_hash_memory_kib)
    if settings.log_json:
        use_json_logs()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = settings.effective_database_url
        if url.startswith("sqlite"):
            settings.var_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(url, sqlite_synchronous=settings.sqlite_synchronous)
        if settings.auto_migrate:
            await migrate.upgrade(engine)
        session_factory = make_session_factory(engine)
        codec = TokenCodec(signing_key, settings.jwt_algorithm, settings.jwt_leeway)
        broker = broker_from_url(settings.broker_url)
        await broker.start()
        presence = presence_for(settings.broker_url)
        await presence.start()
        hub = Hub(broker, presence, StoreFeed(session_factory), settings.gap_check_interval)
        await hub.start()
        group_store = group_store_for(
            url,
            session_factory,
            retention=settings.message_retention,
            sqlite_synchronous=settings.sqlite_synchronous,
        )
        writer = MessageWriter(group_store, broker)
        await writer.start()
        resolver = CredentialResolver(
            codec,
            session_factory,
            settings.allowed_origins,
            ticket_consumer(session_factory),
            session_cache_ttl=settings.auth_cache_ttl,
        )
        access_cache: TTLCache[tuple[str, str], Access] = TTLCache(settings.auth_cache_ttl)
        hub.on_revocation = partial(evict, resolver, access_cache)
        app.state.runtime = Runtime(
            settings=settings,
            engine=engine,
            session_factory=session_factory,
            codec=codec,
            resolver=resolver,
            broker=broker,
            hub=hub,
            writer=writer,
            access_cache=access_cache,
            login_throttle_user=FailureThrottle(
                settings.login_failures_per_username, settings.login_failure_window
            ),
            login_throttle_address=FailureThrottle(
                settings.login_failures_per_address, settings.login_failure_window
            ),
        )
        if settings.tune_gc:
            tune_collector()
        try:
            yield
        finally:
            await writer.stop()
            await hub.stop()
            await presence.close()
            await broker.close()
            await engine.dispose()

    app = FastAPI(
        title="Item Channels",
        version="0.1.0",
        summary="Authenticated real-time channels per item.",
        lifespan=lifespan,
    )
    # The publish route applies MAX_MESSAGE_BYTES itself; this bounds every other body.
    body_limit = max(settings.max_request_bytes, settings.max_message_bytes + 1024)
    app.add_middleware(BodyLimit, limit=body_limit)
    app.add_middleware(KeepEncodedSlashes)
    app.add_middleware(KeepServerSend)  # outermost: it must see the server's own `send`
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(WebSocketException, reject_socket)  # type: ignore[arg-type]
    app.add_exception_handler(WebSocketRequestValidationError, reject_socket)  # type: ignore[arg-type]
    for module in (auth, items, channel, ops, monitor, pages):
        app.include_router(module.router)
    return app


def evict(
    resolver: CredentialResolver,
    access_cache: TTLCache[tuple[str, str], Access],
    command: dict[str, str],
) -> None:
    """Keep the credential caches in step with revocations (local or remote)."""
    op = command.get("op")
    if op == "session":
        resolver.forget_session(command["sid"])
    elif op in ("member", "role"):
        access_cache.pop((command["item"], command["user"]))
    elif op == "item":
        access_cache.drop_where(lambda key: key[0] == command["item"])
    elif op == "all":  # the broker was away: anything may have been missed
        resolver.forget_all_sessions()
        access_cache.clear()


BODY_PARSE_ERROR = "There was an error parsing the body"


async def http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's own answers, except that a body it cannot parse (nested too deep for
    its JSON parser, say) is an invalid body: 422, as for any other."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == BODY_PARSE_ERROR:
        detail = [{"type": "json_invalid", "loc": ["body"], "msg": "JSON could not be parsed"}]
        return JSONResponse({"detail": detail}, status_code=422)
    return await http_exception_handler(request, exc)


async def reject_socket(websocket: WebSocket, exc: Exception) -> None:
    """Complete the handshake, then close with 1008 and the reason.

    Closing before `accept()` makes uvicorn answer a bare HTTP 403, and browsers (and
    most clients) never see the close code. The `bearer` subprotocol is echoed when it
    was offered, or browsers fail the handshake instead.
    """
    if isinstance(exc, WebSocketException):
        code, reason = exc.code, exc.reason or ""
    else:
        code, reason = protocol.POLICY_VIOLATION, "invalid request"
    metrics.SOCKETS_REFUSED.labels(reason=reason).inc()
    if websocket.application_state == WebSocketState.CONNECTING:
        await websocket.accept(subprotocol=echoed_subprotocol(websocket))
    if websocket.application_state == WebSocketState.CONNECTED:
        await websocket.close(code, reason)


app = create_app()
