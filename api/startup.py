"""What `serve` settles about its process before it listens: the open-file limit, and
the warning for a public bind without ALLOWED_ORIGINS."""

from __future__ import annotations

import ipaddress
import logging
import resource

from api.config import Settings

log = logging.getLogger("api.server")

FD_RESERVE = 128  # descriptors kept for the database, the broker, logs


def connections_allowed_by_fd_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(64, soft - FD_RESERVE)


def raise_fd_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; the new soft
    limit. Workers inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
    return soft


def origin_warning(host: str, settings: Settings) -> str | None:
    """What to warn about when binding `host` without ALLOWED_ORIGINS: beyond loopback,
    the allowed origin would follow the request's `Host` header."""
    if settings.allowed_origins or _is_loopback(host):
        return None
    return (
        f"ALLOWED_ORIGINS is not set and the service listens on {host}: cookie-authenticated "
        "sockets then accept the origin named by the request's own Host header. Set "
        "ALLOWED_ORIGINS (and TRUSTED_HOSTS) in production."
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything
