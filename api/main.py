"""The application factory. `uvicorn api.main:app` serves the module-level `app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI, Request, WebSocket
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import WebSocketRequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.telemetry import TelemetryConfig
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.exceptions import WebSocketException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.websockets import WebSocketState

from api import __version__, metrics, migrate, openapi
from api.asgi import ServeAfterHandshake
from api.auth.attempts import AuthLimits, HashGate, default_concurrency, storage_for
from api.auth.credentials import CredentialResolver, echoed_subprotocol
from api.auth.security import TokenCodec, configure_password_hashing
from api.auth.tickets import ticket_consumer
from api.cache import TTLCache
from api.check_config import startup_problems
from api.collector import tune_collector
from api.config import Settings
from api.db import make_engine, make_session_factory, prepare_sqlite
from api.items.feed import AccessAudit, StoreFeed
from api.items.service import Access
from api.items.state_hub import StateHub
from api.items.state_writer import StateWriter
from api.items.stores import group_store_for, state_store_for
from api.items.writer import MessageWriter
from api.limits import BodyLimit, KeepEncodedSlashes, allow_long_handshake_lines
from api.logs import install_redaction, use_json_logs
from api.realtime import control, protocol
from api.realtime.backends import broker_from_url, presence_from_url
from api.realtime.hub import Hub
from api.routes import auth, channel, items, monitor, multiplex, ops, pages, state
from api.runtime import Runtime
from api.stats import StatsFeed

# Unless OPENTELEMETRY is set: FastAPI otherwise asks the global OpenTelemetry providers
# on every request and handshake whether an SDK is configured.
TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


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
        prepare_sqlite(url, settings.var_dir)
        engine = make_engine(url, sqlite_synchronous=settings.sqlite_synchronous)
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
        group_store = group_store_for(
            url,
            session_factory,
            retention=settings.message_retention,
            sqlite_synchronous=settings.sqlite_synchronous,
        )
        writer = MessageWriter(group_store, hub)
        await writer.start()
        state_hub = StateHub(broker, session_factory, settings.gap_check_interval)
        await state_hub.start()
        state_store = state_store_for(
            url,
            session_factory,
            max_bytes=settings.max_state_bytes,
            keep=settings.state_history,
            sqlite_synchronous=settings.sqlite_synchronous,
        )
        states = StateWriter(state_store, state_hub, settings.state_history)
        await states.start()
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
        limits_storage, close_limits = storage_for(
            settings.broker_url, settings.rate_limit_key_prefix
        )
        auth_limits = AuthLimits(
            limits_storage,
            logins_per_username=settings.login_failures_per_username,
            logins_per_address=settings.login_failures_per_address,
            login_window=settings.login_failure_window,
            registrations_per_address=settings.registrations_per_address,
            registration_window=settings.registration_window,
            hash_gate=HashGate(
                settings.password_hash_concurrency or default_concurrency(),
                settings.password_hash_queue,
            ),
        )
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
            auth_limits=auth_limits,
            stats=stats,
            states=states,
            state_hub=state_hub,
        )
        if settings.tune_gc:
            tune_collector()
        try:
            yield
        finally:
            await writer.stop()
            await close_limits()
            await states.stop()
            await state_hub.stop()
            await stats.stop()
            await hub.stop()
            await presence.close()
            await broker.close()
            await engine.dispose()

    # /docs and /redoc with their scripts served from here, not from a CDN.
    app = FastAPIOffline(
        title="Item Channels",
        version=__version__,
        summary="Authenticated real-time channels per item.",
        lifespan=lifespan,
        telemetry=None if settings.opentelemetry else TELEMETRY_OFF,
    )
    # The publish route applies MAX_MESSAGE_BYTES itself; this bounds every other body.
    body_limit = max(settings.max_request_bytes, settings.max_message_bytes + 1024)
    app.add_middleware(BodyLimit, limit=body_limit)
    app.add_middleware(KeepEncodedSlashes)
    if settings.trusted_hosts:
        # Outside the routes: a request for another host is refused before any work.
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(settings.trusted_hosts))
    # Outermost: it serves accepted sockets after the app's call, on the server's own
    # `receive` and `send`.
    app.add_middleware(ServeAfterHandshake)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(WebSocketException, reject_socket)
    app.add_exception_handler(WebSocketRequestValidationError, reject_socket)
    # Tried in this order, each route passed over costing a match attempt: the sockets
    # and the item routes (handshakes, publishes) before the rarer ones.
    routers = [
        module.router for module in (channel, multiplex, items, auth, state, ops, monitor, pages)
    ]
    for router in routers:
        app.include_router(router)
    openapi.install(app, routers)
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


def app_from_environment() -> FastAPI:
    """The app `uvicorn api.main:app` serves; bad settings stop it with one line each."""
    if problems := startup_problems():
        raise SystemExit("\n".join(problems))
    return create_app()


app = app_from_environment()
