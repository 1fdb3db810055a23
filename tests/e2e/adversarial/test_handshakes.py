"""Catalogue 1: channel handshakes with forged, expired, not-yet-valid, wrong-algorithm,
oversized and used credentials, tampered and fixated cookies, foreign origins and
malformed item ids. Outcome: HTTP 101, then close 1008 with the exact reason."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Callable

import pytest
from websockets.asyncio.client import connect

from tests.e2e.adversarial.world import (
    HOUR,
    NOW,
    OPEN_TIMEOUT,
    POLICY,
    Ctx,
    Handshake,
    HandshakeCase,
    assert_service_works,
    forged,
    logged_out,
    on_item,
    refusal,
    resolve,
    ticket,
    with_cookie,
)
from tests.support import recv
from tests.tokens import WRONG_KEY, access_claims, b64json, b64url, padded, sign


async def reused_ticket(ctx: Ctx) -> Handshake:
    token = await ticket(ctx, ctx.world.item)
    async with connect(
        f"{ctx.world.server.ws_url}/items/{ctx.world.item}/ws?token={token}",
        open_timeout=OPEN_TIMEOUT,
    ) as ws:
        assert (await recv(ws))["type"] == "ready"
    return on_item(ctx, token)


async def logged_out_cookie(ctx: Ctx) -> Handshake:
    return with_cookie(ctx, (await logged_out(ctx, "cookie")).cookie)


async def logged_out_token(ctx: Ctx) -> Handshake:
    user = await logged_out(ctx, "token")
    return Handshake(f"/items/{ctx.world.item}/ws?token={user.token}")


def at_item(item_path: str) -> Callable[[Ctx], Handshake]:
    """The owner's valid token on an item path segment sent as is (percent-encoded)."""
    return lambda c: Handshake(f"/items/{item_path}/ws?token={c.world.owner.token}")


HANDSHAKES = [
    # No credential at all.
    HandshakeCase("no-credential", lambda c: on_item(c), "missing credentials"),
    HandshakeCase("empty-token-param", lambda c: on_item(c, ""), "missing credentials"),
    HandshakeCase(
        "basic-auth-header",
        lambda c: on_item(c, Authorization="Basic YWRtaW46YWRtaW4="),
        "missing credentials",
    ),
    # Malformed and forged tokens.
    HandshakeCase("garbage-token", lambda c: on_item(c, "not-a-jwt"), "invalid token"),
    HandshakeCase("three-garbage-parts", lambda c: on_item(c, "abc.def.ghi"), "invalid token"),
    HandshakeCase("invalid-utf8-token", lambda c: on_item(c, "%FF%FE%FD"), "invalid token"),
    HandshakeCase("wrong-key", lambda c: forged(c, key=WRONG_KEY), "invalid token"),
    HandshakeCase(
        "tampered-payload",
        lambda c: on_item(
            c,
            ".".join(
                [
                    c.world.owner.token.split(".")[0],
                    b64json(access_claims(c.world.owner, sub=c.world.outsider.id)),
                    c.world.owner.token.split(".")[2],
                ]
            ),
        ),
        "invalid token",
    ),
    # The signature is checked before expiry: a forged expired token is invalid, not expired.
    HandshakeCase(
        "wrong-key-and-expired",
        lambda c: forged(c, key=WRONG_KEY, claims={"exp": NOW - HOUR}),
        "invalid token",
    ),
    HandshakeCase("expired", lambda c: forged(c, claims={"exp": NOW - 60}), "token expired"),
    HandshakeCase(
        "iat-in-the-future",
        lambda c: forged(c, claims={"iat": NOW + HOUR, "exp": NOW + 2 * HOUR}),
        "invalid token",
    ),
    HandshakeCase(
        "nbf-in-the-future", lambda c: forged(c, claims={"nbf": NOW + HOUR}), "invalid token"
    ),
    # Algorithms other than the configured HS256.
    HandshakeCase("alg-none", lambda c: forged(c, key=None, algorithm="none"), "invalid token"),
    HandshakeCase("alg-None", lambda c: forged(c, key=None, algorithm="None"), "invalid token"),
    HandshakeCase(
        "alg-none-with-a-signature", lambda c: forged(c, algorithm="none"), "invalid token"
    ),
    HandshakeCase(
        "hs512-with-the-right-key",
        lambda c: forged(c, algorithm="HS512", digest="HS512"),
        "invalid token",
    ),
    HandshakeCase(
        "hs384-with-the-right-key",
        lambda c: forged(c, algorithm="HS384", digest="HS384"),
        "invalid token",
    ),
    HandshakeCase(
        "rs256-header-hmac-signature", lambda c: forged(c, algorithm="RS256"), "invalid token"
    ),
    HandshakeCase(
        "es256-header-hmac-signature", lambda c: forged(c, algorithm="ES256"), "invalid token"
    ),
    HandshakeCase(
        "rs256-header-random-signature",
        lambda c: on_item(
            c,
            sign(access_claims(c.world.owner), key=None, algorithm="RS256")
            + b64url(os.urandom(256)),
        ),
        "invalid token",
    ),
    HandshakeCase(
        "kid-path-traversal-empty-key",
        lambda c: forged(c, key="", header={"kid": "../../../../dev/null"}),
        "invalid token",
    ),
    HandshakeCase(
        "jku-foreign-key-set",
        lambda c: forged(c, key=WRONG_KEY, header={"jku": "https://evil.example/jwks.json"}),
        "invalid token",
    ),
    # Claims.
    HandshakeCase("typ-refresh", lambda c: forged(c, claims={"typ": "refresh"}), "invalid token"),
    HandshakeCase("typ-missing", lambda c: forged(c, claims={"typ": None}), "invalid token"),
    HandshakeCase("jti-missing", lambda c: forged(c, claims={"jti": None}), "invalid token"),
    HandshakeCase("sid-missing", lambda c: forged(c, claims={"sid": None}), "invalid token"),
    HandshakeCase("sub-not-a-string", lambda c: forged(c, claims={"sub": 1}), "invalid token"),
    HandshakeCase(
        "exp-not-a-number", lambda c: forged(c, claims={"exp": "tomorrow"}), "invalid token"
    ),
    HandshakeCase(
        "unknown-session", lambda c: forged(c, claims={"sid": uuid.uuid4().hex}), "invalid session"
    ),
    HandshakeCase(
        "sql-injection-in-sid",
        lambda c: forged(c, claims={"sid": "' OR '1'='1"}),
        "invalid session",
    ),
    # Oversized tokens. The server refuses anything over 4096 bytes as malformed.
    HandshakeCase(
        "token-5kB-query", lambda c: on_item(c, padded(c.world.owner, 5000)), "invalid token"
    ),
    HandshakeCase(
        "token-10kB-query", lambda c: on_item(c, padded(c.world.owner, 10_000)), "invalid token"
    ),
    HandshakeCase(
        "token-10kB-header",
        lambda c: on_item(c, Authorization=f"Bearer {padded(c.world.owner, 10_000)}"),
        "invalid token",
    ),
    # Other ways to carry a bad token; a bad token is never rescued by a good cookie.
    HandshakeCase(
        "garbage-bearer-header",
        lambda c: on_item(c, Authorization="Bearer not-a-jwt"),
        "invalid token",
    ),
    HandshakeCase(
        "garbage-bearer-subprotocol",
        lambda c: Handshake(f"/items/{c.world.item}/ws", subprotocols=("bearer", "not-a-jwt")),
        "invalid token",
    ),
    HandshakeCase(
        "bad-token-with-a-good-cookie",
        lambda c: Handshake(
            f"/items/{c.world.item}/ws?token=not-a-jwt",
            {"Cookie": f"session={c.world.owner.cookie}", "Origin": c.world.origin},
        ),
        "invalid token",
    ),
    # Tickets.
    HandshakeCase("ticket-reused", reused_ticket, "invalid token"),
    HandshakeCase(
        "ticket-for-another-item",
        lambda c: _ticket_on(c, c.world.other_item, f"/items/{c.world.item}/ws"),
        "invalid token",
    ),
    HandshakeCase(
        "item-ticket-on-monitor",
        lambda c: _ticket_on(c, c.world.item, "/monitor/ws"),
        "invalid token",
    ),
    HandshakeCase(
        "ticket-expired",
        lambda c: forged(c, claims={"typ": "ticket", "exp": NOW - 60}),
        "invalid token",
    ),
    # Cookies: never issued, tampered, from before a logout.
    HandshakeCase(
        "cookie-never-issued",
        lambda c: with_cookie(c, base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")),
        "invalid session",
    ),
    HandshakeCase(
        "cookie-tampered",
        lambda c: with_cookie(
            c, c.world.owner.cookie[:-2] + ("AA" if c.world.owner.cookie[-2:] != "AA" else "BB")
        ),
        "invalid session",
    ),
    HandshakeCase(
        "cookie-sql-injection", lambda c: with_cookie(c, "' OR '1'='1"), "invalid session"
    ),
    HandshakeCase("cookie-5kB", lambda c: with_cookie(c, "c" * 5000), "invalid session"),
    HandshakeCase("cookie-after-logout", logged_out_cookie, "invalid session"),
    HandshakeCase("token-after-logout", logged_out_token, "invalid session"),
    # Cross-origin handshakes with a cookie.
    HandshakeCase(
        "cookie-foreign-origin",
        lambda c: with_cookie(c, c.world.owner.cookie, "https://evil.example"),
        "origin not allowed",
    ),
    HandshakeCase(
        "cookie-null-origin",
        lambda c: with_cookie(c, c.world.owner.cookie, "null"),
        "origin not allowed",
    ),
    HandshakeCase(
        "cookie-without-origin",
        lambda c: with_cookie(c, c.world.owner.cookie, None),
        "origin not allowed",
    ),
    HandshakeCase(
        "cookie-origin-suffix-trick",
        lambda c: with_cookie(c, c.world.owner.cookie, c.world.origin + ".evil.example"),
        "origin not allowed",
    ),
    HandshakeCase(
        "cookie-origin-https-scheme",
        lambda c: with_cookie(
            c, c.world.owner.cookie, c.world.origin.replace("http://", "https://")
        ),
        "origin not allowed",
    ),
    HandshakeCase(
        "cookie-origin-other-port",
        lambda c: with_cookie(
            c, c.world.owner.cookie, f"http://127.0.0.1:{c.world.server.port + 1}"
        ),
        "origin not allowed",
    ),
    HandshakeCase(
        "forged-cookie-foreign-origin",  # the Origin is checked before the session
        lambda c: with_cookie(c, "forged", "https://evil.example"),
        "origin not allowed",
    ),
    # Items: not a member, not existing, malformed ids.
    HandshakeCase(
        "outsider-token",
        lambda c: Handshake(f"/items/{c.world.item}/ws?token={c.world.outsider.token}"),
        "forbidden",
    ),
    HandshakeCase(
        "outsider-cookie",
        lambda c: Handshake(
            f"/items/{c.world.item}/ws",
            {"Cookie": f"session={c.world.outsider.cookie}", "Origin": c.world.origin},
        ),
        "forbidden",
    ),
    HandshakeCase("nonexistent-item", at_item("no-such-item-0000"), "forbidden"),
    HandshakeCase("item-unicode", at_item("%C3%AFt%C3%A9m-%E2%9C%93"), "forbidden"),
    HandshakeCase("item-invalid-utf8", at_item("%FF%FE"), "forbidden"),
    HandshakeCase("item-sql-injection", at_item("x'%20OR%20'1'%3D'1"), "forbidden"),
    HandshakeCase("item-65-chars", at_item("a" * 65), "forbidden"),
    HandshakeCase("item-dot-dot", at_item(".."), "forbidden"),
    HandshakeCase("item-10kB", at_item("a" * 10_000), "forbidden"),
    HandshakeCase("item-percent-encoded-slash", at_item("a%2Fb"), "forbidden"),
    HandshakeCase("item-percent-encoded-traversal", at_item("..%2F..%2Fadmin"), "forbidden"),
    # since.
    HandshakeCase(
        "since-sql-injection",
        lambda c: Handshake(
            f"/items/{c.world.item}/ws?token={c.world.owner.token}&since=1%20OR%201%3D1"
        ),
        "invalid since",
    ),
    HandshakeCase(
        "since-negative",
        lambda c: Handshake(f"/items/{c.world.item}/ws?token={c.world.owner.token}&since=-1"),
        "invalid since",
    ),
    HandshakeCase(
        "outsider-with-bad-since",  # item access is checked before since
        lambda c: Handshake(f"/items/{c.world.item}/ws?token={c.world.outsider.token}&since=x"),
        "forbidden",
    ),
]


async def _ticket_on(ctx: Ctx, ticket_item: str, path: str) -> Handshake:
    return Handshake(f"{path}?token={await ticket(ctx, ticket_item)}")


@pytest.mark.parametrize("case", HANDSHAKES, ids=lambda c: c.id)
async def test_handshake_attack(case: HandshakeCase, ctx: Ctx) -> None:
    hs = await resolve(case.attack(ctx))
    code, reason, subprotocol = await refusal(ctx.world.server, hs)
    assert (code, reason) == (POLICY, case.reason)
    if "bearer" in hs.subprotocols:
        assert subprotocol == "bearer"
    # The attack left the service able to serve the owner.
    await assert_service_works(ctx)
