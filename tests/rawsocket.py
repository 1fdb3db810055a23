"""WebSocket handshakes by hand, for clients no library would be: silent, stalled, or
sending frames a library refuses to send."""

from __future__ import annotations

import base64
import os
import socket


def upgrade_request(port: int, path: str, extra_headers: str = "") -> bytes:
    """An HTTP/1.1 upgrade request for `path`, with `extra_headers` ("Name: value\\r\\n"…)."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    ).encode()


def silent_socket(port: int, path: str, *, timeout: float, rcvbuf: int = 0) -> socket.socket:
    """A socket that completes the handshake, then neither reads nor answers a ping.

    Its response is read a byte at a time so that no frame after it is consumed; a small
    `rcvbuf` makes the server's sends back up quickly."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
        sock.sendall(upgrade_request(port, path))
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = sock.recv(1)
            assert chunk, "closed during the handshake"
            response += chunk
        assert response.startswith(b"HTTP/1.1 101"), response
    except BaseException:
        sock.close()
        raise
    return sock
