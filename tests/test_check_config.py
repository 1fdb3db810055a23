"""`item-channels check-config`: one line per check, every problem at once, exit 1 on
any, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import POSTGRES_URL, REDIS_URL, TEST_SECRET

ROOT = Path(__file__).resolve().parents[1]


def check_config(tmp_path: Path, **settings: str) -> tuple[int, list[str], str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BROKER_URL")}
    env.update({"VAR_DIR": str(tmp_path / "var"), "SECRET_KEY": TEST_SECRET, **settings})
    done = subprocess.run(
        [sys.executable, "-m", "api", "check-config"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout.splitlines(), done.stderr


def test_a_good_configuration_passes(tmp_path: Path) -> None:
    code, lines, stderr = check_config(tmp_path)
    assert code == 0, (lines, stderr)
    assert [line.split()[:2] for line in lines] == [
        ["ok", "SECRET_KEY:"],
        ["ok", "ALLOWED_ORIGINS:"],
        ["ok", "DATABASE_URL:"],
        ["ok", "BROKER_URL:"],
    ]


@pytest.mark.postgres
@pytest.mark.redis
def test_reachable_servers_pass(tmp_path: Path) -> None:
    if not (POSTGRES_URL and REDIS_URL):
        pytest.skip("TEST_POSTGRES_URL and TEST_REDIS_URL are needed")
    code, lines, stderr = check_config(tmp_path, DATABASE_URL=POSTGRES_URL, BROKER_URL=REDIS_URL)
    assert code == 0, (lines, stderr)
    assert "ok    BROKER_URL: reachable" in lines


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    code, lines, stderr = check_config(
        tmp_path,
        BROKER_URL="kafka://broker:9092",
        ALLOWED_ORIGINS="https://app.example.com,not-an-origin,https://x.example/path",
        SECRET_KEY="short",
        ACCESS_TOKEN_TTL="-5",
        DATABASE_URL="postgresql+asyncpg://app:hunter2-password@127.0.0.1:1/nothing",
    )
    assert code == 1
    assert "Traceback" not in stderr
    failed = {line.split(":")[0].removeprefix("FAIL").strip(): line for line in lines}
    assert set(failed) == {
        "ACCESS_TOKEN_TTL",
        "SECRET_KEY",
        "ALLOWED_ORIGINS",
        "DATABASE_URL",
        "BROKER_URL",
    }, lines
    assert all(line.startswith("FAIL  ") for line in lines)
    assert "not-an-origin, https://x.example/path" in failed["ALLOWED_ORIGINS"]
    assert "https://app.example.com" not in failed["ALLOWED_ORIGINS"]
    assert "'kafka'" in failed["BROKER_URL"]
    assert "hunter2" not in "\n".join(lines) + stderr


def test_an_unreachable_redis_fails(tmp_path: Path) -> None:
    code, lines, _ = check_config(tmp_path, BROKER_URL="redis://127.0.0.1:1/0")
    assert code == 1
    assert any(line.startswith("FAIL  BROKER_URL: cannot reach Redis") for line in lines), lines


def test_serve_refuses_bad_settings_with_one_line_each(tmp_path: Path) -> None:
    env = {**os.environ, "VAR_DIR": str(tmp_path / "var")}
    env.update(BROKER_URL="kafka://broker", SECRET_KEY="short", SESSION_TTL="-1")
    done = subprocess.run(
        [sys.executable, "-m", "api", "serve", "--port", "1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert [line.split(":")[0] for line in done.stderr.splitlines()] == [
        "SESSION_TTL",
        "SECRET_KEY",
        "BROKER_URL",
    ]


def test_plain_uvicorn_refuses_bad_settings_with_one_line_each(tmp_path: Path) -> None:
    env = {**os.environ, "VAR_DIR": str(tmp_path / "var")}
    env.update(ALLOWED_ORIGINS="https://ok.example,ftp://files.example", WS_TICKET_TTL="0")
    done = subprocess.run(
        [sys.executable, "-m", "uvicorn", "api.main:app", "--port", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        "WS_TICKET_TTL: Input should be greater than or equal to 1",
        "ALLOWED_ORIGINS: not scheme://host[:port]: ftp://files.example",
    ]
