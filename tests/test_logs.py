"""The redaction every log record goes through (api/logs.py)."""

from __future__ import annotations

import pytest

from api.logs import REDACTED, redact

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJlLWJ5dGVz"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET /items/a/ws?token=abc HTTP/1.1", f"GET /items/a/ws?token={REDACTED} HTTP/1.1"),
        ("/ws?%74oken=abc&since=3", f"/ws?%74oken={REDACTED}&since=3"),
        ("/ws?x=%65%79%4A" + "a" * 10 + ".bbbbbbbb.cc", f"/ws?x={REDACTED}"),
        ("Authorization: Bearer abcdefghijkl", f"Authorization: Bearer {REDACTED}"),
        ("authorization: BEARER abcdefghijkl", f"authorization: BEARER {REDACTED}"),
        ("subprotocols: bEaReR,abcdefghijkl", f"subprotocols: bEaReR,{REDACTED}"),
        (f"sent {JWT} somewhere", f"sent {REDACTED} somewhere"),
    ],
)
def test_secrets_are_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "127.0.0.1:51846",
        '%s - "%s %s HTTP/%s" %d',
        "/items/b3896ea-0/messages",
        "a bear, a bearing, eyJ alone",
        "/items/a/messages?after=3&limit=10",
    ],
)
def test_text_without_secrets_is_unchanged(text: str) -> None:
    assert redact(text) == text
