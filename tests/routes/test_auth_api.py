"""CONTRACT §2: identity over REST (register, token, login, logout, me, refresh, ws-ticket)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import jwt
import pytest

from tests.servers import LiveServer
from tests.support import PASSWORD, Api, User, unique
from tests.tokens import WRONG_KEY, claims_of, sign

ACCESS_TOKEN_TTL = 900
WS_TICKET_TTL = 60
TOKEN_KEYS = {"access_token", "token_type", "expires_in"}


# --- helpers -------------------------------------------------------------------------------


def cookie_header(secret: str) -> dict[str, str]:
    """The session cookie sent explicitly, without the client's cookie jar."""
    return {"Cookie": f"session={secret}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_401(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.headers.get("www-authenticate") == "Bearer"
    assert "detail" in r.json()


def cookie_attributes(set_cookie: str) -> tuple[str, str, dict[str, str]]:
    """`name=value; Attr=x; Flag` -> (name, value, {attr-lowercased: value})."""
    first, *rest = (part.strip() for part in set_cookie.split(";"))
    name, _, value = first.partition("=")
    attrs = {}
    for part in rest:
        key, _, val = part.partition("=")
        attrs[key.strip().lower()] = val.strip()
    return name, value, attrs


def session_set_cookie(r: httpx.Response) -> str:
    headers = [h for h in r.headers.get_list("set-cookie") if h.startswith("session=")]
    assert len(headers) == 1, r.headers.get_list("set-cookie")
    return headers[0]


async def register(api: Api, username: str, password: str = PASSWORD) -> httpx.Response:
    return await api.http.post("/auth/register", json={"username": username, "password": password})


async def login(api: Api, username: str, password: str = PASSWORD) -> httpx.Response:
    """POST /auth/login, leaving the client's cookie jar empty afterwards."""
    r = await api.http.post("/auth/login", json={"username": username, "password": password})
    api.http.cookies.clear()
    return r


async def token_form(api: Api, username: str, password: str) -> httpx.Response:
    return await api.http.post("/auth/token", data={"username": username, "password": password})


async def me_status(api: Api, headers: dict[str, str]) -> int:
    return (await api.http.get("/auth/me", headers=headers)).status_code


# --- register ------------------------------------------------------------------------------


async def test_register_creates_a_user(api: Api) -> None:
    username = unique()
    r = await register(api, username)
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"id", "username"}
    assert body["username"] == username
    assert isinstance(body["id"], str) and body["id"]


async def test_register_ids_are_distinct(api: Api) -> None:
    a = (await register(api, unique())).json()["id"]
    b = (await register(api, unique())).json()["id"]
    assert a != b


@pytest.mark.parametrize(
    "username",
    [
        pytest.param(lambda: unique("")[:3], id="3-chars"),
        pytest.param(lambda: (unique() * 6)[:64], id="64-chars"),
        pytest.param(lambda: f"A.b-c_{unique()}", id="dots-dashes-underscores"),
    ],
)
async def test_register_accepts_valid_usernames(api: Api, username: Any) -> None:
    name = username()
    r = await register(api, name)
    assert r.status_code == 201, r.text
    assert r.json()["username"] == name


@pytest.mark.parametrize(
    "password",
    [pytest.param("p" * 8, id="8-chars"), pytest.param("p" * 1024, id="1024-chars")],
)
async def test_register_accepts_password_length_bounds(api: Api, password: str) -> None:
    username = unique()
    assert (await register(api, username, password)).status_code == 201
    r = await login(api, username, password)
    assert r.status_code == 200, r.text


async def test_register_taken_username_is_409(api: Api) -> None:
    username = unique()
    assert (await register(api, username)).status_code == 201
    r = await register(api, username, "another password")
    assert r.status_code == 409, r.text
    assert "detail" in r.json()
    # The original account is untouched.
    assert (await login(api, username)).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"username": "ab", "password": PASSWORD}, id="username-2-chars"),
        pytest.param({"username": "a" * 65, "password": PASSWORD}, id="username-65-chars"),
        pytest.param({"username": "has space", "password": PASSWORD}, id="username-space"),
        pytest.param({"username": "sl/ash", "password": PASSWORD}, id="username-slash"),
        pytest.param({"username": "ünïcode", "password": PASSWORD}, id="username-non-ascii"),
        pytest.param({"username": "trailing\n", "password": PASSWORD}, id="username-newline"),
        pytest.param({"username": "", "password": PASSWORD}, id="username-empty"),
        pytest.param({"username": 12345, "password": PASSWORD}, id="username-number"),
        pytest.param({"username": "valid_name", "password": "p" * 7}, id="password-7-chars"),
        pytest.param({"username": "valid_name", "password": "p" * 1025}, id="password-1025"),
        pytest.param({"username": "valid_name"}, id="password-missing"),
        pytest.param({"password": PASSWORD}, id="username-missing"),
        pytest.param(
            {"username": "valid_name", "password": PASSWORD, "admin": True}, id="extra-field"
        ),
        pytest.param([], id="not-an-object"),
    ],
)
async def test_register_invalid_body_is_422(api: Api, body: Any) -> None:
    r = await api.http.post("/auth/register", json=body)
    assert r.status_code == 422, r.text
    assert "detail" in r.json()


async def test_register_invalid_json_is_422(api: Api) -> None:
    r = await api.http.post(
        "/auth/register", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 422, r.text


# --- token (OAuth2 password form) ----------------------------------------------------------


async def test_token_form_issues_a_bearer_token(api: Api) -> None:
    user = await api.user()
    r = await token_form(api, user.username, user.password)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == TOKEN_KEYS
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == ACCESS_TOKEN_TTL
    me = await api.http.get("/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json() == {"id": user.id, "username": user.username}


@pytest.mark.parametrize("endpoint", ["/auth/token", "/auth/login"])
async def test_unknown_user_and_wrong_password_answer_the_same_401(api: Api, endpoint: str) -> None:
    user = await api.user()

    async def attempt(username: str, password: str) -> httpx.Response:
        creds = {"username": username, "password": password}
        if endpoint == "/auth/token":
            r = await api.http.post(endpoint, data=creds)
        else:
            r = await api.http.post(endpoint, json=creds)
        api.http.cookies.clear()
        return r

    wrong_password = await attempt(user.username, "not the password")
    unknown_user = await attempt(unique(), user.password)
    for r in (wrong_password, unknown_user):
        assert_401(r)
        assert "set-cookie" not in r.headers
    assert wrong_password.json() == unknown_user.json()


@pytest.mark.parametrize(
    "form",
    [
        pytest.param({"password": PASSWORD}, id="username-missing"),
        pytest.param({"username": "someone"}, id="password-missing"),
    ],
)
async def test_token_form_missing_field_is_422(api: Api, form: dict[str, str]) -> None:
    r = await api.http.post("/auth/token", data=form)
    assert r.status_code == 422, r.text


# --- login -------------------------------------------------------------------------------


async def test_login_returns_token_user_and_session_cookie(api: Api) -> None:
    username = unique()
    user_id = (await register(api, username)).json()["id"]
    r = await login(api, username)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == TOKEN_KEYS | {"user"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == ACCESS_TOKEN_TTL
    assert body["user"] == {"id": user_id, "username": username}

    name, value, attrs = cookie_attributes(session_set_cookie(r))
    assert name == "session"
    assert len(value) >= 22, "at least 128 bits of randomness"
    assert value != body["access_token"]
    assert "httponly" in attrs
    assert attrs.get("samesite", "").lower() == "lax"  # attribute values are case-insensitive
    assert attrs.get("path") == "/"
    assert "secure" not in attrs, "no Secure flag over plain http"

    me = await api.http.get("/auth/me", headers=cookie_header(value))
    assert me.status_code == 200
    assert me.json() == {"id": user_id, "username": username}


async def test_each_login_gets_a_new_session_cookie(api: Api) -> None:
    user = await api.user()
    r = await login(api, user.username)
    _, value, _ = cookie_attributes(session_set_cookie(r))
    assert value != user.cookie
    assert claims_of(r.json()["access_token"])["sid"] != claims_of(user.token)["sid"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"username": "someone"}, id="password-missing"),
        pytest.param({"username": "a b", "password": PASSWORD}, id="bad-username"),
        pytest.param({"username": "someone", "password": PASSWORD, "x": 1}, id="extra-field"),
    ],
)
async def test_login_invalid_body_is_422(api: Api, body: dict[str, Any]) -> None:
    r = await api.http.post("/auth/login", json=body)
    api.http.cookies.clear()
    assert r.status_code == 422, r.text


# --- me ------------------------------------------------------------------------------------


async def test_me_with_bearer_and_with_cookie(api: Api) -> None:
    user = await api.user()
    expected = {"id": user.id, "username": user.username}
    for headers in (user.headers, cookie_header(user.cookie)):
        r = await api.http.get("/auth/me", headers=headers)
        assert r.status_code == 200, r.text
        assert r.json() == expected
    assert claims_of(user.token)["sub"] == user.id


# --- every 401 carries WWW-Authenticate: Bearer ----------------------------------------------

AUTHENTICATED = [
    ("POST", "/auth/logout"),
    ("GET", "/auth/me"),
    ("POST", "/auth/refresh"),
    ("POST", "/auth/ws-ticket"),
]
BAD_CREDENTIALS = {
    "none": {},
    "garbage-bearer": {"Authorization": "Bearer not-a-jwt"},
    "empty-bearer": {"Authorization": "Bearer"},
    "basic-scheme": {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="},
    "unknown-cookie": {"Cookie": "session=unknown-session-secret"},
    "empty-cookie": {"Cookie": "session="},
}


@pytest.mark.parametrize(("method", "path"), AUTHENTICATED, ids=[p for _, p in AUTHENTICATED])
@pytest.mark.parametrize("credential", list(BAD_CREDENTIALS))
async def test_missing_or_bad_credentials_are_401(
    api: Api, method: str, path: str, credential: str
) -> None:
    r = await api.http.request(method, path, headers=BAD_CREDENTIALS[credential])
    assert_401(r)


async def test_token_signed_with_another_key_is_401(api: Api) -> None:
    user = await api.user()
    forged = sign(claims_of(user.token), key=WRONG_KEY)
    assert_401(await api.http.get("/auth/me", headers=bearer(forged)))


# --- logout --------------------------------------------------------------------------------


async def test_logout_with_cookie_revokes_cookie_and_tokens(api: Api) -> None:
    user = await api.user()
    refreshed = (await api.http.post("/auth/refresh", headers=user.headers)).json()["access_token"]

    r = await api.http.post("/auth/logout", headers=cookie_header(user.cookie))
    assert r.status_code == 204, r.text
    assert r.content == b""
    _, value, attrs = cookie_attributes(session_set_cookie(r))
    assert value in ("", '""'), "the cookie is cleared"
    assert attrs.get("max-age") == "0" or "expires" in attrs
    api.http.cookies.clear()

    assert_401(await api.http.get("/auth/me", headers=cookie_header(user.cookie)))
    assert_401(await api.http.get("/auth/me", headers=user.headers))
    assert_401(await api.http.get("/auth/me", headers=bearer(refreshed)))
    assert_401(await api.http.post("/auth/refresh", headers=user.headers))
    assert_401(await api.http.post("/auth/logout", headers=user.headers))


async def test_logout_with_bearer_revokes_the_session_cookie_too(api: Api) -> None:
    user = await api.user()
    r = await api.http.post("/auth/logout", headers=user.headers)
    api.http.cookies.clear()
    assert r.status_code == 204, r.text
    assert_401(await api.http.get("/auth/me", headers=user.headers))
    assert_401(await api.http.get("/auth/me", headers=cookie_header(user.cookie)))
    assert_401(await api.http.get("/items", headers=user.headers))


async def test_logout_revokes_only_its_own_session(api: Api) -> None:
    user = await api.user()
    other = (await login(api, user.username)).json()["access_token"]
    assert (await api.http.post("/auth/logout", headers=bearer(other))).status_code == 204
    api.http.cookies.clear()
    assert_401(await api.http.get("/auth/me", headers=bearer(other)))
    assert await me_status(api, user.headers) == 200
    assert await me_status(api, cookie_header(user.cookie)) == 200


# --- refresh -------------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["bearer", "cookie"])
async def test_refresh_gives_a_working_token_of_the_same_session(api: Api, via: str) -> None:
    user = await api.user()
    headers = user.headers if via == "bearer" else cookie_header(user.cookie)
    r = await api.http.post("/auth/refresh", headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == TOKEN_KEYS
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == ACCESS_TOKEN_TTL
    fresh, old = claims_of(body["access_token"]), claims_of(user.token)
    assert fresh["sid"] == old["sid"]
    assert fresh["sub"] == user.id
    assert fresh["typ"] == "access"
    assert fresh["jti"] != old["jti"]
    me = await api.http.get("/auth/me", headers=bearer(body["access_token"]))
    assert me.json() == {"id": user.id, "username": user.username}

    # Same session: logging out with the fresh token revokes the original token too.
    r = await api.http.post("/auth/logout", headers=bearer(body["access_token"]))
    assert r.status_code == 204, r.text
    api.http.cookies.clear()
    assert_401(await api.http.get("/auth/me", headers=user.headers))


# --- ws-ticket -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({}, id="no-body"),
        pytest.param({"json": {}}, id="empty-object"),
        pytest.param({"json": {"item_id": "some-item_1.x"}}, id="item-id"),
    ],
)
async def test_ws_ticket_is_issued(api: Api, kwargs: dict[str, Any]) -> None:
    user = await api.user()
    r = await api.http.post("/auth/ws-ticket", headers=user.headers, **kwargs)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"token", "expires_in"}
    assert isinstance(body["token"], str) and body["token"]
    assert body["expires_in"] == WS_TICKET_TTL


async def test_ws_ticket_with_cookie(api: Api) -> None:
    user = await api.user()
    r = await api.http.post("/auth/ws-ticket", headers=cookie_header(user.cookie))
    assert r.status_code == 200, r.text
    assert r.json()["expires_in"] == WS_TICKET_TTL


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"item_id": "has space"}, id="bad-item-id"),
        pytest.param({"item_id": "x" * 65}, id="item-id-65-chars"),
        pytest.param({"item_id": "ok", "extra": 1}, id="extra-field"),
    ],
)
async def test_ws_ticket_invalid_body_is_422(api: Api, body: dict[str, Any]) -> None:
    user = await api.user()
    r = await api.http.post("/auth/ws-ticket", headers=user.headers, json=body)
    assert r.status_code == 422, r.text


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/auth/me"), ("GET", "/items"), ("POST", "/auth/refresh")],
)
async def test_ws_ticket_is_not_accepted_on_rest(api: Api, method: str, path: str) -> None:
    user = await api.user()
    ticket = (await api.http.post("/auth/ws-ticket", headers=user.headers)).json()["token"]
    assert_401(await api.http.request(method, path, headers=bearer(ticket)))


# --- JWT claims and expiry -----------------------------------------------------------------


async def test_access_token_claims(api: Api) -> None:
    user = await api.user()
    form = (await token_form(api, user.username, user.password)).json()["access_token"]
    for token in (user.token, form):
        assert jwt.get_unverified_header(token)["alg"] == "HS256"
        claims = claims_of(token)
        assert {"sub", "sid", "iat", "exp", "jti", "typ"} <= set(claims)
        assert claims["sub"] == user.id
        assert isinstance(claims["sid"], str) and claims["sid"]
        assert isinstance(claims["jti"], str) and claims["jti"]
        assert claims["typ"] == "access"
        assert claims["exp"] - claims["iat"] == ACCESS_TOKEN_TTL
        assert abs(claims["iat"] - time.time()) < 60
    assert claims_of(user.token)["jti"] != claims_of(form)["jti"]
    assert claims_of(user.token)["sid"] != claims_of(form)["sid"]


@pytest.fixture
def short_ttl_server(make_server: Any) -> Iterator[LiveServer]:
    # Entered outside the event loop: a PostgreSQL server creates its database with asyncio.run.
    with make_server(access_token_ttl=2) as srv:
        yield srv


async def test_access_tokens_expire(short_ttl_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=short_ttl_server.base_url, timeout=30) as http:
        api = Api(short_ttl_server, http)
        user = await api.user()
        claims = claims_of(user.token)
        assert claims["exp"] - claims["iat"] == 2
        assert (await login(api, user.username)).json()["expires_in"] == 2
        assert await me_status(api, user.headers) == 200
        # Wait until now >= exp (the token's own clock), plus a margin.
        await asyncio.sleep(max(0.0, claims["exp"] - time.time()) + 0.3)
        assert_401(await http.get("/auth/me", headers=user.headers))
        assert_401(await http.post("/auth/refresh", headers=user.headers))
        # The session outlives its access tokens: the cookie still works and refreshes.
        r = await http.post("/auth/refresh", headers=cookie_header(user.cookie))
        assert r.status_code == 200, r.text
        assert claims_of(r.json()["access_token"])["sid"] == claims["sid"]
        assert await me_status(api, bearer(r.json()["access_token"])) == 200


# --- CSRF: cookie-authenticated unsafe methods need an allowed Origin -------------------------


async def _create_item(
    http: httpx.AsyncClient, user: User, origin: str | None, *, via: str = "cookie"
) -> httpx.Response:
    headers = cookie_header(user.cookie) if via == "cookie" else dict(user.headers)
    if origin is not None:
        headers["Origin"] = origin
    return await http.post("/items", json={"name": "csrf"}, headers=headers)


@pytest.fixture
def good_origin_server(make_server: Any) -> Iterator[LiveServer]:
    with make_server(allowed_origins=("http://good.example",)) as srv:
        yield srv


@pytest.fixture
async def good_origin_api(good_origin_server: LiveServer) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=good_origin_server.base_url, timeout=30) as http:
        yield Api(good_origin_server, http)


@pytest.mark.parametrize(
    ("via", "origin", "status"),
    [
        pytest.param("cookie", "http://evil.example", 403, id="cookie-evil-origin"),
        pytest.param("cookie", "http://good.example", 201, id="cookie-good-origin"),
        pytest.param("cookie", None, 201, id="cookie-no-origin"),
        pytest.param("bearer", "http://evil.example", 201, id="bearer-evil-origin"),
    ],
)
async def test_csrf_with_allowed_origins(
    good_origin_api: Api, via: str, origin: str | None, status: int
) -> None:
    api = good_origin_api
    user = await api.user()
    r = await _create_item(api.http, user, origin, via=via)
    assert r.status_code == status, r.text
    items = (await api.http.get("/items", headers=user.headers)).json()
    assert len(items) == (1 if status == 201 else 0)


async def test_csrf_own_origin_is_not_allowed_when_origins_are_listed(
    good_origin_api: Api,
) -> None:
    api = good_origin_api
    user = await api.user()
    r = await _create_item(api.http, user, api.server.base_url)
    assert r.status_code == 403, r.text


async def test_csrf_applies_to_put_and_delete(good_origin_api: Api) -> None:
    api = good_origin_api
    owner, member = await api.user(), await api.user()
    item = await api.item(owner)
    evil = {**cookie_header(owner.cookie), "Origin": "http://evil.example"}
    r = await api.http.put(f"/items/{item}/members/{member.username}", json={"role": "reader"})
    assert_401(r)
    r = await api.http.put(
        f"/items/{item}/members/{member.username}", json={"role": "reader"}, headers=evil
    )
    assert r.status_code == 403, r.text
    assert (await api.http.delete(f"/items/{item}", headers=evil)).status_code == 403
    assert (await api.http.post("/auth/logout", headers=evil)).status_code == 403
    # Nothing changed, and safe methods are not subject to the Origin check.
    r = await api.http.get(f"/items/{item}/members", headers=evil)
    assert r.status_code == 200, r.text
    assert r.json() == [{"username": owner.username, "role": "owner"}]
    assert await me_status(api, cookie_header(owner.cookie)) == 200


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        pytest.param("{own}", 201, id="own-origin"),
        pytest.param("http://evil.example", 403, id="foreign-origin"),
        pytest.param("https://127.0.0.1:{port}", 403, id="own-host-other-scheme"),
        pytest.param("http://localhost:{port}", 403, id="other-host-same-port"),
    ],
)
async def test_csrf_default_allowed_origin_is_the_servers_own(
    api: Api, origin: str, status: int
) -> None:
    user = await api.user()
    value = origin.format(own=api.server.base_url, port=api.server.port)
    r = await _create_item(api.http, user, value)
    assert r.status_code == status, r.text
