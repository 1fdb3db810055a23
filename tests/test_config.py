"""Settings from the environment (CONTRACT §1): defaults, parsing, and the signing key."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from api.auth.security import TokenCodec
from api.config import ConfigError, Settings
from api.main import create_app

ENV_VARS = [
    "DATABASE_URL",
    "BROKER_URL",
    "SECRET_KEY",
    "ALLOWED_ORIGINS",
    "ACCESS_TOKEN_TTL",
    "SESSION_TTL",
    "WS_TICKET_TTL",
    "MAX_MESSAGE_BYTES",
    "VAR_DIR",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No configuration from the caller's environment or a `.env` in the project root."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --- defaults ------------------------------------------------------------------------------


def test_defaults() -> None:
    settings = Settings()
    assert settings.access_token_ttl == 900
    assert settings.session_ttl == 604800
    assert settings.ws_ticket_ttl == 60
    assert settings.max_message_bytes == 65536
    assert settings.broker_url == "memory://"
    assert settings.allowed_origins == ()


def test_default_database_is_a_sqlite_file_under_var(tmp_path: Path) -> None:
    url = Settings().effective_database_url
    scheme, _, path = url.partition(":///")
    assert scheme.startswith("sqlite")
    db_file = (tmp_path / path).resolve()
    assert db_file.parent == (tmp_path / "var").resolve()


def test_database_url_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql+asyncpg://user@db.example:5432/channels"
    monkeypatch.setenv("DATABASE_URL", url)
    assert Settings().effective_database_url == url


@pytest.mark.parametrize(
    ("var", "value", "attr", "expected"),
    [
        ("ACCESS_TOKEN_TTL", "60", "access_token_ttl", 60),
        ("SESSION_TTL", "3600", "session_ttl", 3600),
        ("WS_TICKET_TTL", "5", "ws_ticket_ttl", 5),
        ("MAX_MESSAGE_BYTES", "1024", "max_message_bytes", 1024),
        ("BROKER_URL", "redis://localhost:6379/0", "broker_url", "redis://localhost:6379/0"),
    ],
    ids=["ACCESS_TOKEN_TTL", "SESSION_TTL", "WS_TICKET_TTL", "MAX_MESSAGE_BYTES", "BROKER_URL"],
)
def test_values_from_env(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, attr: str, expected: object
) -> None:
    monkeypatch.setenv(var, value)
    assert getattr(Settings(), attr) == expected


# --- ALLOWED_ORIGINS -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("a, b", ("a", "b"), id="comma-space"),
        pytest.param("http://a.example", ("http://a.example",), id="single"),
        pytest.param(
            "http://a.example,https://b.example:8443",
            ("http://a.example", "https://b.example:8443"),
            id="comma",
        ),
        pytest.param(
            " http://a.example ,  http://b.example ",
            ("http://a.example", "http://b.example"),
            id="padded",
        ),
    ],
)
def test_allowed_origins_parsing(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: tuple[str, ...]
) -> None:
    monkeypatch.setenv("ALLOWED_ORIGINS", raw)
    origins = Settings().allowed_origins
    assert isinstance(origins, tuple)
    assert origins == expected


# --- SECRET_KEY ----------------------------------------------------------------------------


def test_unset_secret_key_is_generated_once_and_kept(tmp_path: Path) -> None:
    key = Settings().signing_key
    key_file = tmp_path / "var" / "secret_key"
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key.encode()) >= 32
    assert key_file.read_text().strip() == key

    # A restart reads the same key back, so tokens issued before stay valid.
    again = Settings().signing_key
    assert again == key
    token, _ = TokenCodec(key).encode(sub="u1", sid="s1", typ="access", ttl=60)
    assert TokenCodec(again).decode(token).sub == "u1"


def test_generated_key_goes_to_the_configured_var_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    var_dir = tmp_path / "elsewhere" / "state"
    monkeypatch.setenv("VAR_DIR", str(var_dir))
    key = Settings().signing_key
    assert (var_dir / "secret_key").read_text().strip() == key
    assert stat.S_IMODE((var_dir / "secret_key").stat().st_mode) == 0o600
    assert not (tmp_path / "var" / "secret_key").exists()


def test_separate_var_dirs_get_different_keys(tmp_path: Path) -> None:
    assert (
        Settings(var_dir=tmp_path / "a").signing_key != Settings(var_dir=tmp_path / "b").signing_key
    )


def test_configured_secret_key_is_used_and_nothing_is_written(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = "k" * 40
    monkeypatch.setenv("SECRET_KEY", secret)
    assert Settings().signing_key == secret
    assert not (tmp_path / "var" / "secret_key").exists()


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param("short", id="5-bytes"),
        pytest.param("k" * 31, id="31-bytes"),
    ],
)
def test_short_secret_key_is_refused(monkeypatch: pytest.MonkeyPatch, secret: str) -> None:
    monkeypatch.setenv("SECRET_KEY", secret)
    settings = Settings()
    with pytest.raises(ConfigError):
        _ = settings.signing_key
    with pytest.raises(ConfigError):
        create_app(Settings())


@pytest.mark.parametrize(
    "secret",
    [pytest.param("k" * 32, id="32-ascii-bytes"), pytest.param("é" * 16, id="16-chars-32-bytes")],
)
def test_secret_key_of_32_bytes_is_accepted(monkeypatch: pytest.MonkeyPatch, secret: str) -> None:
    monkeypatch.setenv("SECRET_KEY", secret)
    assert Settings().signing_key == secret
    create_app(Settings())


def test_create_app_generates_the_key_when_unset(tmp_path: Path) -> None:
    create_app(Settings())
    assert (tmp_path / "var" / "secret_key").is_file()
