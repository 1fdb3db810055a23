"""Catalogue 2a: REST calls with forged, expired and revoked credentials, cross-site
cookies, and members beyond their role. Outcome: the exact status."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.adversarial.rest import (
    Request,
    RestCase,
    answered_as_expected,
    bearer,
    cookie_after_logout,
    cookie_me,
    cookie_post,
    get,
    item_path,
    post_message,
    ticket_as_bearer,
    token_after_logout,
)
from tests.e2e.adversarial.world import HOUR, NOW, Ctx, as_owner
from tests.tokens import WRONG_KEY, access_claims, padded, sign

REQUESTS = [
    # Credentials.
    RestCase("no-credentials", lambda c: Request("GET", "/auth/me"), 401),
    RestCase("bearer-garbage", bearer(lambda c: "not-a-jwt"), 401),
    RestCase(
        "bearer-wrong-key",
        bearer(lambda c: sign(access_claims(c.world.owner), key=WRONG_KEY)),
        401,
    ),
    RestCase(
        "bearer-alg-none",
        bearer(lambda c: sign(access_claims(c.world.owner), key=None, algorithm="none")),
        401,
    ),
    RestCase(
        "bearer-hs512-right-key",
        bearer(lambda c: sign(access_claims(c.world.owner), algorithm="HS512", digest="HS512")),
        401,
    ),
    RestCase(
        "bearer-rs256-confusion",
        bearer(lambda c: sign(access_claims(c.world.owner), algorithm="RS256")),
        401,
    ),
    RestCase(
        "bearer-expired",
        bearer(lambda c: sign(access_claims(c.world.owner, exp=NOW - 60))),
        401,
    ),
    RestCase(
        "bearer-iat-in-the-future",
        bearer(lambda c: sign(access_claims(c.world.owner, iat=NOW + HOUR, exp=NOW + 2 * HOUR))),
        401,
    ),
    RestCase(
        "bearer-nbf-in-the-future",
        bearer(lambda c: sign(access_claims(c.world.owner, nbf=NOW + HOUR))),
        401,
    ),
    RestCase("bearer-10kB", bearer(lambda c: padded(c.world.owner, 10_000)), 401),
    RestCase("ticket-as-bearer", ticket_as_bearer, 401),
    RestCase("token-after-logout", token_after_logout, 401),
    RestCase("cookie-never-issued", cookie_me(lambda c: "never-issued-" + "x" * 30), 401),
    RestCase("cookie-sql-injection", cookie_me(lambda c: "' OR '1'='1"), 401),
    RestCase("cookie-10kB", cookie_me(lambda c: "c" * 10_000), 401),
    RestCase("cookie-after-logout", cookie_after_logout, 401),
    # Cross-site requests with the cookie (CSRF).
    RestCase("cookie-post-foreign-origin", cookie_post("https://evil.example"), 403),
    RestCase("cookie-post-null-origin", cookie_post("null"), 403),
    RestCase(
        "cookie-ws-ticket-foreign-origin",
        cookie_post("https://evil.example", "/auth/ws-ticket"),
        403,
    ),
    # Not a member; not existing; members beyond their role.
    RestCase("outsider-get-item", get(lambda c: f"/items/{c.world.item}", "outsider"), 404),
    RestCase(
        "outsider-get-messages",
        get(lambda c: f"/items/{c.world.item}/messages", "outsider"),
        404,
    ),
    RestCase(
        "outsider-get-members", get(lambda c: f"/items/{c.world.item}/members", "outsider"), 404
    ),
    RestCase(
        "outsider-get-presence",
        get(lambda c: f"/items/{c.world.item}/presence", "outsider"),
        404,
    ),
    RestCase(
        "outsider-delete-item",
        lambda c: Request("DELETE", f"/items/{c.world.item}", c.world.outsider.headers),
        404,
    ),
    RestCase(
        "outsider-add-self-as-writer",
        lambda c: Request(
            "PUT",
            f"/items/{c.world.item}/members/{c.world.outsider.username}",
            c.world.outsider.headers,
            json={"role": "writer"},
        ),
        404,
    ),
    RestCase("outsider-publish", post_message({"data": 1}, "outsider"), 404),
    RestCase("nonexistent-item", item_path("no-such-item-0000"), 404),
    RestCase("item-dot-dot-encoded", item_path("%2E%2E"), 404),
    RestCase(
        "reader-delete-item",
        lambda c: Request("DELETE", f"/items/{c.world.item}", c.world.reader.headers),
        403,
    ),
    RestCase(
        "reader-promotes-self",
        lambda c: Request(
            "PUT",
            f"/items/{c.world.item}/members/{c.world.reader.username}",
            c.world.reader.headers,
            json={"role": "writer"},
        ),
        403,
    ),
    RestCase("reader-publish", post_message({"data": 1}, "reader"), 403),
    RestCase(
        "member-unknown-user",
        lambda c: Request(
            "PUT",
            f"/items/{c.world.item}/members/nobody-{uuid.uuid4().hex[:8]}",
            as_owner(c),
            json={"role": "reader"},
        ),
        404,
    ),
]


@pytest.mark.parametrize("case", REQUESTS, ids=lambda c: c.id)
async def test_rest_attack(case: RestCase, ctx: Ctx) -> None:
    await answered_as_expected(case, ctx)
