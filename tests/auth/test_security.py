"""Unit tests of the JWT codec and password checks (CONTRACT §2: access tokens)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import partial
from typing import Any

import jwt
import pytest

from api.auth import security
from api.auth.security import ACCESS, TICKET, TokenCodec, hash_password, verify_password
from api.errors import AuthFailure
from tests import tokens
from tests.tokens import b64json, unsigned

# 64 bytes or more: PyJWT warns (an error here) about shorter keys for HS512.
KEY = "unit-test-signing-key-" + "0123456789abcdef" * 4
OTHER_KEY = "another-signing-key-" + "fedcba9876543210" * 4
INVALID = "invalid token"
EXPIRED = "token expired"


# --- helpers -------------------------------------------------------------------------------


def payload(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "user-1",
        "sid": "session-1",
        "iat": now,
        "exp": now + 600,
        "jti": "jti-1",
        "typ": ACCESS,
    }
    claims.update(changes)
    return claims


# Signed with the unit-test key unless the test names another.
sign = partial(tokens.sign, key=KEY)


def reason(codec: TokenCodec, token: str, **kwargs: Any) -> str:
    with pytest.raises(AuthFailure) as failure:
        codec.decode(token, **kwargs)
    return failure.value.reason


@pytest.fixture
def codec() -> TokenCodec:
    return TokenCodec(KEY)


class Clock:
    """The codec's notion of now, in epoch seconds."""

    def __init__(self, now: float) -> None:
        self.now = now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Freeze the codec's clock (at a whole second to start with)."""
    frozen = Clock(float(int(time.time())))

    class FrozenDatetime(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return datetime.fromtimestamp(frozen.now, tz or UTC)

    monkeypatch.setattr(security, "datetime", FrozenDatetime)
    return frozen


# --- round trip ----------------------------------------------------------------------------


def test_roundtrip(codec: TokenCodec) -> None:
    token, issued = codec.encode(sub="user-1", sid="session-1", typ=ACCESS, ttl=900)
    decoded = codec.decode(token)
    assert decoded == issued
    assert (decoded.sub, decoded.sid, decoded.typ) == ("user-1", "session-1", ACCESS)
    assert decoded.exp - decoded.iat == 900
    assert decoded.item_id is None
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256"
    raw = jwt.decode(token, KEY, algorithms=["HS256"])
    assert {"sub", "sid", "iat", "exp", "jti", "typ"} <= set(raw)


def test_each_token_has_a_fresh_jti(codec: TokenCodec) -> None:
    a, _ = codec.encode(sub="u", sid="s", typ=ACCESS, ttl=60)
    b, _ = codec.encode(sub="u", sid="s", typ=ACCESS, ttl=60)
    assert codec.decode(a).jti != codec.decode(b).jti


def test_ticket_roundtrip_keeps_item_id(codec: TokenCodec) -> None:
    token, _ = codec.encode(sub="u", sid="s", typ=TICKET, ttl=60, item_id="item-9")
    claims = codec.decode(token, types=(TICKET,))
    assert (claims.typ, claims.item_id) == (TICKET, "item-9")


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_configured_algorithm_roundtrip(algorithm: str) -> None:
    codec = TokenCodec(KEY, algorithm)
    token, _ = codec.encode(sub="u", sid="s", typ=ACCESS, ttl=60)
    assert jwt.get_unverified_header(token)["alg"] == algorithm
    assert codec.decode(token).sub == "u"


# --- signature and algorithm ---------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(unsigned(payload()), id="alg-none"),
        pytest.param(unsigned(payload(), algorithm="None"), id="alg-None"),
        pytest.param(
            unsigned(payload()) + sign(payload()).rsplit(".", 1)[1], id="alg-none-with-signature"
        ),
        pytest.param(sign(payload(), key=OTHER_KEY), id="wrong-key"),
        pytest.param(sign(payload(), algorithm="HS512"), id="hs512-when-hs256-configured"),
        pytest.param(sign(payload(), algorithm="HS384"), id="hs384-when-hs256-configured"),
        pytest.param(sign(payload())[:-3] + "abc", id="tampered-signature"),
        pytest.param(
            ".".join(
                [
                    sign(payload()).split(".")[0],
                    b64json(payload(sub="admin")),
                    sign(payload()).split(".")[2],
                ]
            ),
            id="tampered-payload",
        ),
        pytest.param("", id="empty"),
        pytest.param("not-a-jwt", id="garbage"),
        pytest.param("a.b.c", id="three-garbage-parts"),
    ],
)
def test_bad_signature_or_algorithm_is_invalid(codec: TokenCodec, token: str) -> None:
    assert reason(codec, token) == INVALID


def test_hs256_token_refused_when_hs512_configured() -> None:
    assert reason(TokenCodec(KEY, "HS512"), sign(payload())) == INVALID


# --- claims --------------------------------------------------------------------------------


@pytest.mark.parametrize("claim", ["sub", "sid", "iat", "exp", "jti", "typ"])
def test_missing_claim_is_invalid(codec: TokenCodec, claim: str) -> None:
    claims = payload()
    del claims[claim]
    assert reason(codec, sign(claims)) == INVALID


@pytest.mark.parametrize("typ", ["refresh", TICKET, "ACCESS", ""])
def test_other_token_types_are_invalid_for_access(codec: TokenCodec, typ: str) -> None:
    assert reason(codec, sign(payload(typ=typ))) == INVALID


def test_access_token_is_invalid_where_only_tickets_are_accepted(codec: TokenCodec) -> None:
    assert reason(codec, sign(payload()), types=(TICKET,)) == INVALID


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"sub": 123}, id="sub-int"),
        pytest.param({"sub": None}, id="sub-null"),
        pytest.param({"sub": ["user-1"]}, id="sub-list"),
        pytest.param({"sid": 7}, id="sid-int"),
        pytest.param({"jti": 7}, id="jti-int"),
        pytest.param({"typ": None}, id="typ-null"),
        pytest.param({"exp": "tomorrow"}, id="exp-string"),
        pytest.param({"iat": "now"}, id="iat-string"),
    ],
)
def test_wrongly_typed_claims_are_invalid(codec: TokenCodec, changes: dict[str, Any]) -> None:
    assert reason(codec, sign(payload(**changes))) == INVALID


def test_oversized_token_is_invalid(codec: TokenCodec) -> None:
    token = sign(payload(padding="x" * 64 * 1024))
    assert reason(codec, token) == INVALID


# --- expiry --------------------------------------------------------------------------------


def test_expired_token(codec: TokenCodec) -> None:
    assert (
        reason(codec, sign(payload(iat=int(time.time()) - 120, exp=int(time.time()) - 60)))
        == EXPIRED
    )


def test_token_is_expired_when_now_equals_exp(codec: TokenCodec, clock: Clock) -> None:
    exp = int(clock.now)
    token = sign(payload(iat=exp - 10, exp=exp))
    assert reason(codec, token) == EXPIRED
    clock.now = exp - 1
    assert codec.decode(token).exp == exp
    clock.now = exp - 0.001
    assert codec.decode(token).exp == exp
    clock.now = exp + 0.001
    assert reason(codec, token) == EXPIRED


def test_encoded_ttl_expires_exactly_at_exp(codec: TokenCodec, clock: Clock) -> None:
    token, claims = codec.encode(sub="u", sid="s", typ=ACCESS, ttl=30)
    assert (claims.iat, claims.exp) == (int(clock.now), int(clock.now) + 30)
    clock.now = claims.exp - 1
    assert codec.decode(token) == claims
    clock.now = claims.exp
    assert reason(codec, token) == EXPIRED


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(sign(payload(exp=1_000_000), key=OTHER_KEY), id="wrong-key"),
        pytest.param(unsigned(payload(exp=1_000_000)), id="alg-none"),
        pytest.param(sign(payload(exp=1_000_000), algorithm="HS512"), id="other-algorithm"),
        pytest.param(sign(payload(exp=1_000_000, typ="refresh")), id="wrong-type"),
    ],
)
def test_forged_token_with_old_exp_is_invalid_not_expired(codec: TokenCodec, token: str) -> None:
    assert reason(codec, token) == INVALID


def test_no_leeway_by_default_and_configured_leeway(clock: Clock) -> None:
    now = int(clock.now)
    token = sign(payload(iat=now - 100, exp=now - 5))
    assert reason(TokenCodec(KEY), token) == EXPIRED
    assert TokenCodec(KEY, leeway=10).decode(token).exp == now - 5
    assert reason(TokenCodec(KEY, leeway=5), token) == EXPIRED


# --- verified access tokens are kept --------------------------------------------------------


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens whose signature PyJWT was asked to verify, in order."""
    seen: list[str] = []
    real = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(security.jwt, "decode", counting)
    return seen


def test_a_verified_access_token_is_not_verified_again(
    codec: TokenCodec, verifications: list[str]
) -> None:
    token, issued = codec.encode(sub="u", sid="s", typ=ACCESS, ttl=60)
    assert codec.decode(token) == issued
    assert codec.decode(token) == issued
    assert verifications == [token]


def test_a_kept_token_still_expires(
    codec: TokenCodec, clock: Clock, verifications: list[str]
) -> None:
    token, claims = codec.encode(sub="u", sid="s", typ=ACCESS, ttl=30)
    assert codec.decode(token) == claims
    clock.now = claims.exp
    assert reason(codec, token) == EXPIRED
    assert reason(codec, token) == EXPIRED
    assert verifications == [token, token]  # dropped once expired, then verified again


def test_a_kept_access_token_is_no_ticket(codec: TokenCodec) -> None:
    token, _ = codec.encode(sub="u", sid="s", typ=ACCESS, ttl=60)
    codec.decode(token)
    assert reason(codec, token, types=(TICKET,)) == INVALID


def test_tickets_and_refused_tokens_are_not_kept(
    codec: TokenCodec, verifications: list[str]
) -> None:
    ticket, _ = codec.encode(sub="u", sid="s", typ=TICKET, ttl=60)
    forged = sign(payload(), key=OTHER_KEY)
    for _ in range(2):
        codec.decode(ticket, types=(TICKET,))
        assert reason(codec, forged) == INVALID
    assert verifications == [ticket, forged, ticket, forged]


def test_kept_tokens_are_bounded(verifications: list[str]) -> None:
    codec = TokenCodec(KEY, max_verified=10)
    tokens_ = [codec.encode(sub=f"u{n}", sid="s", typ=ACCESS, ttl=60)[0] for n in range(25)]
    for token in tokens_:
        codec.decode(token)
    verifications.clear()
    for token in reversed(tokens_):
        codec.decode(token)
    # The newest were kept; the oldest were dropped and had to be verified again.
    assert tokens_[-1] not in verifications
    assert tokens_[0] in verifications
    assert len(tokens_) - len(verifications) <= 10


# --- passwords -----------------------------------------------------------------------------


def test_verify_password() -> None:
    stored = hash_password("correct horse battery")
    assert stored != "correct horse battery"
    assert verify_password(stored, "correct horse battery") is True
    assert verify_password(stored, "correct horse batterx") is False
    assert verify_password(stored, "") is False


@pytest.mark.parametrize("password", ["anything at all", ""])
def test_verify_password_for_unknown_user_is_false(password: str) -> None:
    assert verify_password(None, password) is False


def test_verify_password_with_a_corrupt_hash_is_false() -> None:
    assert verify_password("not-an-argon2-hash", "whatever") is False
