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
from api.asgi import ServeAfterHandshake
from api.auth.credentials import CredentialResolver, echoed_subprotocol
from api.auth.security import TokenCodec, configure_password_hashing
from api.auth.throttle import FailureThrottle
from api.auth.tickets import ticket_consumer
from api.cache import TTLCache
from api.collector import tune_collector
from api.config import Settings
from api.db import make_engine, make_session_factory
from api.items.feed import AccessAudit, StoreFeed
from api.items.service import Access
from api.items.writer import MessageWriter
from api.limits import BodyLimit, KeepEncodedSlashes, allow_long_handshake_lines
from api.logs import install_redaction, use_json_logs
from api.realtime import control, protocol
from api.realtime.backends import broker_from_url, presence_from_url
from api.realtime.hub import Hub
from api.routes import auth, channel, items, monitor, ops, pages
from api.runtime import Runtime
from api.stats import StatsFeed


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
        engine = make_engine(url)
        if settings.auto_migrate:
            await migrate.upgrade(engine)
        session_factory = make_session_factory(engine)
        codec = TokenCodec(signing_key, settings.jwt_algorithm, settings.jwt_leeway)
        broker = broker_from_url(settings.broker_url)
        await broker.start()
        presence = presence_from_url(settings.broker_url)
        await presence.start()
        hub = Hub(
            broker,
            presence,
            StoreFeed(session_factory),
            settings.gap_check_interval,
            audit=AccessAudit(session_factory),
            presence_tick=settings.presence_tick,
        )
        writer = MessageWriter(session_factory, hub, settings.message_retention)
        await writer.start()
        resolver = CredentialResolver(
            codec,
            session_factory,
            settings.allowed_origins,
            ticket_consumer(session_factory),
            session_cache_ttl=settings.auth_cache_ttl,
        )
        access_cache: TTLCache[tuple[str, str], Access] = TTLCache(settings.auth_cache_ttl)
        hub.control.listen(partial(evict, resolver, access_cache))
        await hub.start()
        stats = StatsFeed()
        stats.start()
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
            stats=stats,
        )
        if settings.tune_gc:
            tune_collector()
        try:
            yield
        finally:
            await writer.stop()
            await stats.stop()
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
    # Outermost: it serves accepted sockets after the app's call, on the server's own
    # `receive` and `send`.
    app.add_middleware(ServeAfterHandshake)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(WebSocketException, reject_socket)
    app.add_exception_handler(WebSocketRequestValidationError, reject_socket)
    for module in (auth, items, channel, ops, monitor, pages):
        app.include_router(module.router)
    return app


def evict(
    resolver: CredentialResolver,
    access_cache: TTLCache[tuple[str, str], Access],
    command: control.Command,
) -> None:
    """Keep the credential caches in step with revocations (local or remote)."""
    if isinstance(command, control.SessionRevoked):
        resolver.forget_session(command.session_id)
    elif isinstance(command, control.MemberRevoked | control.RoleChanged):
        access_cache.pop((command.item_id, command.user_id))
    elif isinstance(command, control.ItemDeleted):
        item_id = command.item_id
        access_cache.drop_where(lambda key: key[0] == item_id)
    elif isinstance(command, control.Resync):  # the broker was away: anything may be stale
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
