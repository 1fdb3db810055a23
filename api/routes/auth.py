"""Identity: register, tokens, login and logout, the current user, channel tickets."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from api.auth import sessions, users
from api.auth.attempts import AuthLimits, Refused
from api.auth.credentials import SESSION_COOKIE
from api.auth.security import ACCESS, TICKET
from api.deps import CurrentUser, DbDep, RuntimeDep, unauthorized
from api.errors import Conflict, Unauthorized
from api.routes.schemas import (
    Credentials,
    LoginOut,
    NewCredentials,
    TicketIn,
    TicketOut,
    TokenOut,
    UserOut,
)

router = APIRouter(prefix="/auth", tags=["auth"])
# Spelt as the contract writes it; Starlette passes the value through as given.
SAMESITE: Any = "Lax"


async def get_auth_limits(runtime: RuntimeDep) -> AuthLimits:
    return runtime.auth_limits


AuthLimitsDep = Annotated[AuthLimits, Depends(get_auth_limits)]


def _refused(exc: Refused) -> HTTPException:
    return HTTPException(
        exc.status, detail=exc.detail, headers={"Retry-After": str(exc.retry_after)}
    )


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post("/register", status_code=status.HTTP_201_CREATED)
async def register(
    body: NewCredentials, request: Request, limits: AuthLimitsDep, db: DbDep
) -> UserOut:
    """Create an account."""
    try:
        await limits.registration(_address(request))
        user = await users.register(db, body.username, body.password, limits.hash_gate.run)
    except Refused as exc:
        raise _refused(exc) from exc
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=exc.detail) from exc
    return UserOut(id=user.id, username=user.username)


async def _login(  # type: ignore[no-untyped-def]
    request: Request, runtime: RuntimeDep, db: DbDep, username: str, password: str
):
    limits = runtime.auth_limits
    try:
        # Counted before the check: concurrent attempts cannot all get in first.
        await limits.login_attempt(username, _address(request))
        user = await users.authenticate(db, username, password, limits.hash_gate.run)
    except Refused as exc:
        raise _refused(exc) from exc
    except Unauthorized as exc:
        raise unauthorized(exc.detail) from exc
    await limits.login_succeeded(username)
    secret, session = await sessions.open_session(db, user, runtime.settings.session_ttl)
    token, _ = runtime.codec.encode(
        sub=user.id, sid=session.id, typ=ACCESS, ttl=runtime.settings.access_token_ttl
    )
    return user, secret, token


@router.post("/token")
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    runtime: RuntimeDep,
    db: DbDep,
) -> TokenOut:
    """OAuth2 password flow: an access token for API clients (no cookie)."""
    _, _, access_token = await _login(request, runtime, db, form.username, form.password)
    return TokenOut(access_token=access_token, expires_in=runtime.settings.access_token_ttl)


@router.post("/login")
async def login(
    body: Credentials, request: Request, response: Response, runtime: RuntimeDep, db: DbDep
) -> LoginOut:
    """Log in: a session cookie for browsers and an access token of the same session."""
    user, secret, access_token = await _login(request, runtime, db, body.username, body.password)
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=runtime.settings.session_ttl,
        path="/",
        httponly=True,
        samesite=SAMESITE,
        secure=request.url.scheme == "https",
    )
    return LoginOut(
        access_token=access_token,
        expires_in=runtime.settings.access_token_ttl,
        user=UserOut(id=user.id, username=user.username),
    )


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(principal: CurrentUser, runtime: RuntimeDep, db: DbDep) -> Response:
    """Revoke the session behind the credential; its tokens and sockets stop at once."""
    await sessions.revoke(db, principal.session_id)
    await runtime.hub.revoke_session(principal.session_id)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite=SAMESITE)
    return response


@router.get("/me")
async def me(principal: CurrentUser) -> UserOut:
    """The current user."""
    return UserOut(id=principal.user_id, username=principal.username)


@router.post("/refresh")
async def refresh(principal: CurrentUser, runtime: RuntimeDep) -> TokenOut:
    """A fresh access token of the caller's session."""
    access_token, _ = runtime.codec.encode(
        sub=principal.user_id,
        sid=principal.session_id,
        typ=ACCESS,
        ttl=runtime.settings.access_token_ttl,
    )
    return TokenOut(access_token=access_token, expires_in=runtime.settings.access_token_ttl)


@router.post("/ws-ticket")
async def ws_ticket(
    principal: CurrentUser, runtime: RuntimeDep, body: Annotated[TicketIn | None, Body()] = None
) -> TicketOut:
    """A single-use channel ticket, to put in `?token=` instead of a long-lived token."""
    ttl = runtime.settings.ws_ticket_ttl
    ticket, _ = runtime.codec.encode(
        sub=principal.user_id,
        sid=principal.session_id,
        typ=TICKET,
        ttl=ttl,
        item_id=body.item_id if body else None,
    )
    return TicketOut(token=ticket, expires_in=ttl)
