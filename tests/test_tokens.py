"""The suite's JWT forger makes what it says: otherwise every "refused" case passes for
the wrong reason."""

from __future__ import annotations

import hashlib
import hmac

import jwt
import pytest

from tests.tokens import WRONG_KEY, b64json, b64url, sign, unsigned

KEY = "k" * 64  # long enough for HS512 without PyJWT's short-key warning
CLAIMS = {"sub": "user-1", "n": 1}


@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
def test_a_signed_token_verifies_with_pyjwt(algorithm: str) -> None:
    token = sign(CLAIMS, KEY, algorithm)
    assert jwt.decode(token, KEY, algorithms=[algorithm]) == CLAIMS


def test_the_header_and_the_digest_can_disagree() -> None:
    token = sign(CLAIMS, KEY, "RS256", digest="HS512")
    head, body, mac = token.split(".")
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    expected = hmac.new(KEY.encode(), f"{head}.{body}".encode(), hashlib.sha512).digest()
    assert mac == b64url(expected)


def test_a_wrong_key_does_not_verify() -> None:
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(sign(CLAIMS, WRONG_KEY), KEY, algorithms=["HS256"])


def test_an_unsigned_token_has_an_empty_signature() -> None:
    token = unsigned(CLAIMS, "None")
    head, _, signature = token.split(".")
    assert (head, signature) == (b64json({"alg": "None", "typ": "JWT"}), "")
    assert jwt.decode(token, options={"verify_signature": False}) == CLAIMS


def test_extra_header_fields() -> None:
    token = sign(CLAIMS, KEY, header={"kid": "../../dev/null"})
    assert jwt.get_unverified_header(token) == {
        "alg": "HS256",
        "typ": "JWT",
        "kid": "../../dev/null",
    }
    assert jwt.decode(token, KEY, algorithms=["HS256"]) == CLAIMS
