"""Health, readiness, metrics and the AsyncAPI document."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from tests.servers import LiveServer
from tests.support import Api, channel_url, read_until, ready, reject

SCHEMA = Path(__file__).resolve().parents[1] / "data" / "asyncapi-3.0.0.schema.json"


async def test_healthz_and_readyz(api: Api) -> None:
    r = await api.http.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = await api.http.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "database": "ok", "broker": "ok"}


async def test_readyz_names_an_unreachable_broker(
    make_server: Callable[..., AbstractContextManager[LiveServer]],
) -> None:
    # Nothing listens on port 1: the broker never connects, the database is fine.
    with make_server(broker_url="redis://127.0.0.1:1/0") as srv:
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=30) as http:
            r = await http.get("/readyz")
            assert r.status_code == 503
            body = r.json()
            assert body["status"] == "unavailable" and body["database"] == "ok"
            assert body["broker"].startswith("unavailable")
            assert (await http.get("/healthz")).status_code == 200


def metric(text: str, name: str, labels: str = "") -> float:
    for line in text.splitlines():
        if line.startswith(f"{name}{labels} ") or (line.startswith(f"{name}{{") and labels == "*"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_metrics_count_sockets_messages_and_refusals(api: Api) -> None:
    before = (await api.http.get("/metrics")).text
    owner = await api.user()
    item = await api.item(owner)
    ws, _ = await ready(api.server, item, owner.token)
    async with ws:
        await ws.send('{"type":"publish","data":1}')
        await read_until(ws, "message")
        during = (await api.http.get("/metrics")).text
        assert metric(during, "item_channels_open_sockets") >= 1
    refused = metric(before, "item_channels_sockets_refused_total", '{reason="invalid token"}')

    code, reason, _ = await reject(channel_url(api.server, item, token="nope"))
    assert (code, reason) == (1008, "invalid token")
    after = (await api.http.get("/metrics")).text
    assert (
        metric(after, "item_channels_messages_stored_total")
        >= metric(before, "item_channels_messages_stored_total") + 1
    )
    assert (
        metric(after, "item_channels_messages_delivered_total")
        >= metric(before, "item_channels_messages_delivered_total") + 1
    )
    assert (
        metric(after, "item_channels_sockets_refused_total", '{reason="invalid token"}')
        == refused + 1
    )
    assert "item_channels_delivery_latency_seconds_bucket" in after
    for name in ("queue_overflows_total", "broker_reconnects_total", "gap_fills_total"):
        assert f"item_channels_{name}" in after


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA.read_text())  # type: ignore[no-any-return]


async def test_asyncapi_document_is_valid_asyncapi_3(api: Api) -> None:
    r = await api.http.get("/asyncapi.json")
    assert r.status_code == 200
    doc = r.json()
    jsonschema.validate(doc, load_schema())
    assert doc["asyncapi"] == "3.0.0"
    assert doc["channels"]["item"]["address"] == "/items/{item_id}/ws"
    frames = set(doc["components"]["messages"])
    expected = {"Ready", "Message", "Presence", "Ack", "Pong", "Error", "Batch", "Publish", "Ping"}
    multiplexed = {"MultiplexReady", "Subscribed", "Unsubscribed", "ItemPresence", "ItemAck"}
    multiplexed |= {"ItemStateAck", "Subscribe", "Unsubscribe", "ItemPublish", "ItemPatch"}
    multiplexed |= {"ItemAction"}
    state = {"State", "StateAck", "Patch", "Action"}
    assert expected | {"Refresh", "Stats"} | state | multiplexed == frames
    received = doc["operations"]["sendItemFrames"]["messages"]
    assert {"$ref": "#/channels/item/messages/Patch"} in received
    # `/ws`: its own frames and those it shares, each a message of its channel.
    ws = doc["channels"]["multiplex"]
    assert ws["address"] == "/ws"
    for operation in ("receiveMultiplexFrames", "sendMultiplexFrames"):
        for ref in doc["operations"][operation]["messages"]:
            assert ref["$ref"].rpartition("/")[2] in ws["messages"]
    sent = {
        r["$ref"].rpartition("/")[2]
        for r in doc["operations"]["receiveMultiplexFrames"]["messages"]
    }
    assert {"MultiplexReady", "Subscribed", "Message", "State", "ItemPresence", "Error"} <= sent
    subscribe_schema = doc["components"]["schemas"]["SubscribeFrame"]
    assert {"type", "item_id"} <= set(subscribe_schema["required"])
    state_schema = doc["components"]["schemas"]["StateFrame"]
    assert {"item_id", "version", "state"} <= set(state_schema["required"])
    ready_schema = doc["components"]["schemas"]["ReadyFrame"]
    assert {"item_id", "user", "role", "last_seq"} <= set(ready_schema["required"])


def test_the_schema_check_can_fail() -> None:
    """The validation above would catch a malformed document."""
    broken = {"asyncapi": "3.0.0", "info": {"title": "x"}, "operations": {"o": {}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, load_schema())


async def test_openapi_lists_the_rest_interface(api: Api) -> None:
    doc = (await api.http.get("/openapi.json")).json()
    for path in ("/auth/register", "/auth/token", "/items/{item_id}/messages", "/readyz"):
        assert path in doc["paths"]
