"""Hardening: what an attacker tried beyond the catalogue in test_adversarial.py."""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from api.cache import TTLCache
from api.config import Settings
from api.server import RequestLimits, protocol_with
from api.startup import origin_warning
from tests.e2e.test_workers import login, shared_item, workers
from tests.processes import Worker
from tests.servers import (
    POSTGRES_URL,
    REDIS_URL,
    TEST_SECRET,
    Backend,
    LiveServer,
    free_port,
    settings_for,
)
from tests.support import (
    PASSWORD,
    Api,
    closed,
    read_until,
    ready,
    recv,
    reject,
    unique,
)

MakeServer = Callable[..., AbstractContextManager[LiveServer]]


# A revoked session is never cached again.


def test_a_value_read_before_an_invalidation_is_not_stored_after_it() -> None:
    cache: TTLCache[str, str] = TTLCache(60)
    before = cache.generation()
    cache.pop("sid")  # the revocation lands while "sid" is being read
    cache.put("sid", "active", since=before)
    assert cache.get("sid") is None
    cache.put("sid", "active", since=cache.generation())  # read after it: fine
    assert cache.get("sid") == "active"
    before = cache.generation()
    cache.clear()  # the broker was away: every read in flight is suspect
    cache.put("other", "active", since=before)
    assert cache.get("other") is None


def test_forgotten_tombstones_refuse_more_never_less() -> None:
    cache: TTLCache[str, str] = TTLCache(60, max_tombstones=2)
    before = cache.generation()
    for key in ("a", "b", "c", "d"):
        cache.pop(key)
    cache.put("a", "active", since=before)
    assert cache.get("a") is None


async def test_no_token_works_after_logout_with_requests_in_flight(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        api = Api(server, http)
        user = await api.user()
        for _ in range(25):
            r = await http.post(
                "/auth/login", json={"username": user.username, "password": PASSWORD}
            )
            headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
            http.cookies.clear()
            # The first reads miss the cache and query the session while logout revokes it.
            readers = [
                asyncio.create_task(http.get("/auth/me", headers=headers)) for _ in range(12)
            ]
            await asyncio.sleep(0)
            out = await http.post("/auth/logout", headers=headers)
            assert out.status_code == 204
            await asyncio.gather(*readers)
            for path in ("/auth/me", "/auth/refresh"):
                method = http.get if path == "/auth/me" else http.post
                assert (await method(path, headers=headers)).status_code == 401, path


@pytest.mark.skipif(not (POSTGRES_URL and REDIS_URL), reason="needs PostgreSQL and Redis")
async def test_no_worker_brings_back_a_session_revoked_on_another(tmp_path: Path) -> None:
    with workers(tmp_path) as (w1, w2):
        name = unique()
        owner = await login(w1, name)
        item = await shared_item(owner)
        async with httpx.AsyncClient(base_url=w2.base, timeout=30) as http:
            for _ in range(15):
                r = await http.post("/auth/login", json={"username": name, "password": PASSWORD})
                token, cookie = r.json()["access_token"], r.cookies["session"]
                http.cookies.clear()
                headers = {"Authorization": f"Bearer {token}"}
                # A cookie socket (which leaves the session cache cold) tells when the
                # revocation has reached this worker.
                signal = await connect(
                    f"{w2.ws}/items/{item}/ws",
                    additional_headers={"Cookie": f"session={cookie}"},
                    origin=w2.base,  # type: ignore[arg-type]
                )
                assert (await recv(signal))["type"] == "ready"
                readers = [
                    asyncio.create_task(http.get("/auth/me", headers=headers)) for _ in range(8)
                ]
                await asyncio.sleep(0)
                async with httpx.AsyncClient(base_url=w1.base, timeout=30) as other:
                    assert (await other.post("/auth/logout", headers=headers)).status_code == 204
                assert await closed(signal) == (1008, "session revoked")
                await asyncio.gather(*readers)
                assert (await http.get("/auth/me", headers=headers)).status_code == 401


# No credential reaches the logs, however it is encoded.


def _percent_encoded(text: str) -> str:
    return "".join(f"%{b:02X}" for b in text.encode())


async def test_a_percent_encoded_token_parameter_is_redacted_in_the_log(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "VAR_DIR": str(tmp_path / "var"),
        "SECRET_KEY": TEST_SECRET,
        "DATABASE_URL": "",
        "BROKER_URL": "memory://",
        "PASSWORD_HASH_TIME_COST": "1",
        "PASSWORD_HASH_MEMORY_KIB": "1024",
    }
    log = tmp_path / "server.log"
    worker = Worker(env, log).start()
    try:
        async with httpx.AsyncClient(base_url=worker.base, timeout=30) as http:
            name = unique()
            await http.post("/auth/register", json={"username": name, "password": PASSWORD})
            r = await http.post("/auth/login", json={"username": name, "password": PASSWORD})
            token = r.json()["access_token"]
            r = await http.post(
                "/items", json={"name": "x"}, headers={"Authorization": f"Bearer {token}"}
            )
            item = r.json()["id"]
        encoded = {
            "name": f"?%74oken={_percent_encoded(token)}",
            "both": f"?{_percent_encoded('token')}={_percent_encoded(token)}",
            "plus": f"?a=1&%74oken={token[:10]}{_percent_encoded(token[10:])}",
        }
        for query in encoded.values():
            async with connect(f"{worker.ws}/items/{item}/ws{query}") as ws:
                assert (await recv(ws))["type"] == "ready"  # the server did read it
        async with httpx.AsyncClient(base_url=worker.base, timeout=30) as http:
            await http.get(f"/healthz{encoded['both']}")  # in the access log too
    finally:
        worker.stop()
    text = log.read_text()
    assert "WebSocket /items/" in text and "GET /healthz" in text
    assert "[redacted]" in text
    for query in encoded.values():
        assert query.partition("=")[2][:30] not in text
    assert token[:40] not in text


# JSON the service cannot keep exactly is refused where it is parsed.

DEEP = "[" * 300 + "]" * 300
BIG = "123456789012345678901234567890"


REFUSED = pytest.mark.parametrize("data", [DEEP, BIG, f"[-{BIG[:20]}]"], ids=["deep", "big", "neg"])


@REFUSED
async def test_deep_json_and_big_integers_are_refused_on_rest(api: Api, data: str) -> None:
    owner = await api.user()
    item = await api.item(owner)
    headers = {**owner.headers, "Content-Type": "application/json"}
    r = await api.http.post(
        f"/items/{item}/messages", content=f'{{"data":{data}}}', headers=headers
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["type"] == "json_invalid"
    r = await api.http.get(f"/items/{item}/messages", headers=owner.headers)
    assert r.json() == []


async def test_exact_json_is_kept_and_other_bodies_refuse_deep_json(api: Api) -> None:
    owner = await api.user()
    item = await api.item(owner)
    headers = {**owner.headers, "Content-Type": "application/json"}
    for path in ("/items", "/auth/register"):  # bodies FastAPI parses itself
        r = await api.http.post(path, content=f'{{"name":{DEEP}}}', headers=headers)
        assert r.status_code == 422, (path, r.text)
    # What can be kept exactly still is, to the last digit.
    fits = f'{{"data":{{"big":{2**64 - 1},"low":{-(2**63)},"s":"{BIG}"}}}}'
    r = await api.http.post(f"/items/{item}/messages", content=fits, headers=headers)
    assert r.status_code == 201, r.text
    r = await api.http.get(f"/items/{item}/messages", headers=owner.headers)
    assert r.json()[-1]["data"] == {"big": 2**64 - 1, "low": -(2**63), "s": BIG}


@REFUSED
async def test_deep_json_and_big_integers_get_bad_request_on_a_socket_that_stays_open(
    server: LiveServer, api: Api, data: str
) -> None:
    owner = await api.user()
    item = await api.item(owner)
    ws, _ = await ready(server, item, owner.token)
    async with ws:
        await ws.send(f'{{"type":"publish","ref":"r","data":{data}}}')
        frame = (await read_until(ws, "error"))[-1]
        assert frame["code"] == "bad_request", frame
        await ws.send('{"type":"publish","ref":"ok","data":1}')
        assert (await read_until(ws, "ack"))[-1]["ref"] == "ok"
    r = await api.http.get(f"/items/{item}/messages", headers=owner.headers)
    assert [m["data"] for m in r.json()] == [1]


# Authentication limits hold under concurrency and across workers.


async def _statuses(base: str, path: str, bodies: list[dict[str, str]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        return list(await asyncio.gather(*(http.post(path, json=b) for b in bodies)))


async def test_concurrent_wrong_passwords_for_one_name_stop_at_the_limit(
    make_server: MakeServer,
) -> None:
    with make_server(login_failures_per_username=5) as srv:
        name = unique()
        wrong = [{"username": name, "password": f"wrong-{n}-xxxxx"} for n in range(40)]
        answers = await _statuses(srv.base_url, "/auth/login", wrong)
        codes = sorted(r.status_code for r in answers)
        assert codes == [401] * 5 + [429] * 35, codes
        assert all(int(r.headers["Retry-After"]) >= 1 for r in answers if r.status_code == 429)
        # Another spelling of the name is the same name.
        answers = await _statuses(
            srv.base_url, "/auth/login", [{"username": name.upper(), "password": "x" * 12}]
        )
        assert answers[0].status_code == 429


async def test_concurrent_attempts_from_one_address_stop_at_the_limit(
    make_server: MakeServer,
) -> None:
    with make_server(login_failures_per_address=10) as srv:
        attempts = [{"username": unique(), "password": "wrong-password"} for _ in range(60)]
        codes = sorted(
            r.status_code for r in await _statuses(srv.base_url, "/auth/login", attempts)
        )
        assert codes == [401] * 10 + [429] * 50, codes


async def test_registrations_per_address_are_limited(make_server: MakeServer) -> None:
    with make_server(registrations_per_address=3) as srv:
        bodies = [{"username": unique(), "password": PASSWORD} for _ in range(10)]
        answers = await _statuses(srv.base_url, "/auth/register", bodies)
        codes = sorted(r.status_code for r in answers)
        assert codes == [201] * 3 + [429] * 7, codes
        assert all(int(r.headers["Retry-After"]) >= 1 for r in answers if r.status_code == 429)


async def test_password_hashing_beyond_its_queue_is_refused_with_retry_after(
    make_server: MakeServer,
) -> None:
    with make_server(
        password_hash_concurrency=1,
        password_hash_queue=2,
        password_hash_time_cost=2,
        password_hash_memory_kib=16384,
    ) as srv:
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=60) as http:
            user = await Api(srv, http).user()
        flood = [{"username": unique(), "password": "wrong-password"} for _ in range(30)]
        answers = await _statuses(srv.base_url, "/auth/login", flood)
        busy = [r for r in answers if r.status_code == 503]
        assert len(busy) >= 20, sorted(r.status_code for r in answers)
        assert {r.status_code for r in answers} <= {401, 503}
        assert all(r.headers["Retry-After"] == "1" for r in busy)
        real = [{"username": user.username, "password": PASSWORD}]
        assert (await _statuses(srv.base_url, "/auth/login", real))[0].status_code == 200


async def test_login_limits_hold_across_workers(make_server: MakeServer, backend: Backend) -> None:
    if backend.broker != "redis":
        pytest.skip("workers share limits through Redis")
    prefix = f"ic-test-{uuid.uuid4().hex[:12]}"
    with (
        make_server(login_failures_per_username=5, rate_limit_key_prefix=prefix) as one,
        make_server(login_failures_per_username=5, rate_limit_key_prefix=prefix) as two,
    ):
        name = unique()
        wrong = [{"username": name, "password": f"wrong-{n}-xxxxx"} for n in range(10)]
        answers = await asyncio.gather(
            _statuses(one.base_url, "/auth/login", wrong),
            _statuses(two.base_url, "/auth/login", wrong),
        )
        codes = sorted(r.status_code for part in answers for r in part)
        assert codes == [401] * 5 + [429] * 15, codes


# Request heads: bounded in size and time, connections bounded in number.

HEAD_LIMITS = RequestLimits(max_head_bytes=8192, head_timeout=1.0, max_connections=20)


def _limited(**changes: Any) -> dict[str, Any]:
    return {"uvicorn_options": {"http": protocol_with(replace(HEAD_LIMITS, **changes))}}


async def _answer(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), 30)


async def test_an_endless_header_line_gets_431_before_it_is_parsed(
    make_server: MakeServer,
) -> None:
    with make_server(**_limited()) as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: ")
        answered = asyncio.create_task(_answer(reader))
        sent = 0
        try:
            while sent < 64 * 1024 * 1024 and not answered.done():
                writer.write(b"a" * 65536)
                await writer.drain()
                sent += 65536
                # drain() does not yield while the server reads as fast as this writes
                # (a refused connection is drained for a while): let the answer in.
                await asyncio.sleep(0)
        except ConnectionError:
            pass  # refused and closed while we were still sending: what we want
        answer = await answered
        writer.close()
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
        assert sent < 64 * 1024 * 1024
        async with httpx.AsyncClient(base_url=srv.base_url) as http:
            assert (await http.get("/healthz")).status_code == 200


async def test_a_head_within_the_limit_is_served(make_server: MakeServer) -> None:
    with make_server(**_limited()) as srv:
        async with httpx.AsyncClient(base_url=srv.base_url) as http:
            r = await http.get("/healthz", headers={"X-Pad": "p" * 7000})
            assert r.status_code == 200
            r = await http.get("/healthz", headers={"X-Pad": "p" * 9000})
            assert r.status_code == 431


async def test_a_head_over_the_limit_pipelined_behind_a_small_one_gets_431(
    make_server: MakeServer,
) -> None:
    # Both heads in one read: the second is counted too, not only the bytes of each read.
    # The refusal ends the connection: the first request's answer, due after it, is
    # dropped as if the client had gone, without an error in the log.
    errors = _Errors()
    uvicorn_log = logging.getLogger("uvicorn.error")  # it does not propagate to the root
    with make_server(**_limited()) as srv:
        uvicorn_log.addHandler(errors)  # after the server's logging configuration
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            + b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: "
            + b"p" * 9000
            + b"\r\n\r\n"
        )
        answer = await _answer(reader)
        writer.close()
        assert b"HTTP/1.1 431 " in answer, answer[:300]
        await asyncio.sleep(0.2)  # the first request's handler has answered by now
    uvicorn_log.removeHandler(errors)
    assert errors.messages == []


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.parametrize(
    "headers",
    [{"X-Long": "a" * 20_000}, {f"X-H{n}": "v" for n in range(150)}],
    ids=["long-line", "150-headers"],
)
async def test_an_oversized_upgrade_gets_431(
    make_server: MakeServer, headers: dict[str, str]
) -> None:
    with make_server(**_limited()) as srv:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"{srv.ws_url}/items/x/ws", additional_headers=headers):
                pass
        assert refused.value.response.status_code == 431


async def test_idle_and_half_sent_heads_are_closed_after_the_deadline(
    make_server: MakeServer,
) -> None:
    with make_server(**_limited()) as srv:
        idle_reader, idle = await asyncio.open_connection("127.0.0.1", srv.port)
        slow_reader, slow = await asyncio.open_connection("127.0.0.1", srv.port)

        async def slowloris() -> None:
            for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\n":
                if slow.is_closing():
                    return
                slow.write(bytes([byte]))
                await asyncio.sleep(0.1)

        trickle = asyncio.create_task(slowloris())
        assert await _answer(idle_reader) == b""  # closed, nothing to answer
        assert (await _answer(slow_reader)).startswith(b"HTTP/1.1 408 ")
        trickle.cancel()
        idle.close()
        slow.close()


async def test_each_head_of_a_kept_alive_connection_gets_its_own_deadline(
    make_server: MakeServer,
) -> None:
    # The deadline runs from when a head begins: a second request begun after the
    # first one was answered is not cut short by the time the connection had been open.
    with make_server(**_limited(head_timeout=2.0)) as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        writer.write(request)
        first = await asyncio.wait_for(reader.readuntil(b'{"status":"ok"}'), 30)
        assert first.startswith(b"HTTP/1.1 200 ")
        await asyncio.sleep(1.4)  # the connection's first deadline is 0.6 s away
        writer.write(request[:20])
        await asyncio.sleep(1.0)  # past the connection's first deadline, within this head's
        writer.write(request[20:])
        second = await asyncio.wait_for(reader.readuntil(b'{"status":"ok"}'), 30)
        assert second.startswith(b"HTTP/1.1 200 ")
        # And a head that never ends is still cut off.
        writer.write(request[:20])
        assert (await _answer(reader)).startswith(b"HTTP/1.1 408 ")
        writer.close()


async def _trickle(writer: asyncio.StreamWriter, data: bytes, every: float) -> None:
    for byte in data:
        if writer.is_closing():
            return
        writer.write(bytes([byte]))
        await asyncio.sleep(every)


def _post_head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


# The head's deadline as long as the body's, and longer: the timer armed for the head
# is then brought forward.
@pytest.mark.parametrize("head_timeout", [1.0, 20.0])
async def test_a_body_still_arriving_at_the_deadline_gets_408_without_an_error(
    make_server: MakeServer, head_timeout: float
) -> None:
    body = b'{"username": "slowpoke", "password": "correct horse battery"}'
    errors = _Errors()
    uvicorn_log = logging.getLogger("uvicorn.error")  # it does not propagate to the root
    with make_server(**_limited(body_timeout=1.0, head_timeout=head_timeout)) as srv:
        uvicorn_log.addHandler(errors)
        logging.getLogger().addHandler(errors)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
            writer.write(_post_head("/auth/register", len(body)))
            # The whole body would take 6 s: it is cut off after 1.
            trickle = asyncio.create_task(_trickle(writer, body, 0.1))
            answer = await _answer(reader)
            trickle.cancel()
            writer.close()
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
            assert answer.endswith(b"request body not received in time")
            await asyncio.sleep(0.3)  # the handler has seen the disconnect by now
        finally:
            uvicorn_log.removeHandler(errors)
            logging.getLogger().removeHandler(errors)
        assert errors.messages == []
        # Nothing was registered from the partial body.
        async with httpx.AsyncClient(base_url=srv.base_url) as http:
            login = {"username": "slowpoke", "password": "correct horse battery"}
            assert (await http.post("/auth/login", json=login)).status_code == 401


async def test_each_body_of_a_kept_alive_connection_gets_its_own_deadline(
    make_server: MakeServer,
) -> None:
    # A body sent slowly but within its deadline is served, and the next request's body
    # is timed from its own head, not from the connection's first request.
    with make_server(**_limited(body_timeout=1.5, head_timeout=5.0)) as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        for n in range(2):
            body = b'{"username": "patient%d", "password": "correct horse battery"}' % n
            writer.write(_post_head("/auth/register", len(body)))
            await _trickle(writer, body, 0.9 / len(body))  # about 0.9 s
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            assert head.startswith(b"HTTP/1.1 201 "), head[:200]
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await asyncio.wait_for(reader.readexactly(length), 30)
            await asyncio.sleep(0.8)  # the first body's deadline passes here
        writer.close()


async def test_a_body_left_unread_after_the_answer_does_not_keep_the_connection(
    make_server: MakeServer,
) -> None:
    # A declared body over the limit is answered 413 at once, before it arrives; a body
    # still trickling in (which keeps uvicorn's keep-alive timeout from firing) does not
    # hold the connection, and no 408 follows the 413.
    with make_server(**_limited(body_timeout=1.0)) as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(_post_head("/auth/login", 2_000_000))
        trickle = asyncio.create_task(_trickle(writer, b"x" * 1000, 0.1))
        answer = await _answer(reader)
        trickle.cancel()
        writer.close()
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        assert b"408" not in answer


async def test_connections_beyond_the_cap_get_503_and_are_closed(
    make_server: MakeServer,
) -> None:
    with make_server(**_limited(max_connections=5, head_timeout=60.0)) as srv:
        held = [await asyncio.open_connection("127.0.0.1", srv.port) for _ in range(5)]
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        answer = await _answer(reader)
        assert answer.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in answer
        writer.close()
        for _, w in held:
            w.close()
        await asyncio.gather(*(w.wait_closed() for _, w in held))
        async with httpx.AsyncClient(base_url=srv.base_url) as http:
            for _ in range(50):  # the server notices the closes as it reads them
                if (await http.get("/healthz")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the server never took a connection again")


def test_serve_raises_the_open_file_limit_and_limits_heads(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    port = free_port()
    env = {
        **os.environ,
        "VAR_DIR": str(tmp_path / "var"),
        "SECRET_KEY": TEST_SECRET,
        "DATABASE_URL": "",
        "BROKER_URL": "memory://",
        "MAX_REQUEST_HEAD_BYTES": "4096",
    }
    command = [sys.executable, "-m", "api", "serve", "--port", str(port)]
    log = (tmp_path / "serve.log").open("wb")
    # Started with a low soft limit, as many systems do.
    low = min(soft, 1024) if hard == resource.RLIM_INFINITY or hard > 1024 else soft

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))

    proc = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=lower
    )
    try:
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        line = next(row for row in limits.splitlines() if row.startswith("Max open files"))
        expected = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
        assert line.split()[3] == expected, line
        r = httpx.get(f"http://127.0.0.1:{port}/healthz", headers={"X-Pad": "p" * 5000})
        assert r.status_code == 431
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()


# History pages are bounded by bytes as well as by count.


async def test_history_pages_are_bounded_by_bytes_and_say_where_to_continue(
    make_server: MakeServer,
) -> None:
    with make_server(max_history_page_bytes=8192) as srv:
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=30) as http:
            api = Api(srv, http)
            owner = await api.user()
            item = await api.item(owner)
            sent = ["x" * 1500 for _ in range(20)] + ["y" * 10_000, "z"]
            for data in sent:
                await api.post(owner, item, data)
            url: str | None = f"/items/{item}/messages?limit=1000"
            pages: list[list[dict[str, Any]]] = []
            while url is not None:
                r = await http.get(url, headers=owner.headers)
                assert r.status_code == 200
                pages.append(r.json())
                assert len(r.text) <= 8192 or len(pages[-1]) == 1  # one message always fits
                url = r.links.get("next", {}).get("url")
            assert len(pages) > 3
            got = [m for page in pages for m in page]
            assert [m["seq"] for m in got] == list(range(1, len(sent) + 1))
            assert [m["data"] for m in got] == sent


# Smaller: one account per name in any case, one session cookie, private files.


async def test_usernames_are_unique_without_regard_to_case(api: Api) -> None:
    name = unique("Case")
    r = await api.http.post("/auth/register", json={"username": name, "password": PASSWORD})
    assert r.status_code == 201 and r.json()["username"] == name  # the spelling is kept
    for other in (name.lower(), name.upper()):
        r = await api.http.post("/auth/register", json={"username": other, "password": PASSWORD})
        assert r.status_code == 409, other
    r = await api.http.post("/auth/login", json={"username": name.upper(), "password": PASSWORD})
    assert r.status_code == 200 and r.json()["user"]["username"] == name


@pytest.mark.parametrize("edge", [".{}", "{}.", ".{}."])
async def test_usernames_cannot_begin_or_end_with_a_dot(api: Api, edge: str) -> None:
    r = await api.http.post(
        "/auth/register", json={"username": edge.format(unique()), "password": PASSWORD}
    )
    assert r.status_code == 422


async def test_two_session_cookies_are_refused(server: LiveServer, api: Api) -> None:
    user = await api.user()
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        one = {"Cookie": f"session={user.cookie}"}
        assert (await http.get("/auth/me", headers=one)).status_code == 200
        for cookie in (
            f"session={user.cookie}; session=planted",
            f"session=planted; session={user.cookie}",
            f"session={user.cookie}; other=1; session={user.cookie}",
        ):
            r = await http.get("/auth/me", headers={"Cookie": cookie})
            assert r.status_code == 401, cookie
    url = f"{server.ws_url}/items/{await api.item(user)}/ws"
    code, reason, _ = await reject(
        url,
        additional_headers={"Cookie": f"session={user.cookie}; session=planted"},
        origin=server.base_url,
    )
    assert (code, reason) == (1008, "invalid session")


async def test_the_var_dir_and_the_sqlite_database_are_private(
    backend: Backend, tmp_path: Path
) -> None:
    if backend.database != "sqlite":
        pytest.skip("a SQLite file")
    var = tmp_path / "private-var"
    settings = settings_for(backend, "", var, secret_key=None)
    srv = LiveServer(settings).start()
    try:
        async with httpx.AsyncClient(base_url=srv.base_url) as http:
            await Api(srv, http).user()  # something stored
    finally:
        srv.stop()
    assert stat.S_IMODE(var.stat().st_mode) == 0o700
    for path in var.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


# Hosts and origins in production.


async def test_trusted_hosts_refuse_other_hosts(make_server: MakeServer) -> None:
    with make_server(trusted_hosts=("service.example", "*.service.example")) as srv:
        async with httpx.AsyncClient(base_url=srv.base_url) as http:
            for host, status in (
                ("service.example", 200),
                ("eu.service.example", 200),
                ("evil.example", 400),
                (f"127.0.0.1:{srv.port}", 400),
            ):
                r = await http.get("/healthz", headers={"Host": host})
                assert r.status_code == status, host
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"{srv.ws_url}/items/x/ws", additional_headers={"Host": "evil"}):
                pass
        assert refused.value.response.status_code == 400


@pytest.mark.parametrize(
    ("host", "origins", "warned"),
    [
        ("0.0.0.0", "", True),  # noqa: S104
        ("::", "", True),
        ("service.example", "", True),
        ("0.0.0.0", "https://app.example", False),  # noqa: S104
        ("127.0.0.1", "", False),
        ("::1", "", False),
        ("localhost", "", False),
    ],
)
def test_a_public_bind_without_allowed_origins_is_warned_about(
    host: str, origins: str, warned: bool
) -> None:
    settings = Settings(secret_key=TEST_SECRET, allowed_origins=origins)
    assert (origin_warning(host, settings) is not None) is warned


def test_serve_warns_at_start_up_without_allowed_origins(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "VAR_DIR": str(tmp_path / "var"),
        "SECRET_KEY": TEST_SECRET,
        "DATABASE_URL": "",
        "BROKER_URL": "memory://",
        "ALLOWED_ORIGINS": "",
    }
    command = [sys.executable, "-m", "api", "serve", "--host", "0.0.0.0", "--port", str(port)]  # noqa: S104
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().decode()
        assert "ALLOWED_ORIGINS is not set" in first, first
    finally:
        proc.terminate()
        proc.communicate(timeout=15)
