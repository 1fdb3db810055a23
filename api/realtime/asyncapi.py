"""The AsyncAPI 3 document of the channel protocol, generated from the frame models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api.realtime import asyncapi_connect as connect
from api.realtime import asyncapi_multiplex as multiplex
from api.realtime import protocol

REF = "#/components/schemas/{model}"


def _name(model: type[BaseModel]) -> str:
    return model.__name__.removesuffix("Frame")


def build(version: str, host: str = "localhost:8000", secure: bool = False) -> dict[str, Any]:
    sent = (*protocol.SERVER_FRAMES,)
    received = protocol.CLIENT_FRAMES
    models: list[type[BaseModel]] = [*sent, *received, *multiplex.MODELS, protocol.StatsFrame]
    _, schema = models_json_schema([(m, "serialization") for m in models], ref_template=REF)
    schemas = schema.get("$defs", {})
    messages = {
        _name(m): {
            "name": _name(m),
            "title": _name(m),
            "summary": (m.__doc__ or _name(m)).strip().splitlines()[0],
            "contentType": "application/json",
            "payload": {"$ref": REF.format(model=m.__name__)},
        }
        for m in models
    }
    item_messages = {_name(m): {"$ref": f"#/components/messages/{_name(m)}"} for m in sent}
    item_messages.update(
        {_name(m): {"$ref": f"#/components/messages/{_name(m)}"} for m in received}
    )
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Item Channels",
            "version": version,
            "description": (
                "Real-time channel per item (`/items/{item_id}/ws`), and many items on one "
                "socket (`/ws`). Credentials: `?token=` (access token or "
                "single-use ticket), `Authorization: Bearer`, the subprotocol pair "
                "`bearer, <token>`, or the `session` cookie with an allowed `Origin`. "
                "Refusals complete the handshake and close with 1008 and a reason: "
                + ", ".join(
                    f"`{r}`"
                    for r in (
                        protocol.MISSING_CREDENTIALS,
                        protocol.INVALID_TOKEN,
                        protocol.TOKEN_EXPIRED,
                        protocol.INVALID_SESSION,
                        protocol.ORIGIN_NOT_ALLOWED,
                        protocol.FORBIDDEN,
                        protocol.INVALID_SINCE,
                    )
                )
                + "."
            ),
        },
        "defaultContentType": "application/json",
        "servers": connect.servers(host, secure),
        "channels": {
            "item": {
                "address": "/items/{item_id}/ws",
                "title": "Item channel",
                "description": connect.close_codes_text(),
                "x-close-codes": connect.close_codes(),
                "parameters": {"item_id": {"description": "Item id, ^[A-Za-z0-9_.-]{1,64}$"}},
                "messages": item_messages,
                "bindings": {
                    "ws": {
                        "headers": connect.handshake_bindings(),
                        "query": {
                            "type": "object",
                            "properties": {
                                "token": {"type": "string"},
                                "since": {"type": "string", "pattern": "^[0-9]+$"},
                                "state": {
                                    "type": "string",
                                    "description": (
                                        "`1`: the state snapshot after `ready`, then a "
                                        "`state` frame per change."
                                    ),
                                },
                            },
                        },
                    }
                },
            },
            "multiplex": multiplex.channel(),
            "monitor": {
                "address": "/monitor/ws",
                "title": "Service statistics",
                "messages": {"Stats": {"$ref": "#/components/messages/Stats"}},
            },
        },
        "operations": {
            "receiveItemFrames": {
                "action": "send",
                "summary": "Frames the server sends on an item channel.",
                "channel": {"$ref": "#/channels/item"},
                "messages": [{"$ref": f"#/channels/item/messages/{_name(m)}"} for m in sent],
            },
            "sendItemFrames": {
                "action": "receive",
                "summary": "Frames the server accepts on an item channel.",
                "channel": {"$ref": "#/channels/item"},
                "messages": [{"$ref": f"#/channels/item/messages/{_name(m)}"} for m in received],
            },
            **multiplex.operations(),
            "receiveStats": {
                "action": "send",
                "channel": {"$ref": "#/channels/monitor"},
                "messages": [{"$ref": "#/channels/monitor/messages/Stats"}],
            },
        },
        "components": {
            "schemas": schemas,
            "messages": messages,
            "securitySchemes": connect.SECURITY_SCHEMES,
        },
    }
