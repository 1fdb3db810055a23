"""Every §4 rejection against a real server: handshake completes, then 1008 + the reason."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest

from tests.servers import LiveServer
from tests.support import (
    Api,
    User,
    channel_url,
    cookie_headers,
    login,
    logout,
    ready,
    ready_frame,
    ready_via,
    reject,
    started,
)
from tests.tokens import access_claims, sign, unsigned

POLICY = 1008
OTHER_KEY = "another-secret-key-that-is-long-enough-9876543210"
MakeServer = Callable[..., AbstractContextManager[LiveServer]]


async def owned_item(api: Api) -> tuple[User, str]:
    user = await api.user()
    return user, await api.item(user)


def url(api: Api, item_id: str, **query: str) -> str:
    return channel_url(api.server, item_id, **query)


# Missing credentials.


async def test_no_credentials_at_all(api: Api) -> None:
    _, item = await owned_item(api)
    assert await reject(url(api, item)) == (POLICY, "missing credentials", None)


async def test_non_bearer_authorization_header_is_no_credential(api: Api) -> None:
    _, item = await owned_item(api)
    headers = {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="}
    assert await reject(url(api, item), additional_headers=headers) == (
        POLICY,
        "missing credentials",
        None,
    )


# Invalid token.


def _garbage(user: User) -> str:
    return "not-a-jwt"


def _three_garbage_parts(user: User) -> str:
    return "abc.def.ghi"


def _bad_signature(user: User) -> str:
    return sign(access_claims(user), key=OTHER_KEY)


def _tampered_payload(user: User) -> str:
    header, _, signature = user.token.split(".")
    other = sign(access_claims(user, sub="someone-else")).split(".")[1]
    return f"{header}.{other}.{signature}"


def _alg_none(user: User) -> str:
    return unsigned(access_claims(user))


def _other_algorithm(user: User) -> str:
    return sign(access_claims(user), algorithm="HS512")


def _wrong_type(user: User) -> str:
    return sign(access_claims(user, typ="refresh"))


def _missing(claim: str) -> Callable[[User], str]:
    def token(user: User) -> str:
        claims = access_claims(user)
        del claims[claim]
        return sign(claims)

    return token


def _non_numeric_exp(user: User) -> str:
    return sign(access_claims(user, exp="tomorrow"))


def _bad_signature_and_expired(user: User) -> str:
    # The signature is checked before the expiry.
    now = int(time.time())
    return sign(access_claims(user, iat=now - 100, exp=now - 50), key=OTHER_KEY)


def _wrong_type_and_expired(user: User) -> str:
    now = int(time.time())
    return sign(access_claims(user, typ="refresh", iat=now - 100, exp=now - 50))


INVALID_TOKENS: dict[str, Callable[[User], str]] = {
    "garbage": _garbage,
    "three-garbage-parts": _three_garbage_parts,
    "bad-signature": _bad_signature,
    "tampered-payload": _tampered_payload,
    "alg-none": _alg_none,
    "unconfigured-algorithm": _other_algorithm,
    "wrong-typ": _wrong_type,
    **{f"missing-{c}": _missing(c) for c in ("sub", "sid", "iat", "exp", "jti", "typ")},
    "non-numeric-exp": _non_numeric_exp,
    "bad-signature-and-expired": _bad_signature_and_expired,
    "wrong-typ-and-expired": _wrong_type_and_expired,
}


@pytest.mark.parametrize("make_token", INVALID_TOKENS.values(), ids=INVALID_TOKENS.keys())
async def test_invalid_token_in_query(api: Api, make_token: Callable[[User], str]) -> None:
    user, item = await owned_item(api)
    token = make_token(user)
    assert await reject(url(api, item, token=token)) == (POLICY, "invalid token", None)


@pytest.mark.parametrize(
    "make_token", [_garbage, _bad_signature, _alg_none], ids=["garbage", "bad-signature", "none"]
)
async def test_invalid_token_in_authorization_header(
    api: Api, make_token: Callable[[User], str]
) -> None:
    user, item = await owned_item(api)
    headers = {"Authorization": f"Bearer {make_token(user)}"}
    assert await reject(url(api, item), additional_headers=headers) == (
        POLICY,
        "invalid token",
        None,
    )


async def test_invalid_token_in_subprotocol_echoes_bearer(api: Api) -> None:
    user, item = await owned_item(api)
    result = await reject(url(api, item), subprotocols=["bearer", _bad_signature(user)])
    assert result == (POLICY, "invalid token", "bearer")


# Tickets (accepted wherever `?token=` is): used or for another item is `invalid token`.


async def ticket(api: Api, user: User, item_id: str | None = None) -> str:
    body = {"item_id": item_id} if item_id is not None else None
    r = await api.http.post("/auth/ws-ticket", json=body, headers=user.headers)
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


async def test_ticket_opens_once_then_is_invalid(api: Api) -> None:
    user, item = await owned_item(api)
    once = await ticket(api, user, item)
    ws, hello = await ready(api.server, item, once)
    async with ws:
        assert hello == ready_frame(item, user, "owner", 0)
    assert await reject(url(api, item, token=once)) == (POLICY, "invalid token", None)


async def test_ticket_for_another_item_is_invalid_and_consumed(api: Api) -> None:
    user, item = await owned_item(api)
    other = await api.item(user)
    limited = await ticket(api, user, other)
    assert await reject(url(api, item, token=limited)) == (POLICY, "invalid token", None)
    # Consumed by that first presentation, even though the handshake failed.
    assert await reject(url(api, other, token=limited)) == (POLICY, "invalid token", None)


# Token expired.


async def test_expired_token_with_real_session(api: Api) -> None:
    user, item = await owned_item(api)
    now = int(time.time())
    token = sign(access_claims(user, iat=now - 120, exp=now - 60))
    assert await reject(url(api, item, token=token)) == (POLICY, "token expired", None)


async def test_token_is_expired_once_now_reaches_exp(api: Api) -> None:
    user, item = await owned_item(api)
    now = int(time.time())
    token = sign(access_claims(user, iat=now - 60, exp=now))
    assert await reject(url(api, item, token=token)) == (POLICY, "token expired", None)


async def test_expired_token_in_header(api: Api) -> None:
    user, item = await owned_item(api)
    now = int(time.time())
    token = sign(access_claims(user, iat=now - 120, exp=now - 60))
    headers = {"Authorization": f"Bearer {token}"}
    assert await reject(url(api, item), additional_headers=headers) == (
        POLICY,
        "token expired",
        None,
    )


async def test_expiry_is_checked_before_the_session(api: Api) -> None:
    user, item = await owned_item(api)
    now = int(time.time())
    token = sign(access_claims(user, iat=now - 120, exp=now - 60))
    await logout(api, user.token)
    assert await reject(url(api, item, token=token)) == (POLICY, "token expired", None)


# Invalid session.


async def test_token_of_a_logged_out_session(api: Api) -> None:
    user, item = await owned_item(api)
    await logout(api, user.token)
    assert await reject(url(api, item, token=user.token)) == (POLICY, "invalid session", None)


async def test_token_of_an_unknown_session(api: Api) -> None:
    user, item = await owned_item(api)
    token = sign(access_claims(user, sid=uuid.uuid4().hex))
    assert await reject(url(api, item, token=token)) == (POLICY, "invalid session", None)


async def test_logout_of_one_session_leaves_the_other_valid(api: Api) -> None:
    user, item = await owned_item(api)
    second_token, _ = await login(api, user)
    await logout(api, user.token)
    assert await reject(url(api, item, token=user.token)) == (POLICY, "invalid session", None)
    ws, hello = await ready(api.server, item, second_token)
    async with ws:
        assert hello == ready_frame(item, user, "owner", 0)


@pytest.mark.parametrize(
    "cookie",
    ["garbage", "x" * 43, "x" * 300],
    ids=["garbage", "unknown-secret-shaped", "oversized"],
)
async def test_unknown_cookie_with_good_origin(api: Api, cookie: str) -> None:
    _, item = await owned_item(api)
    result = await reject(
        url(api, item), additional_headers=cookie_headers(cookie), origin=api.server.base_url
    )
    assert result == (POLICY, "invalid session", None)


async def test_cookie_of_a_logged_out_session(api: Api) -> None:
    user, item = await owned_item(api)
    await logout(api, user.token)
    result = await reject(
        url(api, item), additional_headers=cookie_headers(user.cookie), origin=api.server.base_url
    )
    assert result == (POLICY, "invalid session", None)


# Origin not allowed (default ALLOWED_ORIGINS: the server's own origin).


async def test_cookie_with_own_origin_is_accepted(api: Api) -> None:
    user, item = await owned_item(api)
    ws, hello = await ready_via(
        api.server,
        item,
        additional_headers=cookie_headers(user.cookie),
        origin=api.server.base_url,
    )
    async with ws:
        assert hello == ready_frame(item, user, "owner", 0)


async def test_cookie_without_origin(api: Api) -> None:
    user, item = await owned_item(api)
    result = await reject(url(api, item), additional_headers=cookie_headers(user.cookie))
    assert result == (POLICY, "origin not allowed", None)


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "https://127.0.0.1:{port}",
        "http://localhost:{port}",
        "http://127.0.0.1:{other}",
        "null",
    ],
)
async def test_cookie_with_foreign_origin(api: Api, origin: str) -> None:
    user, item = await owned_item(api)
    port = api.server.port
    foreign = origin.format(port=port, other=port + 1 if port < 65535 else port - 1)
    result = await reject(
        url(api, item), additional_headers=cookie_headers(user.cookie), origin=foreign
    )
    assert result == (POLICY, "origin not allowed", None)


async def test_origin_is_checked_before_the_cookie_session(api: Api) -> None:
    _, item = await owned_item(api)
    result = await reject(
        url(api, item), additional_headers=cookie_headers("garbage"), origin="http://evil.example"
    )
    assert result == (POLICY, "origin not allowed", None)


async def test_configured_allowed_origins(make_server: MakeServer) -> None:
    allowed = ("http://good.example", "https://also.good.example:8443")
    async with started(make_server, allowed_origins=allowed) as api:
        srv = api.server
        user, item = await owned_item(api)
        cookie = cookie_headers(user.cookie)
        for origin in allowed:
            ws, hello = await ready_via(srv, item, additional_headers=cookie, origin=origin)
            async with ws:
                assert hello == ready_frame(item, user, "owner", 0)
        # When set, only the listed origins are allowed: not even the server's own.
        for origin in (srv.base_url, "http://evil.example", "https://good.example"):
            result = await reject(url(api, item), additional_headers=cookie, origin=origin)
            assert result == (POLICY, "origin not allowed", None), origin
        result = await reject(url(api, item), additional_headers=cookie)
        assert result == (POLICY, "origin not allowed", None)
        # A token needs no Origin.
        ws, hello = await ready(srv, item, user.token, origin="http://evil.example")
        async with ws:
            assert hello == ready_frame(item, user, "owner", 0)


# Forbidden.


async def test_stranger_is_forbidden(api: Api) -> None:
    _, item = await owned_item(api)
    stranger = await api.user()
    assert await reject(url(api, item, token=stranger.token)) == (POLICY, "forbidden", None)


async def test_stranger_with_cookie_is_forbidden(api: Api) -> None:
    _, item = await owned_item(api)
    stranger = await api.user()
    result = await reject(
        url(api, item),
        additional_headers=cookie_headers(stranger.cookie),
        origin=api.server.base_url,
    )
    assert result == (POLICY, "forbidden", None)


@pytest.mark.parametrize(
    "item_id",
    [
        "does-not-exist-" + uuid.uuid4().hex,
        "z" * 64,
        "a%20b",
        "a" * 65,
        "%C3%A9t%C3%A9",
        "a*b",
    ],
    ids=["unknown", "unknown-64-chars", "space", "65-chars", "non-ascii", "star"],
)
async def test_unknown_or_malformed_item_is_forbidden(api: Api, item_id: str) -> None:
    user = await api.user()
    assert await reject(url(api, item_id, token=user.token)) == (POLICY, "forbidden", None)


async def test_credentials_are_checked_before_item_access(api: Api) -> None:
    assert await reject(url(api, "a" * 65)) == (POLICY, "missing credentials", None)
    assert await reject(url(api, "a" * 65, token="garbage")) == (POLICY, "invalid token", None)


# Invalid since.


@pytest.mark.parametrize(
    "since", ["-1", "abc", "1.5", "", "%201", "1e3", "0x10", "%D9%A1"], ids=repr
)
async def test_invalid_since(api: Api, since: str) -> None:
    user, item = await owned_item(api)
    assert await reject(url(api, item, token=user.token, since=since)) == (
        POLICY,
        "invalid since",
        None,
    )


async def test_since_is_checked_after_item_access(api: Api) -> None:
    _, item = await owned_item(api)
    stranger = await api.user()
    for since in ("abc", "-1"):
        result = await reject(url(api, item, token=stranger.token, since=since))
        assert result == (POLICY, "forbidden", None)


async def test_since_is_checked_after_credentials(api: Api) -> None:
    _, item = await owned_item(api)
    assert await reject(url(api, item, since="abc")) == (POLICY, "missing credentials", None)
    result = await reject(url(api, item, token="garbage", since="abc"))
    assert result == (POLICY, "invalid token", None)


# Order of credentials, and how a token travels.


async def test_bad_token_wins_over_a_good_cookie(api: Api) -> None:
    user, item = await owned_item(api)
    result = await reject(
        url(api, item, token="garbage"),
        additional_headers=cookie_headers(user.cookie),
        origin=api.server.base_url,
    )
    assert result == (POLICY, "invalid token", None)


async def test_bad_bearer_header_wins_over_a_good_cookie(api: Api) -> None:
    user, item = await owned_item(api)
    headers = {"Authorization": "Bearer garbage", **cookie_headers(user.cookie)}
    result = await reject(url(api, item), additional_headers=headers, origin=api.server.base_url)
    assert result == (POLICY, "invalid token", None)


async def test_expired_token_wins_over_a_good_cookie(api: Api) -> None:
    user, item = await owned_item(api)
    now = int(time.time())
    token = sign(access_claims(user, iat=now - 120, exp=now - 60))
    result = await reject(
        url(api, item, token=token),
        additional_headers=cookie_headers(user.cookie),
        origin=api.server.base_url,
    )
    assert result == (POLICY, "token expired", None)


async def test_good_token_needs_no_origin_even_with_a_cookie(api: Api) -> None:
    user, item = await owned_item(api)
    ws, hello = await ready(
        api.server,
        item,
        user.token,
        additional_headers=cookie_headers(user.cookie),
        origin="http://evil.example",
    )
    async with ws:
        assert hello == ready_frame(item, user, "owner", 0)


async def test_authorization_bearer_header(api: Api) -> None:
    user, item = await owned_item(api)
    ws, hello = await ready_via(
        api.server,
        item,
        additional_headers=user.headers,
    )
    async with ws:
        assert hello == ready_frame(item, user, "owner", 0)
        assert ws.subprotocol is None


async def test_bearer_subprotocol_pair(api: Api) -> None:
    user, item = await owned_item(api)
    ws, hello = await ready_via(
        api.server,
        item,
        subprotocols=["bearer", user.token],
    )
    async with ws:
        assert ws.subprotocol == "bearer"
        assert hello == ready_frame(item, user, "owner", 0)


async def test_bearer_subprotocol_with_token_in_query(api: Api) -> None:
    # The server answers `bearer` whenever it was offered.
    user, item = await owned_item(api)
    ws, hello = await ready(api.server, item, user.token, subprotocols=["bearer"])
    async with ws:
        assert ws.subprotocol == "bearer"
        assert hello == ready_frame(item, user, "owner", 0)


async def test_token_in_query_for_a_user_with_a_cookie_of_another(api: Api) -> None:
    # The token is the credential; the cookie (another user's) is not looked at.
    user, item = await owned_item(api)
    other = await api.user()
    ws, hello = await ready(
        api.server,
        item,
        user.token,
        additional_headers=cookie_headers(other.cookie),
        origin=api.server.base_url,
    )
    async with ws:
        assert hello == ready_frame(item, user, "owner", 0)


def _expired(user: User) -> str:
    now = int(time.time())
    return sign(access_claims(user, iat=now - 60, exp=now - 30))


# (what to present besides the `bearer` subprotocol, the expected reason)
SUBPROTOCOL_REJECTIONS: dict[str, tuple[str, str]] = {
    "bearer-alone": ("nothing", "missing credentials"),
    "bad-signature": ("bad-signature", "invalid token"),
    "expired": ("expired", "token expired"),
    "cookie-without-origin": ("cookie", "origin not allowed"),
    "unknown-cookie": ("unknown-cookie", "invalid session"),
    "unknown-item": ("unknown-item", "forbidden"),
    "invalid-since": ("invalid-since", "invalid since"),
}


@pytest.mark.parametrize("case", SUBPROTOCOL_REJECTIONS.values(), ids=SUBPROTOCOL_REJECTIONS.keys())
async def test_rejection_answers_the_offered_bearer_subprotocol(
    api: Api, case: tuple[str, str]
) -> None:
    what, reason = case
    user, item = await owned_item(api)
    offered = ["bearer"]
    kwargs: dict[str, Any] = {}
    query: dict[str, str] = {}
    if what == "bad-signature":
        offered.append(_bad_signature(user))
    elif what == "expired":
        offered.append(_expired(user))
    elif what == "cookie":
        kwargs["additional_headers"] = cookie_headers(user.cookie)
    elif what == "unknown-cookie":
        kwargs["additional_headers"] = cookie_headers("garbage")
        kwargs["origin"] = api.server.base_url
    elif what == "unknown-item":
        offered.append(user.token)
        item = f"nope-{item}"
    elif what == "invalid-since":
        offered.append(user.token)
        query["since"] = "abc"
    result = await reject(url(api, item, **query), subprotocols=offered, **kwargs)
    assert result == (POLICY, reason, "bearer")


async def test_logged_out_session_via_subprotocol(api: Api) -> None:
    user, item = await owned_item(api)
    await logout(api, user.token)
    result = await reject(url(api, item), subprotocols=["bearer", user.token])
    assert result == (POLICY, "invalid session", "bearer")


async def test_member_rejected_on_since_then_accepted(api: Api) -> None:
    owner, item = await owned_item(api)
    member = await api.user()
    await api.share(owner, item, member, "reader")
    assert await reject(url(api, item, token=member.token, since="x")) == (
        POLICY,
        "invalid since",
        None,
    )
    ws, hello = await ready(api.server, item, member.token, query={"since": "0"})
    async with ws:
        assert hello == ready_frame(item, member, "reader", 0, recovered=True)
