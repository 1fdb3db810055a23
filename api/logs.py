"""Logging that never prints a credential.

uvicorn logs every request line and every WebSocket handshake with its query string
(`uvicorn.error` for sockets, `uvicorn.access` for HTTP), and `?token=` carries access
tokens and tickets. A filter on those loggers rewrites each record before any handler
sees it.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from urllib.parse import unquote_plus

import orjson

from api.clock import iso_z

SECRET_NAMES = frozenset({"token", "access_token", "ticket", "session", "password"})
# A `name=value` pair as it appears in a query string or a printed ASGI scope. The name
# is matched percent-decoded (`%74oken` is `token` to the server), and so is the value
# (`%65%79%4A…` is a JWT).
PARAM = re.compile(r"(?:^|(?<=[?&;\s\"'(]))([A-Za-z0-9%._~+*!$-]{1,64})=([^&;\s\"']*)")
BEARER = re.compile(r"(?i)(bearer[ ,]+)[A-Za-z0-9._~+/=-]{8,}")
JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
REDACTED = "[redacted]"
LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "websockets", "api")


def _param(match: re.Match[str]) -> str:
    name, value = match.group(1), match.group(2)
    name_decoded = unquote_plus(name) if "%" in name or "+" in name else name
    value_decoded = unquote_plus(value) if "%" in value or "+" in value else value
    if name_decoded.strip().lower() in SECRET_NAMES or (
        value_decoded != value and (JWT_SHAPE.search(value_decoded) or BEARER.search(value_decoded))
    ):
        return f"{name}={REDACTED}"
    return match.group(0)


def _bearer(match: re.Match[str]) -> str:
    return match.group(1) + REDACTED


def redact(text: str) -> str:
    # Every record of uvicorn's loggers comes through here (an access line per request,
    # two lines per socket): each pattern runs only where its literal part occurs, so
    # text with nothing to redact costs a few substring checks. `bearer` is matched
    # without regard to case, and none of its letters has another case form than
    # ASCII's: it occurs in `text.lower()` exactly where the pattern can match.
    if "=" in text:
        text = PARAM.sub(_param, text)
    if "bearer" in text.lower():
        text = BEARER.sub(_bearer, text)
    if "eyJ" in text:
        text = JWT_SHAPE.sub(REDACTED, text)
    return text


def _scrub(value: object) -> object:
    """Numbers pass; anything else that shows a secret once printed is printed redacted
    (uvicorn's trace log prints whole ASGI scopes, headers and query strings included)."""
    if value is None or isinstance(value, int | float):
        return value
    text = value if isinstance(value, str) else str(value)
    cleaned = redact(text)
    return value if cleaned == text and not isinstance(value, str) else cleaned


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_scrub(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _scrub(v) for k, v in record.args.items()}
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


_filter = RedactSecrets()


def install_redaction() -> None:
    """Attach the filter to every logger that may print a request line (idempotent)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _filter not in logger.filters:
            logger.addFilter(_filter)
    for handler in logging.getLogger().handlers:
        if _filter not in handler.filters:
            handler.addFilter(_filter)


# Attributes every LogRecord has; anything else was passed with `extra=` and is kept.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, object] = {
            "ts": iso_z(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key != "color_message":
                body[key] = value
        if record.exc_info:
            body["exc"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(body, default=str).decode()


def use_json_logs() -> None:
    """Switch the handlers of uvicorn's loggers and the root logger to JSON lines."""
    formatter = JsonFormatter()
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:
            handler.setFormatter(formatter)
    # The service's own events (channel open/close with ids) at INFO.
    service = logging.getLogger("api")
    if not service.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(formatter)
        handler.addFilter(_filter)
        service.addHandler(handler)
        service.setLevel(logging.INFO)
        service.propagate = False
