"""The service as its own process, started the way the README says."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from tests.servers import TEST_SECRET, free_port

ROOT = Path(__file__).resolve().parents[1]


def embedded_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of the embedded defaults (SQLite under VAR_DIR, in-memory broker)."""
    return {
        **os.environ,
        "VAR_DIR": str(tmp / "var"),
        "SECRET_KEY": TEST_SECRET,
        "DATABASE_URL": "",
        "BROKER_URL": "memory://",
        **extra,
    }


def wait_until_healthy(
    proc: subprocess.Popen[bytes], base: str, log: Path, within: float = 30.0
) -> None:
    """Back once `base`/healthz answers 200; fails with the server's log if it exits or
    does not answer `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the server did not start:\n{log.read_text()}")


class Worker:
    """`uvicorn api.main:app` in its own process."""

    def __init__(
        self, env: dict[str, str], log: Path, *extra_args: str, port: int | None = None
    ) -> None:
        # A fixed port lets a test restart the service where its clients expect it.
        self.port = port if port is not None else free_port()
        self.log = log
        # The suite's servers share one Redis and register many users from one address:
        # unless a test sets them, its own limit counters and limits it will not reach.
        self.env = {
            "RATE_LIMIT_KEY_PREFIX": f"ic-test-{uuid.uuid4().hex[:12]}",
            "REGISTRATIONS_PER_ADDRESS": "100000",
            "LOGIN_FAILURES_PER_ADDRESS": "100000",
            **env,
        }
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        command = [sys.executable, "-m", "uvicorn", "api.main:app", "--port", str(self.port)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*command, *self.extra_args],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_until_healthy(self.proc, self.base, self.log)
        return self

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
