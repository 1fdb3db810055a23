"""Primitives: password hashing, session secrets, JWT encoding and verification."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from api.errors import AuthFailure
from api.realtime.protocol import INVALID_TOKEN, TOKEN_EXPIRED

ACCESS = "access"
TICKET = "ticket"
REQUIRED_CLAIMS = ("sub", "sid", "iat", "exp", "jti", "typ")
MAX_VERIFIED_TOKENS = 10_000  # verified access tokens kept per process (a few MB at most)


class _Passwords:
    """Argon2id with configurable cost; argon2-cffi's defaults (RFC 9106's second
    recommendation: t=3, 64 MiB) unless the settings say otherwise."""

    def __init__(self, time_cost: int = 3, memory_kib: int = 65536) -> None:
        self.hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)
        # Verified for unknown usernames so that they take as long as a wrong password.
        self.dummy_hash = self.hasher.hash(secrets.token_urlsafe(16))


_passwords = _Passwords()


def configure_password_hashing(time_cost: int, memory_kib: int) -> None:
    global _passwords
    if (_passwords.hasher.time_cost, _passwords.hasher.memory_cost) != (time_cost, memory_kib):
        _passwords = _Passwords(time_cost, memory_kib)


def hash_password(password: str) -> str:
    return _passwords.hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    passwords = _passwords
    try:
        matched = passwords.hasher.verify(password_hash or passwords.dummy_hash, password)
    except (VerificationError, InvalidHashError):
        return False
    return matched and password_hash is not None


def new_id() -> str:
    return uuid.uuid4().hex


def new_session_secret() -> str:
    """An opaque cookie value: 256 random bits."""
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    # A fast hash is right here: the secret has 256 bits of entropy, nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


def same_secret(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True, slots=True)
class TokenClaims:
    sub: str
    sid: str
    jti: str
    typ: str
    iat: int
    exp: int
    item_id: str | None = None


class TokenCodec:
    """Signs and verifies JWTs with one pinned algorithm and explicit leeway."""

    def __init__(
        self,
        key: str,
        algorithm: str = "HS256",
        leeway: int = 0,
        max_verified: int = MAX_VERIFIED_TOKENS,
    ) -> None:
        self._key = key
        self._algorithm = algorithm
        self._leeway = leeway
        # Access tokens whose signature and claims were verified, by the token itself:
        # a client presents the same token on every request and handshake until it
        # expires, and verifying it again (base64, JSON, HMAC, claim checks) is most of
        # a credential check's cost. Only verified tokens get in (a forged one cannot
        # fill it); type and expiry are checked again on every use; the session behind
        # the token is still looked up every time (`CredentialResolver`), so a revoked
        # session refuses its tokens as before. A hit means the presented string
        # equals a verified one byte for byte: nothing is learned from a near miss.
        self._verified: dict[str, TokenClaims] = {}
        self._max_verified = max_verified

    def encode(
        self,
        *,
        sub: str,
        sid: str,
        typ: str,
        ttl: int,
        item_id: str | None = None,
        now: datetime | None = None,
    ) -> tuple[str, TokenClaims]:
        now = now or datetime.now(UTC)
        claims: dict[str, Any] = {
            "sub": sub,
            "sid": sid,
            "typ": typ,
            "jti": secrets.token_urlsafe(12),
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(seconds=ttl)).timestamp()),
        }
        if item_id is not None:
            claims["item_id"] = item_id
        token = jwt.encode(claims, self._key, algorithm=self._algorithm)
        return token, _claims(claims)

    def decode(self, token: str, *, types: tuple[str, ...] = (ACCESS,)) -> TokenClaims:
        """Verify signature, algorithm, claims and expiry, raising `AuthFailure`."""
        claims = self._verified.get(token)
        verified = claims is not None
        if claims is None:
            claims = self._verify(token)
        if claims.typ not in types:
            raise AuthFailure(INVALID_TOKEN)
        # A token is expired once now >= exp (PyJWT itself treats exp == now as valid).
        if datetime.now(UTC).timestamp() >= claims.exp + self._leeway:
            self._verified.pop(token, None)
            # An expired ticket is simply no longer a ticket: `invalid token`.
            raise AuthFailure(TOKEN_EXPIRED if claims.typ == ACCESS else INVALID_TOKEN)
        if not verified and claims.typ == ACCESS:  # tickets are single-use: not kept
            self._remember(token, claims)
        return claims

    def _remember(self, token: str, claims: TokenClaims) -> None:
        kept = self._verified
        if len(kept) >= self._max_verified:  # the oldest go first (dicts keep order)
            for old in list(kept)[: self._max_verified // 10 or 1]:
                del kept[old]
        kept[token] = claims

    def _verify(self, token: str) -> TokenClaims:
        try:
            # Reject oversized tokens before any parsing work.
            if len(token) > 4096:
                raise jwt.InvalidTokenError("token too long")
            # Verify the signature first, without expiry, so that a forged token is
            # `invalid token` even when its exp is in the past (the contract's order).
            payload = jwt.decode(
                token,
                self._key,
                algorithms=[self._algorithm],
                options={"require": list(REQUIRED_CLAIMS), "verify_exp": False},
            )
            return _claims(payload)
        except (jwt.InvalidTokenError, TypeError, ValueError) as exc:
            raise AuthFailure(INVALID_TOKEN) from exc


def _claims(payload: dict[str, Any]) -> TokenClaims:
    for name in ("sub", "sid", "jti", "typ"):
        if not isinstance(payload.get(name), str) or not payload[name]:
            raise ValueError(f"claim {name} must be a non-empty string")
    for name in ("iat", "exp"):
        if not isinstance(payload.get(name), int | float) or isinstance(payload[name], bool):
            raise ValueError(f"claim {name} must be a number")
    item_id = payload.get("item_id")
    if item_id is not None and not isinstance(item_id, str):
        raise ValueError("claim item_id must be a string")
    return TokenClaims(
        sub=payload["sub"],
        sid=payload["sid"],
        jti=payload["jti"],
        typ=payload["typ"],
        iat=int(payload["iat"]),
        exp=int(payload["exp"]),
        item_id=item_id,
    )
