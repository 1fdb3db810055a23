"""Logging that never prints a credential.

uvicorn logs every request line and every WebSocket handshake with its query string
(`uvicorn.error` for sockets, `uvicorn.access` for HTTP), and `?token=` carries access
tokens and tickets. A filter on those loggers rewrites each record before any handler
sees it.
"""

from __future__ import annotations

import logging
import re

SECRET_PARAMS = re.compile(
    r"(?i)((?:^|[?&\s\"'])(?:token|access_token|ticket|session|password)=)[^&\s\"']*"
)
BEARER = re.compile(r"(?i)(bearer[ ,]+)[A-Za-z0-9._~+/=-]{8,}")
JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
REDACTED = "[redacted]"
LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "websockets", "api")


def redact(text: str) -> str:
    text = SECRET_PARAMS.sub(r"\1" + REDACTED, text)
    text = BEARER.sub(r"\1" + REDACTED, text)
    return JWT_SHAPE.sub(REDACTED, text)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in args)
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
