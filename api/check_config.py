"""`item-channels check-config`: every problem with the configuration at once, one line
each, before a deploy; exits non-zero when any check fails."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError
from sqlalchemy import text

from api.config import MIN_SECRET_BYTES, SECRET_KEY_FILE, Settings
from api.db import make_engine

REACH_TIMEOUT = 5.0
BROKER_SCHEMES = ("memory", "redis", "rediss")


@dataclass(frozen=True)
class Result:
    name: str
    problem: str | None  # None: fine
    detail: str = ""

    def line(self) -> str:
        if self.problem is None:
            return f"ok    {self.name}" + (f": {self.detail}" if self.detail else "")
        return f"FAIL  {self.name}: {self.problem}"


def load() -> tuple[Settings, list[Result]]:
    """The settings, with every invalid value reported and replaced by its default, so
    that the other checks still run."""
    try:
        return Settings(), []
    except ValidationError as exc:
        results, bad = [], {}
        for error in exc.errors(include_url=False):
            field = str(error["loc"][0]) if error["loc"] else ""
            results.append(Result(field.upper() or "settings", error["msg"]))
            if field in Settings.model_fields:
                bad[field] = Settings.model_fields[field].get_default(call_default_factory=True)
        return Settings(**bad), results


def check_key(settings: Settings) -> Result:
    minimum = max(MIN_SECRET_BYTES, int(settings.jwt_algorithm[2:]) // 8)
    if settings.secret_key is not None:
        key, where = settings.secret_key.get_secret_value(), "SECRET_KEY"
    else:
        path = settings.var_dir / SECRET_KEY_FILE
        if not path.exists():
            return Result("SECRET_KEY", None, f"unset: generated into {path} at first start")
        key, where = path.read_text().strip(), str(path)
    if len(key.encode()) < minimum:
        return Result("SECRET_KEY", f"{where} is shorter than {minimum} bytes")
    return Result("SECRET_KEY", None, f"{len(key.encode())} bytes")


def check_origins(settings: Settings) -> Result:
    wrong = [o for o in settings.allowed_origins if not well_formed_origin(o)]
    if wrong:
        return Result("ALLOWED_ORIGINS", f"not scheme://host[:port]: {', '.join(wrong)}")
    return Result("ALLOWED_ORIGINS", None, ", ".join(settings.allowed_origins) or "own origin")


def well_formed_origin(origin: str) -> bool:
    try:
        parts = urlsplit(origin)
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not (parts.path or parts.query or parts.fragment or parts.username)
    )


async def check_database(settings: Settings) -> Result:
    url = settings.effective_database_url
    engine = make_engine(url)
    try:
        async with asyncio.timeout(REACH_TIMEOUT), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure is the answer
        return Result("DATABASE_URL", f"cannot connect: {describe(exc)}")
    finally:
        await engine.dispose()
    return Result("DATABASE_URL", None, f"reachable ({engine.url.render_as_string()})")


def check_broker_scheme(settings: Settings) -> Result:
    scheme = settings.broker_url.partition("://")[0]
    if scheme not in BROKER_SCHEMES:
        return Result("BROKER_URL", f"unsupported scheme {scheme!r}: use memory:// or redis://")
    return Result("BROKER_URL", None, scheme)


async def check_broker(settings: Settings) -> Result:
    scheme = settings.broker_url.partition("://")[0]
    if (wrong := check_broker_scheme(settings)).problem is not None:
        return wrong
    if scheme == "memory":
        return Result("BROKER_URL", None, "in-memory (one process)")
    from redis.asyncio import Redis

    client: Redis = Redis.from_url(settings.broker_url)
    try:
        async with asyncio.timeout(REACH_TIMEOUT):
            await client.ping()
    except Exception as exc:  # any failure is the answer
        return Result("BROKER_URL", f"cannot reach Redis: {describe(exc)}")
    finally:
        await client.aclose()
    return Result("BROKER_URL", None, "reachable")


def describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {REACH_TIMEOUT:g} s"
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


async def run_checks(settings: Settings) -> list[Result]:
    reach: list[Callable[[Settings], Awaitable[Result]]] = [check_database, check_broker]
    reached = await asyncio.gather(*(check(settings) for check in reach))
    return [check_key(settings), check_origins(settings), *reached]


def startup_problems() -> list[str]:
    """What would stop the service, without reaching any server: one line each."""
    settings, results = load()
    results += [check_key(settings), check_origins(settings), check_broker_scheme(settings)]
    return [f"{r.name}: {r.problem}" for r in results if r.problem is not None]


def check_config(_: Any = None) -> int:
    """Print one line per check; the exit status is 1 when any failed."""
    settings, results = load()
    if settings.effective_database_url.startswith("sqlite"):
        settings.var_dir.mkdir(parents=True, exist_ok=True)
    results += asyncio.run(run_checks(settings))
    for result in results:
        print(result.line())
    return 1 if any(r.problem is not None for r in results) else 0
