"""Catalogue 2b: REST calls with malformed ids and query values, SQL injection in every
field and oversized bodies. Outcome: the exact status (and the field a 422 names);
after each, the database still answers."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.e2e.adversarial.rest import (
    DEEP,
    Request,
    RestCase,
    answered_as_expected,
    chunked,
    created_item_named,
    empty,
    item_path,
    messages_query,
    post_item,
    post_message,
    publish_body_of_size,
    raw_json,
    register,
    stored_data,
)
from tests.e2e.adversarial.world import MAX_MESSAGE_BYTES, MAX_REQUEST_BYTES, Ctx, as_owner
from tests.support import PASSWORD, unique

REQUESTS = [
    # Malformed ids in paths: 422 before any access check.
    RestCase("item-unicode", item_path("%C3%AFt%C3%A9m"), 422, ("path", "item_id")),
    RestCase("item-invalid-utf8", item_path("%FF%FE"), 422, ("path", "item_id")),
    RestCase("item-10kB", item_path("a" * 10_000), 422, ("path", "item_id")),
    RestCase("item-65-chars", item_path("a" * 65), 422, ("path", "item_id")),
    RestCase("item-sql-injection", item_path("x'%20OR%20'1'%3D'1"), 422, ("path", "item_id")),
    RestCase("item-semicolon-drop", item_path("x;DROP%20TABLE%20items"), 422, ("path", "item_id")),
    RestCase("item-percent-encoded-slash", item_path("a%2Fb"), 422, ("path", "item_id")),
    RestCase(
        "item-percent-encoded-traversal", item_path("..%2F..%2Fadmin"), 422, ("path", "item_id")
    ),
    RestCase(
        "username-sql-injection",
        lambda c: Request(
            "PUT",
            f"/items/{c.world.item}/members/x'%20OR%20'1'%3D'1",
            as_owner(c),
            json={"role": "reader"},
        ),
        422,
        ("path", "username"),
    ),
    RestCase(
        "username-too-short-outsider",  # pattern first, even for a non-member caller
        lambda c: Request("DELETE", f"/items/{c.world.item}/members/ab", c.world.outsider.headers),
        422,
        ("path", "username"),
    ),
    # Query values.
    RestCase("after-negative", messages_query("after=-1"), 422, ("query", "after")),
    RestCase("after-not-a-number", messages_query("after=abc"), 422, ("query", "after")),
    RestCase(
        "after-sql-injection", messages_query("after=1%20OR%201%3D1"), 422, ("query", "after")
    ),
    RestCase("after-float", messages_query("after=1.5"), 422, ("query", "after")),
    # `after` is any non-negative integer: however large, nothing comes after it.
    RestCase(
        "after-2-to-the-31",
        messages_query(f"after={2**31}"),
        200,
        verify=lambda c, r: empty(r),
    ),
    RestCase(
        "after-2-to-the-62",
        messages_query(f"after={2**62}"),
        200,
        verify=lambda c, r: empty(r),
    ),
    RestCase(
        "after-2-to-the-64", messages_query(f"after={2**64}"), 200, verify=lambda c, r: empty(r)
    ),
    RestCase("limit-zero", messages_query("limit=0"), 422, ("query", "limit")),
    RestCase("limit-1001", messages_query("limit=1001"), 422, ("query", "limit")),
    RestCase("limit-sql-injection", messages_query("limit=';--"), 422, ("query", "limit")),
    # Bodies: registration and login.
    RestCase(
        "register-username-sql-injection",
        register({"username": "admin'--", "password": PASSWORD}),
        422,
        ("body", "username"),
    ),
    RestCase(
        "register-username-nul",
        register({"username": "ab\x00cd", "password": PASSWORD}),
        422,
        ("body", "username"),
    ),
    RestCase(
        "register-username-10kB",
        register({"username": "u" * 10_000, "password": PASSWORD}),
        422,
        ("body", "username"),
    ),
    RestCase(
        "register-password-7-chars",
        register({"username": unique(), "password": "1234567"}),
        422,
        ("body", "password"),
    ),
    RestCase(
        "register-password-1025-chars",
        register({"username": unique(), "password": "p" * 1025}),
        422,
        ("body", "password"),
    ),
    RestCase(
        "register-extra-field-is-admin",
        register({"username": unique(), "password": PASSWORD, "is_admin": True}),
        422,
        ("body", "is_admin"),
    ),
    RestCase(
        "register-password-sql-injection-is-just-a-password",
        lambda c: Request(
            "POST", "/auth/register", json={"username": unique(), "password": "' OR '1'='1"}
        ),
        201,
    ),
    RestCase(
        "login-username-sql-injection",
        lambda c: Request(
            "POST", "/auth/login", json={"username": "' OR 1=1 --", "password": PASSWORD}
        ),
        422,
        ("body", "username"),
    ),
    RestCase(
        "login-password-sql-injection",
        lambda c: Request(
            "POST",
            "/auth/login",
            json={"username": c.world.outsider.username, "password": "' OR '1'='1' --"},
        ),
        401,
    ),
    RestCase(
        "token-form-username-sql-injection",
        lambda c: Request(
            "POST",
            "/auth/token",
            data={"username": f"' OR '1'='1' -- {uuid.uuid4().hex}", "password": PASSWORD},
        ),
        401,
    ),
    RestCase(
        "token-form-username-nul",
        lambda c: Request(
            "POST",
            "/auth/token",
            data={"username": f"ad\x00min{uuid.uuid4().hex[:6]}", "password": PASSWORD},
        ),
        401,
        also=(422,),
    ),
    RestCase(
        "token-as-json-instead-of-form",
        lambda c: Request(
            "POST", "/auth/token", json={"username": c.world.owner.username, "password": PASSWORD}
        ),
        422,
    ),
    # Bodies: items, members, tickets.
    RestCase("item-name-empty", post_item({"name": ""}), 422, ("body", "name")),
    RestCase("item-name-201-chars", post_item({"name": "n" * 201}), 422, ("body", "name")),
    RestCase("item-name-not-a-string", post_item({"name": {"$gt": ""}}), 422, ("body", "name")),
    RestCase("item-id-traversal", post_item({"name": "n", "id": "../etc"}), 422, ("body", "id")),
    RestCase(
        "item-id-sql-injection",
        post_item({"name": "n", "id": "x' OR '1'='1"}),
        422,
        ("body", "id"),
    ),
    RestCase(
        "item-extra-field-owner",
        post_item({"name": "n", "owner": "someone"}),
        422,
        ("body", "owner"),
    ),
    RestCase(
        "item-name-sql-injection-is-just-a-name",
        post_item({"name": "'); DROP TABLE items; --"}),
        201,
        verify=created_item_named("'); DROP TABLE items; --"),
    ),
    RestCase(
        "item-name-with-nul",  # any string is a name: stored and read back exactly
        post_item({"name": "a\x00b"}),
        201,
        verify=created_item_named("a\x00b"),
        also=(422,),
    ),
    RestCase(
        "item-body-form-encoded",
        lambda c: Request("POST", "/items", as_owner(c), data={"name": "n"}),
        422,
    ),
    RestCase("item-body-invalid-json", raw_json("POST", lambda c: "/items", b'{"name": '), 422),
    RestCase(
        "item-body-deeply-nested",
        raw_json("POST", lambda c: "/items", b'{"name":' + b"[" * DEEP + b"]" * DEEP + b"}"),
        422,
    ),
    RestCase(
        "member-role-owner",
        lambda c: Request(
            "PUT",
            f"/items/{c.world.item}/members/{c.world.outsider.username}",
            as_owner(c),
            json={"role": "owner"},
        ),
        422,
        ("body", "role"),
    ),
    RestCase(
        "member-role-sql-injection",
        lambda c: Request(
            "PUT",
            f"/items/{c.world.item}/members/{c.world.outsider.username}",
            as_owner(c),
            json={"role": "writer' OR '1'='1"},
        ),
        422,
        ("body", "role"),
    ),
    RestCase(
        "ticket-item-sql-injection",
        lambda c: Request("POST", "/auth/ws-ticket", as_owner(c), json={"item_id": "' OR '1'='1"}),
        422,
        ("body", "item_id"),
    ),
    # Bodies: messages.
    RestCase(
        "message-data-sql-injection-is-just-data",
        post_message({"data": {"q": "'; DELETE FROM messages; --"}}),
        201,
        verify=stored_data({"q": "'; DELETE FROM messages; --"}),
    ),
    RestCase(
        "message-data-nul-is-just-data",
        post_message({"data": "\x00"}),
        201,
        verify=stored_data("\x00"),
    ),
    RestCase(
        "message-body-invalid-json",
        raw_json("POST", lambda c: f"/items/{c.world.item}/messages", b'{"data": '),
        422,
    ),
    RestCase(
        "message-body-array",
        raw_json("POST", lambda c: f"/items/{c.world.item}/messages", b"[1, 2]"),
        422,
        ("body", "data"),
    ),
    RestCase("message-body-no-data", post_message({"date": 1}), 422, ("body", "data")),
    RestCase(
        "message-data-deeply-nested",
        raw_json(
            "POST",
            lambda c: f"/items/{c.world.item}/messages",
            b'{"data":' + b"[" * DEEP + b"]" * DEEP + b"}",
        ),
        422,
    ),
    # Body sizes.
    RestCase(
        "message-exactly-max-bytes",
        raw_json(
            "POST",
            lambda c: f"/items/{c.world.item}/messages",
            publish_body_of_size(MAX_MESSAGE_BYTES),
        ),
        201,
    ),
    RestCase(
        "message-one-byte-over",
        raw_json(
            "POST",
            lambda c: f"/items/{c.world.item}/messages",
            publish_body_of_size(MAX_MESSAGE_BYTES + 1),
        ),
        413,
    ),
    RestCase(
        "message-one-byte-over-chunked",
        lambda c: Request(
            "POST",
            f"/items/{c.world.item}/messages",
            {**as_owner(c), "Content-Type": "application/json"},
            content=chunked(publish_body_of_size(MAX_MESSAGE_BYTES + 1)),
        ),
        413,
    ),
    RestCase(
        "register-body-2MiB",
        lambda c: Request(
            "POST",
            "/auth/register",
            {"Content-Type": "application/json"},
            content=json.dumps({"username": "u" * 2 * MAX_REQUEST_BYTES, "password": "p"}).encode(),
        ),
        413,
    ),
    RestCase(
        "register-body-2MiB-chunked",
        lambda c: Request(
            "POST",
            "/auth/register",
            {"Content-Type": "application/json"},
            content=chunked(
                json.dumps({"username": "u" * 2 * MAX_REQUEST_BYTES, "password": "p"}).encode()
            ),
        ),
        413,
    ),
    RestCase(
        "item-body-2MiB",
        raw_json(
            "POST", lambda c: "/items", json.dumps({"name": "n" * 2 * MAX_REQUEST_BYTES}).encode()
        ),
        413,
    ),
    RestCase(
        "login-body-2MiB-content-length-only",
        lambda c: Request(
            "POST",
            "/auth/login",
            {"Content-Type": "application/json"},
            content=b" " * (2 * MAX_REQUEST_BYTES),
        ),
        413,
    ),
]


@pytest.mark.parametrize("case", REQUESTS, ids=lambda c: c.id)
async def test_rest_attack(case: RestCase, ctx: Ctx) -> None:
    await answered_as_expected(case, ctx)
