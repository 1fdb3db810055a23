"""Domain exceptions. Services raise these; routes/ turns them into HTTP answers."""

from __future__ import annotations


class DomainError(Exception):
    detail: str = "error"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or self.detail)
        self.detail = detail or self.detail


class NotFound(DomainError):
    detail = "not found"


class Forbidden(DomainError):
    detail = "forbidden"


class Conflict(DomainError):
    detail = "conflict"


class Unavailable(DomainError):
    """The store could not be reached: nothing was stored, the caller may try again."""

    detail = "the message store is unavailable"


class Unauthorized(DomainError):
    detail = "not authenticated"


class AuthFailure(Exception):
    """A credential was refused; `reason` is one of the contract's close reasons."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
