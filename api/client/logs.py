"""The websockets library's debug log, without the credentials the client sends."""

from __future__ import annotations

import logging


class _Redact(logging.Filter):
    """At DEBUG, websockets logs every request header and outgoing frame: the
    `Authorization` header and `refresh` frames carry access tokens."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not isinstance(args, tuple) or not args:
            return True
        if record.msg == "> %s: %s" and str(args[0]).lower() == "authorization":
            record.args = (args[0], "[redacted]")
        elif record.msg == "> %s" and "token" in str(args[0]):
            record.args = ("[a frame with a credential, redacted]",)
        return True


#: Passed as `logger=` to every connection the client opens.
websocket_logger = logging.getLogger("api.client.websockets")
websocket_logger.addFilter(_Redact())
