"""Forged JWTs for the suite: one signer that can build any header, algorithm and signature.

Built by hand rather than with PyJWT because attacks need what PyJWT refuses to make: a
header naming one algorithm over a signature made with another (algorithm confusion), an
`alg: none` token with or without a signature, extra header fields (`kid`, `jku`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import TYPE_CHECKING, Any

from tests.servers import TEST_SECRET

if TYPE_CHECKING:
    from tests.support import User

DIGESTS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
# Another key long enough for any HMAC algorithm: a token "signed by an attacker".
WRONG_KEY = "an-attacker-key-that-is-also-long-enough-0123456789"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64json(obj: Any) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def sign(
    claims: dict[str, Any],
    key: str | None = TEST_SECRET,
    algorithm: str = "HS256",
    *,
    digest: str | None = None,
    header: dict[str, Any] | None = None,
) -> str:
    """A JWT whose header says `algorithm`, HMAC-signed with `key` (None: no signature).

    The HMAC digest is `algorithm`'s own, or `digest` when given: a header and a signature
    that disagree, e.g. RS256 over an HMAC made with the server's secret.
    """
    head = {"alg": algorithm, "typ": "JWT", **(header or {})}
    signing_input = f"{b64json(head)}.{b64json(claims)}"
    if key is None:
        return f"{signing_input}."
    hash_name = digest or (algorithm if algorithm in DIGESTS else "HS256")
    mac = hmac.new(key.encode(), signing_input.encode(), DIGESTS[hash_name]).digest()
    return f"{signing_input}.{b64url(mac)}"


def unsigned(claims: dict[str, Any], algorithm: str = "none") -> str:
    """An `alg: none` token (or any other header algorithm) with an empty signature."""
    return sign(claims, key=None, algorithm=algorithm)


def claims_of(token: str) -> dict[str, Any]:
    """The payload of a JWT, not verified."""
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # type: ignore[no-any-return]


def access_claims(user: User, **overrides: Any) -> dict[str, Any]:
    """Claims of a valid access token of `user`'s session (from its real token), with
    `overrides`; an override of None drops the claim."""
    real = claims_of(user.token)
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": real["sub"],
        "sid": real["sid"],
        "typ": "access",
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def padded(user: User, size: int, key: str = WRONG_KEY) -> str:
    """A well-formed HS256 token of about `size` bytes (a padding claim), signed by `key`."""
    token = sign(access_claims(user, pad=""), key=key)
    pad = "p" * int((size - len(token)) * 3 / 4)
    return sign(access_claims(user, pad=pad), key=key)
