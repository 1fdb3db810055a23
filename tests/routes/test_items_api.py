"""CONTRACT §3: items and members over REST."""

from __future__ import annotations

import random
import re
import string
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.support import Api, User, unique

ITEM_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
ISO_Z_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
ITEM_KEYS = {"id", "name", "owner", "created_at", "kind"}


# --- helpers -------------------------------------------------------------------------------


async def create(api: Api, user: User, body: Any) -> httpx.Response:
    return await api.http.post("/items", json=body, headers=user.headers)


async def get_item(api: Api, user: User, item: str) -> httpx.Response:
    return await api.http.get(f"/items/{item}", headers=user.headers)


async def put_member(
    api: Api, caller: User, item: str, username: str, role: Any = "writer"
) -> httpx.Response:
    return await api.http.put(
        f"/items/{item}/members/{username}", json={"role": role}, headers=caller.headers
    )


async def members(api: Api, caller: User, item: str) -> list[dict[str, str]]:
    r = await api.http.get(f"/items/{item}/members", headers=caller.headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def item_ids(api: Api, user: User) -> set[str]:
    r = await api.http.get("/items", headers=user.headers)
    assert r.status_code == 200, r.text
    return {i["id"] for i in r.json()}


def parse_iso_z(value: str) -> datetime:
    assert ISO_Z_RE.match(value), value
    return datetime.fromisoformat(value[:-1]).replace(tzinfo=UTC)


def assert_not_found(r: httpx.Response) -> None:
    assert r.status_code == 404, r.text
    assert "detail" in r.json()


# --- create --------------------------------------------------------------------------------


async def test_create_generates_an_id(api: Api) -> None:
    owner = await api.user()
    before = datetime.now(UTC)
    r = await create(api, owner, {"name": "Groceries"})
    after = datetime.now(UTC)
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == ITEM_KEYS
    assert ITEM_ID_RE.match(body["id"]), body["id"]
    assert body["name"] == "Groceries"
    assert body["owner"] == owner.username
    created = parse_iso_z(body["created_at"])
    assert before - timedelta(seconds=1) <= created <= after + timedelta(seconds=1)
    # The item reads back identically.
    got = await get_item(api, owner, body["id"])
    assert got.status_code == 200
    assert got.json() == body


async def test_generated_ids_are_distinct(api: Api) -> None:
    owner = await api.user()
    ids = {(await create(api, owner, {"name": "n"})).json()["id"] for _ in range(5)}
    assert len(ids) == 5


@pytest.mark.parametrize(
    "make_id",
    [
        pytest.param(lambda: random.choice(string.ascii_letters + string.digits), id="1-char"),
        pytest.param(lambda: (unique("i") * 6)[:64], id="64-chars"),
        pytest.param(lambda: f"A-z_0.9.{unique()}", id="all-allowed-classes"),
    ],
)
async def test_create_with_explicit_id(api: Api, make_id: Any) -> None:
    owner = await api.user()
    item_id = make_id()
    r = await create(api, owner, {"name": "explicit", "id": item_id})
    assert r.status_code == 201, r.text
    assert r.json()["id"] == item_id
    assert (await get_item(api, owner, item_id)).json()["name"] == "explicit"


@pytest.mark.parametrize("same_owner", [True, False], ids=["same-owner", "other-user"])
async def test_create_taken_id_is_409(api: Api, same_owner: bool) -> None:
    owner = await api.user()
    item_id = unique("taken-")
    assert (await create(api, owner, {"name": "first", "id": item_id})).status_code == 201
    second = owner if same_owner else await api.user()
    r = await create(api, second, {"name": "second", "id": item_id})
    assert r.status_code == 409, r.text
    assert "detail" in r.json()
    body = (await get_item(api, owner, item_id)).json()
    assert (body["name"], body["owner"]) == ("first", owner.username)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"name": "x", "id": "has space"}, id="id-with-space"),
        pytest.param({"name": "x", "id": "a" * 65}, id="id-65-chars"),
        pytest.param({"name": "x", "id": ""}, id="id-empty"),
        pytest.param({"name": "x", "id": "sl/ash"}, id="id-slash"),
        pytest.param({"name": "x", "id": "ünï"}, id="id-non-ascii"),
        pytest.param({"name": "x", "id": "newline\n"}, id="id-trailing-newline"),
        pytest.param({"name": "x", "id": 42}, id="id-number"),
        pytest.param({"id": "no-name"}, id="name-missing"),
        pytest.param({}, id="empty-object"),
        pytest.param({"name": ["x"]}, id="name-not-a-string"),
        pytest.param([{"name": "x"}], id="not-an-object"),
    ],
)
async def test_create_invalid_body_is_422(api: Api, body: Any) -> None:
    owner = await api.user()
    r = await create(api, owner, body)
    assert r.status_code == 422, r.text
    assert "detail" in r.json()
    assert await item_ids(api, owner) == set()


# --- list ----------------------------------------------------------------------------------


async def test_list_has_owned_and_member_items_only(api: Api) -> None:
    alice, bob = await api.user(), await api.user()
    owned = await api.item(alice, "mine")
    writes = await api.item(bob, "bob-writer")
    reads = await api.item(bob, "bob-reader")
    private = await api.item(bob, "bob-private")
    await api.share(bob, writes, alice, "writer")
    await api.share(bob, reads, alice, "reader")

    r = await api.http.get("/items", headers=alice.headers)
    assert r.status_code == 200, r.text
    listed = {i["id"]: i for i in r.json()}
    assert set(listed) == {owned, writes, reads}
    assert private not in listed
    for item in listed.values():
        assert set(item) == ITEM_KEYS
    assert listed[owned]["owner"] == alice.username
    assert listed[writes]["owner"] == bob.username
    assert listed[reads]["name"] == "bob-reader"
    assert await item_ids(api, bob) == {writes, reads, private}


async def test_list_is_empty_for_a_new_user(api: Api) -> None:
    r = await api.http.get("/items", headers=(await api.user()).headers)
    assert r.status_code == 200
    assert r.json() == []


# --- get -----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["reader", "writer"])
async def test_get_by_member(api: Api, role: str) -> None:
    owner, member = await api.user(), await api.user()
    item = await api.item(owner, "shared")
    await api.share(owner, item, member, role)
    r = await get_item(api, member, item)
    assert r.status_code == 200, r.text
    assert r.json() == (await get_item(api, owner, item)).json()
    assert r.json()["owner"] == owner.username


async def test_get_by_stranger_and_missing_item_are_the_same_404(api: Api) -> None:
    owner, stranger = await api.user(), await api.user()
    item = await api.item(owner)
    hidden = await get_item(api, stranger, item)
    missing = await get_item(api, stranger, unique("missing-"))
    assert_not_found(hidden)
    assert_not_found(missing)
    assert hidden.json() == missing.json()
    assert_not_found(await get_item(api, owner, unique("missing-")))


# --- delete --------------------------------------------------------------------------------


async def test_delete_by_owner(api: Api) -> None:
    owner, member = await api.user(), await api.user()
    item = await api.item(owner)
    await api.share(owner, item, member, "writer")
    await api.post(owner, item, {"n": 1})
    r = await api.http.delete(f"/items/{item}", headers=owner.headers)
    assert r.status_code == 204, r.text
    assert r.content == b""
    for user in (owner, member):
        assert_not_found(await get_item(api, user, item))
        assert_not_found(await api.http.get(f"/items/{item}/messages", headers=user.headers))
        assert item not in await item_ids(api, user)
    assert_not_found(await api.http.delete(f"/items/{item}", headers=owner.headers))


@pytest.mark.parametrize("role", ["reader", "writer"])
async def test_delete_by_member_is_403(api: Api, role: str) -> None:
    owner, member = await api.user(), await api.user()
    item = await api.item(owner)
    await api.share(owner, item, member, role)
    r = await api.http.delete(f"/items/{item}", headers=member.headers)
    assert r.status_code == 403, r.text
    assert (await get_item(api, owner, item)).status_code == 200


async def test_delete_by_stranger_or_missing_is_404(api: Api) -> None:
    owner, stranger = await api.user(), await api.user()
    item = await api.item(owner)
    assert_not_found(await api.http.delete(f"/items/{item}", headers=stranger.headers))
    assert_not_found(await api.http.delete(f"/items/{unique('nope-')}", headers=owner.headers))
    assert (await get_item(api, owner, item)).status_code == 200


# --- members -------------------------------------------------------------------------------


async def test_members_lists_the_owner(api: Api) -> None:
    owner = await api.user()
    item = await api.item(owner)
    assert await members(api, owner, item) == [{"username": owner.username, "role": "owner"}]


async def test_put_member_adds_and_changes_roles(api: Api) -> None:
    owner, member = await api.user(), await api.user()
    item = await api.item(owner)

    r = await put_member(api, owner, item, member.username, "reader")
    assert r.status_code == 200, r.text
    assert r.json() == {"username": member.username, "role": "reader"}
    listed = await members(api, member, item)
    assert sorted(listed, key=lambda m: m["username"]) == sorted(
        [
            {"username": owner.username, "role": "owner"},
            {"username": member.username, "role": "reader"},
        ],
        key=lambda m: m["username"],
    )
    publish = {"json": {"data": 1}, "headers": member.headers}
    assert (await api.http.post(f"/items/{item}/messages", **publish)).status_code == 403

    r = await put_member(api, owner, item, member.username, "writer")
    assert r.status_code == 200, r.text
    assert r.json() == {"username": member.username, "role": "writer"}
    assert {"username": member.username, "role": "writer"} in await members(api, owner, item)
    assert len(await members(api, owner, item)) == 2
    assert (await api.http.post(f"/items/{item}/messages", **publish)).status_code == 201


async def test_put_member_answers_with_the_name_as_registered(api: Api) -> None:
    # Names match in any case; the answer names the user as GET /members lists them.
    owner, member = await api.user(), await api.user()
    item = await api.item(owner)
    r = await put_member(api, owner, item, member.username.upper(), "reader")
    assert r.status_code == 200, r.text
    assert r.json() == {"username": member.username, "role": "reader"}
    assert {"username": member.username, "role": "reader"} in await members(api, owner, item)


async def test_put_member_unknown_user_is_404(api: Api) -> None:
    owner = await api.user()
    item = await api.item(owner)
    assert_not_found(await put_member(api, owner, item, unique("ghost")))
    assert len(await members(api, owner, item)) == 1


@pytest.mark.parametrize("role", ["reader", "writer"])
async def test_put_member_by_member_is_403(api: Api, role: str) -> None:
    owner, member, third = await api.user(), await api.user(), await api.user()
    item = await api.item(owner)
    await api.share(owner, item, member, role)
    r = await put_member(api, member, item, third.username)
    assert r.status_code == 403, r.text
    r = await put_member(
        api, member, item, member.username, "writer" if role == "reader" else "reader"
    )
    assert r.status_code == 403, r.text
    assert_not_found(await get_item(api, third, item))


async def test_put_member_by_stranger_is_404(api: Api) -> None:
    owner, stranger = await api.user(), await api.user()
    item = await api.item(owner)
    assert_not_found(await put_member(api, stranger, item, stranger.username))
    assert_not_found(await get_item(api, stranger, item))
    assert_not_found(await put_member(api, owner, unique("missing-"), stranger.username))


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"role": "owner"}, id="role-owner"),
        pytest.param({"role": "admin"}, id="role-admin"),
        pytest.param({"role": "Writer"}, id="role-wrong-case"),
        pytest.param({"role": None}, id="role-null"),
        pytest.param({}, id="role-missing"),
        pytest.param({"role": "reader", "extra": 1}, id="extra-field"),
    ],
)
async def test_put_member_invalid_body_is_422(api: Api, body: dict[str, Any]) -> None:
    owner, member = await api.user(), await api.user()
    item = await api.item(owner)
    r = await api.http.put(
        f"/items/{item}/members/{member.username}", json=body, headers=owner.headers
    )
    assert r.status_code == 422, r.text
    assert len(await members(api, owner, item)) == 1


async def test_delete_member_removes_access(api: Api) -> None:
    owner, member = await api.user(), await api.user()
    item = await api.item(owner)
    await api.share(owner, item, member, "writer")
    assert (await get_item(api, member, item)).status_code == 200

    r = await api.http.delete(f"/items/{item}/members/{member.username}", headers=owner.headers)
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert_not_found(await get_item(api, member, item))
    assert_not_found(await api.http.get(f"/items/{item}/messages", headers=member.headers))
    r = await api.http.post(f"/items/{item}/messages", json={"data": 1}, headers=member.headers)
    assert_not_found(r)
    assert item not in await item_ids(api, member)
    assert await members(api, owner, item) == [{"username": owner.username, "role": "owner"}]


@pytest.mark.parametrize("role", ["reader", "writer"])
async def test_delete_member_by_member_is_403(api: Api, role: str) -> None:
    owner, member, other = await api.user(), await api.user(), await api.user()
    item = await api.item(owner)
    await api.share(owner, item, member, role)
    await api.share(owner, item, other, "reader")
    r = await api.http.delete(f"/items/{item}/members/{other.username}", headers=member.headers)
    assert r.status_code == 403, r.text
    assert (await get_item(api, other, item)).status_code == 200


async def test_delete_member_by_stranger_is_404(api: Api) -> None:
    owner, member, stranger = await api.user(), await api.user(), await api.user()
    item = await api.item(owner)
    await api.share(owner, item, member, "reader")
    r = await api.http.delete(f"/items/{item}/members/{member.username}", headers=stranger.headers)
    assert_not_found(r)
    assert (await get_item(api, member, item)).status_code == 200


async def test_members_by_stranger_is_404(api: Api) -> None:
    owner, stranger = await api.user(), await api.user()
    item = await api.item(owner)
    hidden = await api.http.get(f"/items/{item}/members", headers=stranger.headers)
    missing = await api.http.get(f"/items/{unique('nope-')}/members", headers=stranger.headers)
    assert_not_found(hidden)
    assert_not_found(missing)
    assert hidden.json() == missing.json()


# --- path parameters are validated before any access check -----------------------------------

BAD_ITEM_IDS = {
    "space": "has%20space",
    "65-chars": "a" * 65,
    "non-ascii": "%C3%BCn%C3%AF",
    "percent-newline": "abc%0A",
}
ITEM_ENDPOINTS = [
    ("GET", "/items/{id}", None),
    ("DELETE", "/items/{id}", None),
    ("GET", "/items/{id}/members", None),
    ("PUT", "/items/{id}/members/{user}", {"role": "reader"}),
    ("DELETE", "/items/{id}/members/{user}", None),
    ("POST", "/items/{id}/messages", {"data": 1}),
    ("GET", "/items/{id}/messages", None),
    ("GET", "/items/{id}/presence", None),
]
ENDPOINT_IDS = [f"{m}-{p}" for m, p, _ in ITEM_ENDPOINTS]


@pytest.mark.parametrize(("method", "path", "body"), ITEM_ENDPOINTS, ids=ENDPOINT_IDS)
async def test_bad_item_id_in_path_is_422(api: Api, method: str, path: str, body: Any) -> None:
    user = await api.user()
    for name, bad_id in BAD_ITEM_IDS.items():
        url = path.format(id=bad_id, user=user.username)
        r = await api.http.request(method, url, json=body, headers=user.headers)
        assert r.status_code == 422, f"{name}: {r.status_code} {r.text}"


BAD_USERNAMES = {
    "2-chars": "ab",
    "space": "has%20space",
    "65-chars": "u" * 65,
    "non-ascii": "%C3%BCser",
}


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
@pytest.mark.parametrize("bad_name", list(BAD_USERNAMES))
async def test_bad_username_in_path_is_422(api: Api, method: str, bad_name: str) -> None:
    owner, stranger = await api.user(), await api.user()
    item = await api.item(owner)
    url = f"/items/{item}/members/{BAD_USERNAMES[bad_name]}"
    for caller in (owner, stranger):  # before any access check
        r = await api.http.request(method, url, json={"role": "reader"}, headers=caller.headers)
        assert r.status_code == 422, r.text


# --- every endpoint needs credentials ------------------------------------------------------

ALL_ENDPOINTS = [("POST", "/items", {"name": "x"}), ("GET", "/items", None), *ITEM_ENDPOINTS]


BAD_CREDENTIALS = {
    "none": {},
    "bad-token": {"Authorization": "Bearer not.a.token"},
    "bad-cookie": {"Cookie": "session=not-a-session"},
}


@pytest.mark.parametrize(
    ("method", "path", "body"), ALL_ENDPOINTS, ids=[f"{m}-{p}" for m, p, _ in ALL_ENDPOINTS]
)
async def test_no_credentials_is_401(api: Api, method: str, path: str, body: Any) -> None:
    owner = await api.user()
    item = await api.item(owner)
    url = path.format(id=item, user=owner.username)
    for name, headers in BAD_CREDENTIALS.items():
        r = await api.http.request(method, url, json=body, headers=headers)
        assert r.status_code == 401, f"{name}: {r.status_code} {r.text}"
        assert r.headers.get("www-authenticate") == "Bearer", name
    assert (await get_item(api, owner, item)).status_code == 200
