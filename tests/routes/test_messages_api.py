"""CONTRACT §3: messages and presence over REST; MAX_MESSAGE_BYTES on the publish body."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.servers import LiveServer
from tests.support import Api, User, unique

MESSAGE_KEYS = {"item_id", "seq", "sender", "data", "ts"}
ISO_Z_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
JSON = {"Content-Type": "application/json"}
LIMIT = 1024


# --- helpers -------------------------------------------------------------------------------


def messages_url(item: str) -> str:
    return f"/items/{item}/messages"


async def publish(api: Api, user: User, item: str, body: Any) -> httpx.Response:
    return await api.http.post(messages_url(item), json=body, headers=user.headers)


async def publish_raw(api: Api, user: User, item: str, content: Any) -> httpx.Response:
    headers = {**user.headers, **JSON}
    return await api.http.post(messages_url(item), content=content, headers=headers)


async def history(api: Api, user: User, item: str, **query: Any) -> list[dict[str, Any]]:
    r = await api.http.get(messages_url(item), params=query, headers=user.headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def seqs(api: Api, user: User, item: str, **query: Any) -> list[int]:
    return [m["seq"] for m in await history(api, user, item, **query)]


async def shared_item(api: Api, role: str) -> tuple[User, User, str]:
    owner, member = await api.user(), await api.user()
    item = await api.item(owner)
    await api.share(owner, item, member, role)
    return owner, member, item


def body_of_size(size: int) -> bytes:
    """A valid `{"data": "xxx…"}` body of exactly `size` bytes."""
    overhead = len(b'{"data":""}')
    body = b'{"data":"' + b"x" * (size - overhead) + b'"}'
    assert len(body) == size
    return body


async def in_chunks(body: bytes, chunk: int = 100) -> AsyncIterator[bytes]:
    """An async stream: httpx sends it with `Transfer-Encoding: chunked`, no Content-Length."""
    for start in range(0, len(body), chunk):
        yield body[start : start + chunk]


# --- publish -------------------------------------------------------------------------------


async def test_owner_publishes_a_message(api: Api) -> None:
    owner = await api.user()
    item = await api.item(owner)
    r = await publish(api, owner, item, {"data": {"text": "hello"}})
    assert r.status_code == 201, r.text
    message = r.json()
    assert set(message) == MESSAGE_KEYS
    assert message["item_id"] == item
    assert message["seq"] == 1
    assert message["sender"] == owner.username
    assert message["data"] == {"text": "hello"}
    assert ISO_Z_RE.match(message["ts"]), message["ts"]
    assert await history(api, owner, item) == [message]


async def test_writer_publishes(api: Api) -> None:
    owner, writer, item = await shared_item(api, "writer")
    r = await publish(api, writer, item, {"data": "from writer"})
    assert r.status_code == 201, r.text
    assert r.json()["sender"] == writer.username
    assert await history(api, owner, item) == [r.json()]


async def test_reader_cannot_publish(api: Api) -> None:
    owner, reader, item = await shared_item(api, "reader")
    r = await publish(api, reader, item, {"data": 1})
    assert r.status_code == 403, r.text
    assert "detail" in r.json()
    assert await history(api, owner, item) == []


async def test_stranger_and_missing_item_get_the_same_404(api: Api) -> None:
    owner, stranger = await api.user(), await api.user()
    item = await api.item(owner)
    hidden = await publish(api, stranger, item, {"data": 1})
    missing = await publish(api, stranger, unique("missing-"), {"data": 1})
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json()
    assert await history(api, owner, item) == []


async def test_publish_without_a_credential_is_401_unless_the_id_is_malformed(api: Api) -> None:
    owner = await api.user()
    item = await api.item(owner)
    anonymous = await api.http.post(messages_url(item), json={"data": 1})
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.headers["www-authenticate"] == "Bearer"
    # A malformed id says nothing about any item: 422 before the credential is read.
    malformed = await api.http.post(messages_url("not%20an%20id"), json={"data": 1})
    assert malformed.status_code == 422, malformed.text
    assert malformed.json()["detail"][0]["loc"] == ["path", "item_id"]


async def test_seqs_are_contiguous_across_senders(api: Api) -> None:
    owner, writer, item = await shared_item(api, "writer")
    got = [
        (await api.post(owner, item, "a"))["seq"],
        (await api.post(writer, item, "b"))["seq"],
        (await api.post(owner, item, "c"))["seq"],
    ]
    assert got == [1, 2, 3]
    assert [m["data"] for m in await history(api, writer, item)] == ["a", "b", "c"]
    other = await api.item(owner)
    assert (await api.post(owner, other, "x"))["seq"] == 1, "seq is per item"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(None, id="null"),
        pytest.param([1, "two", None, {"three": 3}], id="list"),
        pytest.param("plain string", id="string"),
        pytest.param("ünïcødé ✓ 😀", id="unicode-string"),
        pytest.param(42, id="int"),
        pytest.param(-1.5, id="float"),
        pytest.param(True, id="bool"),
        pytest.param({}, id="empty-object"),
        pytest.param({"a": {"b": [{"c": None}]}}, id="nested"),
    ],
)
async def test_any_json_data_round_trips(api: Api, data: Any) -> None:
    owner = await api.user()
    item = await api.item(owner)
    message = await api.post(owner, item, data)
    assert message["data"] == data
    assert type(message["data"]) is type(data)
    stored = await history(api, owner, item)
    assert [m["data"] for m in stored] == [data]


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"{}", id="data-missing"),
        pytest.param(b'{"date": 1}', id="data-misspelled"),
        pytest.param(b"[1, 2]", id="array-body"),
        pytest.param(b'"data"', id="string-body"),
        pytest.param(b"{not json", id="invalid-json"),
        pytest.param(b'{"data": 1', id="truncated-json"),
        pytest.param(b"", id="empty-body"),
    ],
)
async def test_invalid_publish_body_is_422(api: Api, content: bytes) -> None:
    owner = await api.user()
    item = await api.item(owner)
    r = await publish_raw(api, owner, item, content)
    assert r.status_code == 422, r.text
    assert "detail" in r.json()
    assert await history(api, owner, item) == []
    assert (await api.post(owner, item, "next"))["seq"] == 1, "no seq was used up"


# --- MAX_MESSAGE_BYTES ---------------------------------------------------------------------


@pytest.fixture
def small_server(make_server: Any) -> Iterator[LiveServer]:
    # Entered outside the event loop: a PostgreSQL server creates its database with asyncio.run.
    with make_server(max_message_bytes=LIMIT) as srv:
        yield srv


@pytest.fixture
async def small(small_server: LiveServer) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=small_server.base_url, timeout=30) as http:
        yield Api(small_server, http)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_body_size_limit(small: Api, chunked: bool) -> None:
    owner = await small.user()
    item = await small.item(owner)

    def content(size: int) -> Any:
        body = body_of_size(size)
        return in_chunks(body) if chunked else body

    at_limit = await publish_raw(small, owner, item, content(LIMIT))
    assert at_limit.status_code == 201, at_limit.text
    assert at_limit.json()["data"] == "x" * (LIMIT - len(b'{"data":""}'))

    over = await publish_raw(small, owner, item, content(LIMIT + 1))
    assert over.status_code == 413, over.text

    far_over = await publish_raw(small, owner, item, content(LIMIT * 20))
    assert far_over.status_code == 413, far_over.text

    assert await seqs(small, owner, item) == [1]
    assert (await small.post(owner, item, "after"))["seq"] == 2


async def test_limit_counts_bytes_not_characters(small: Api) -> None:
    owner = await small.user()
    item = await small.item(owner)
    # "é" is two bytes in UTF-8: this body has fewer than LIMIT characters but LIMIT + 1 bytes.
    room = LIMIT + 1 - len(b'{"data":""}')
    text = "é" * (room // 2) + "x" * (room % 2)
    body = ('{"data":"' + text + '"}').encode()
    assert len(body) == LIMIT + 1 and len(body.decode()) < LIMIT
    r = await publish_raw(small, owner, item, body)
    assert r.status_code == 413, r.text


# --- history -------------------------------------------------------------------------------


@pytest.fixture
async def five(api: Api) -> tuple[User, str]:
    owner = await api.user()
    item = await api.item(owner)
    for n in range(1, 6):
        await api.post(owner, item, {"n": n})
    return owner, item


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param({}, [1, 2, 3, 4, 5], id="defaults"),
        pytest.param({"after": 0}, [1, 2, 3, 4, 5], id="after-0"),
        pytest.param({"after": 2}, [3, 4, 5], id="after-2"),
        pytest.param({"limit": 2}, [1, 2], id="limit-2"),
        pytest.param({"after": 2, "limit": 2}, [3, 4], id="after-2-limit-2"),
        pytest.param({"after": 4, "limit": 1000}, [5], id="limit-1000"),
        pytest.param({"after": 5}, [], id="after-last"),
        pytest.param({"after": 10**6}, [], id="after-far-beyond"),
    ],
)
async def test_history_after_and_limit(
    api: Api, five: tuple[User, str], query: dict[str, int], expected: list[int]
) -> None:
    owner, item = five
    messages = await history(api, owner, item, **query)
    assert [m["seq"] for m in messages] == expected
    assert [m["data"] for m in messages] == [{"n": n} for n in expected]
    for m in messages:
        assert set(m) == MESSAGE_KEYS
        assert (m["item_id"], m["sender"]) == (item, owner.username)


@pytest.mark.parametrize(
    "query",
    [
        pytest.param({"after": -1}, id="after-negative"),
        pytest.param({"after": "abc"}, id="after-abc"),
        pytest.param({"after": "1.5"}, id="after-fraction"),
        pytest.param({"limit": 0}, id="limit-0"),
        pytest.param({"limit": -1}, id="limit-negative"),
        pytest.param({"limit": 1001}, id="limit-1001"),
        pytest.param({"limit": "abc"}, id="limit-abc"),
    ],
)
async def test_history_invalid_query_is_422(
    api: Api, five: tuple[User, str], query: dict[str, Any]
) -> None:
    owner, item = five
    r = await api.http.get(messages_url(item), params=query, headers=owner.headers)
    assert r.status_code == 422, r.text


async def test_history_default_limit_is_100(api: Api) -> None:
    owner = await api.user()
    item = await api.item(owner)
    for n in range(105):
        await api.post(owner, item, n)
    assert await seqs(api, owner, item) == list(range(1, 101))
    assert await seqs(api, owner, item, after=100) == [101, 102, 103, 104, 105]
    assert len(await history(api, owner, item, limit=1000)) == 105


@pytest.mark.parametrize("role", ["reader", "writer"])
async def test_members_read_history(api: Api, role: str) -> None:
    owner, member, item = await shared_item(api, role)
    await api.post(owner, item, "hi")
    assert await history(api, member, item) == await history(api, owner, item)


async def test_history_for_stranger_is_404(api: Api) -> None:
    owner, stranger = await api.user(), await api.user()
    item = await api.item(owner)
    await api.post(owner, item, "secret")
    hidden = await api.http.get(messages_url(item), headers=stranger.headers)
    missing = await api.http.get(messages_url(unique("nope-")), headers=stranger.headers)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json()


# --- presence ------------------------------------------------------------------------------


async def test_presence_without_sockets(api: Api) -> None:
    owner, member, item = await shared_item(api, "reader")
    for user in (owner, member):
        r = await api.http.get(f"/items/{item}/presence", headers=user.headers)
        assert r.status_code == 200, r.text
        assert r.json() == {"count": 0, "users": []}


async def test_presence_for_stranger_is_404(api: Api) -> None:
    owner, stranger = await api.user(), await api.user()
    item = await api.item(owner)
    hidden = await api.http.get(f"/items/{item}/presence", headers=stranger.headers)
    missing = await api.http.get(f"/items/{unique('nope-')}/presence", headers=stranger.headers)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json()


# --- concurrency ---------------------------------------------------------------------------


async def test_concurrent_publishes_get_seqs_without_gaps(api: Api) -> None:
    owner = await api.user()
    item = await api.item(owner)
    writers = [owner]
    for _ in range(4):
        writer = await api.user()
        await api.share(owner, item, writer, "writer")
        writers.append(writer)

    async def send(n: int) -> httpx.Response:
        return await publish(api, writers[n % len(writers)], item, {"data": {"n": n}})

    responses = await asyncio.gather(*(send(n) for n in range(50)))
    assert [r.status_code for r in responses] == [201] * 50, [r.text for r in responses]
    acked = {r.json()["data"]["n"]: r.json()["seq"] for r in responses}
    assert sorted(acked.values()) == list(range(1, 51))

    stored = await history(api, owner, item, limit=1000)
    assert [m["seq"] for m in stored] == list(range(1, 51))
    assert {m["data"]["n"]: m["seq"] for m in stored} == acked
    senders = Counter(m["sender"] for m in stored)
    assert senders == {w.username: 10 for w in writers}
