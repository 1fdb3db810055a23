"""The AsyncAPI document says how to connect: the server, the four credentials, and every
close code with its reason."""

from __future__ import annotations

from api.realtime import protocol
from tests.support import Api

CLOSE_REASONS = {
    protocol.MISSING_CREDENTIALS,
    protocol.INVALID_TOKEN,
    protocol.TOKEN_EXPIRED,
    protocol.INVALID_SESSION,
    protocol.ORIGIN_NOT_ALLOWED,
    protocol.FORBIDDEN,
    protocol.INVALID_SINCE,
    protocol.SESSION_REVOKED,
    protocol.SLOW_CONSUMER,
    protocol.BROKER_UNAVAILABLE,
    protocol.STORE_UNAVAILABLE,
    protocol.TOO_MANY_SOCKETS,
    protocol.ITEM_FULL,
}


async def test_servers_and_security(api: Api) -> None:
    doc = (await api.http.get("/asyncapi.json")).json()
    (server,) = doc["servers"].values()
    assert server["protocol"] == "ws"
    assert server["host"] == api.server.base_url.removeprefix("http://")
    schemes = doc["components"]["securitySchemes"]
    refs = [ref["$ref"].rpartition("/")[2] for ref in server["security"]]
    assert refs == list(schemes)
    by_kind = {(s["type"], s.get("in"), s.get("name")) for s in schemes.values()}
    assert by_kind == {
        ("httpApiKey", "query", "token"),
        ("http", None, None),
        ("httpApiKey", "header", "Sec-WebSocket-Protocol"),
        ("httpApiKey", "cookie", "session"),
    }
    assert "Origin" in schemes["sessionCookie"]["description"]


async def test_every_close_code_and_reason(api: Api) -> None:
    item = (await api.http.get("/asyncapi.json")).json()["channels"]["item"]
    closes = item["x-close-codes"]
    assert {c["reason"] for c in closes if "reason" in c} == CLOSE_REASONS
    assert {c["code"] for c in closes} == {1003, 1008, 1009, 1012, 1013}
    for close in closes:
        assert f"`{close['code']}`" in item["description"]
