"""The servers under test, each in its own process on a free loopback port.

`ours` is the service started the README's way (`python -m api serve`); `tutorial` and
`raw` are the two baselines in `bench/baselines/`. CPU time and RSS are read from /proc
for the server's process and its descendants.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import asyncpg
import httpx
import redis.asyncio as aioredis

from bench.profile import sampling

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ROOT / "bench" / "baselines"
SECRET_KEY = "bench-secret-key-long-enough-for-hs256-0123456789abcdef"
# The service's abuse limits (README, "Limits") that the benchmark lifts.
LIFTED_LIMITS = {
    "MAX_SOCKETS_PER_USER": "1000000",
    "MAX_SOCKETS_PER_ITEM": "1000000",
    "WS_PUBLISH_RATE": "1000000",
    "WS_PUBLISH_BURST": "1000000",
    "REGISTRATIONS_PER_ADDRESS": "1000000",
}
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

Kind = Literal["ours", "tutorial", "raw"]
KINDS: tuple[Kind, ...] = ("ours", "tutorial", "raw")


@dataclass(frozen=True)
class Backend:
    """Storage and broker of the service; the baselines have neither."""

    name: str
    database: Literal["sqlite", "postgres"]
    broker: Literal["memory", "redis"]


BACKENDS = {
    "sqlite-memory": Backend("sqlite-memory", "sqlite", "memory"),
    "postgres-redis": Backend("postgres-redis", "postgres", "redis"),
}


@dataclass(frozen=True)
class External:
    """Where PostgreSQL and Redis are, for the `postgres-redis` backend."""

    postgres_url: str
    redis_url: str

    @property
    def admin_dsn(self) -> str:
        return self.postgres_url.replace("postgresql+asyncpg://", "postgresql://").replace(
            "postgresql+psycopg://", "postgresql://"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_nofile() -> None:
    """Allow as many open files as the hard limit does (10,000 sockets need it).

    Called once at start-up, before any thread: the server processes inherit the limit.
    """
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# Process figures from /proc.


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name may contain spaces and parentheses: fields start after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry.name))[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) and its live descendants."""
    total = 0
    for p in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = _stat_fields(p)
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size of a process and its live descendants."""
    total = 0
    for p in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


# External services.


async def _probe(external: External) -> str | None:
    try:
        conn = await asyncpg.connect(external.admin_dsn, timeout=5)
        await conn.close()
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"PostgreSQL at {external.postgres_url}: {exc}"
    client = aioredis.from_url(external.redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        await client.ping()
    except Exception as exc:
        return f"Redis at {external.redis_url}: {exc}"
    finally:
        await client.aclose()
    return None


def unavailable(external: External) -> str | None:
    """Why PostgreSQL + Redis cannot be used, or None when both answer."""
    return asyncio.run(_probe(external))


async def _admin(external: External, sql: str) -> str:
    """Run `sql` on the admin connection; answer the server's version."""
    conn = await asyncpg.connect(external.admin_dsn, timeout=10)
    try:
        if sql:
            await conn.execute(sql)
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def _admin_sync(external: External, sql: str = "") -> str:
    # In a thread of its own: the caller may be inside a running event loop.
    result: list[str] = []

    def run() -> None:
        result.append(asyncio.run(_admin(external, sql)))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    if not result:
        raise RuntimeError(f"PostgreSQL did not answer: {sql}")
    return result[0]


@contextlib.contextmanager
def postgres_database(external: External) -> Iterator[str]:
    """A fresh database for one server, dropped afterwards."""
    name = f"ic_bench_{uuid.uuid4().hex[:12]}"
    _admin_sync(external, f'CREATE DATABASE "{name}"')
    base, _, _ = external.postgres_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        _admin_sync(external, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# Server processes.


class ServerProcess:
    """One server: started, waited for until `/healthz` answers, stopped."""

    def __init__(
        self, kind: Kind, command: list[str], env: dict[str, str], workdir: Path, port: int
    ) -> None:
        self.kind = kind
        self.command = command
        self.env = env
        self.workdir = workdir
        self.port = port
        self.log = workdir / f"{kind}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        # Set by `--profile`: the service is sampled while each case is measured (and
        # the baselines too with `--profile-baselines`, their profiles named after them).
        self.profile_dir: Path | None = None
        self.profile_baselines = False

    def sampled(self, label: str) -> contextlib.AbstractContextManager[None]:
        if self.kind == "ours":
            return sampling(self.profile_dir, self.pid, label)
        profile_dir = self.profile_dir if self.profile_baselines else None
        return sampling(profile_dir, self.pid, f"{self.kind} {label}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.command,
                cwd=self.workdir,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited at start:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.http_base}/healthz", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.kind} did not answer /healthz:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def rss_bytes(self) -> int:
        return rss_bytes(self.pid)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **extra}
    env.pop("PYTHONSTARTUP", None)
    return env


@contextlib.contextmanager
def running(
    kind: Kind, workdir: Path, backend: Backend | None = None, external: External | None = None
) -> Iterator[ServerProcess]:
    """A started server of `kind` (the service on `backend`), stopped on exit."""
    port = free_port()
    python = sys.executable
    with contextlib.ExitStack() as stack:
        if kind == "ours":
            assert backend is not None
            var_dir = workdir / "var"
            env = {
                "VAR_DIR": str(var_dir),
                "SECRET_KEY": SECRET_KEY,
                "DATABASE_URL": f"sqlite+aiosqlite:///{var_dir / 'bench.db'}",
                "BROKER_URL": "memory://",
                "ACCESS_TOKEN_TTL": "7200",
                # Abuse limits lifted: capacity is measured, not policy. Every subscriber
                # socket presents the one reader account's token, and publishers go as
                # fast as the server takes them.
                **LIFTED_LIMITS,
            }
            if backend.database == "postgres":
                assert external is not None
                env["DATABASE_URL"] = stack.enter_context(postgres_database(external))
            if backend.broker == "redis":
                assert external is not None
                env["BROKER_URL"] = external.redis_url
            command = [python, "-m", "api", "serve", "--host", "127.0.0.1", "--port", str(port)]
        else:
            env = {}
            script = BASELINES / f"{kind}.py"
            command = [python, str(script), "--host", "127.0.0.1", "--port", str(port)]
        server = ServerProcess(kind, command, _env(env), workdir, port)
        server.start()
        try:
            yield server
        finally:
            server.stop()


def postgres_version(external: External) -> str:
    return _admin_sync(external)


async def redis_version(external: External) -> str:
    client = aioredis.from_url(external.redis_url, socket_timeout=5)
    try:
        info = await client.info("server")
        return str(info.get("redis_version", "?"))
    finally:
        await client.aclose()
