"""Schemathesis against the real server's `/openapi.json`, every operation, authenticated.

Positive and negative requests generated from the schema (and, for `{item_id}` and
`{username}`, some with an item the caller owns and a user who exists, so that the
calls get past the access check). Checks that fit the contract:

- `not_a_server_error`: no 5xx, ever;
- `response_schema_conformance`: a documented status has the documented body;
- `content_type_conformance`: and the documented media type;
- `negative_data_rejection`: a request the schema says is invalid gets a 4xx.

(`status_code_conformance` is left out: the contract fixes 401/403/404/409/413 answers
the generated document does not list. `positive_data_acceptance` is left out too: a valid
request for someone else's item correctly answers 404.)

Besides the checks, no request may leave an unhandled exception in the server's log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
)

from tests.servers import LiveServer
from tests.support import PASSWORD, unique

MakeServer = Callable[..., AbstractContextManager[LiveServer]]

EXAMPLES_PER_OPERATION = 25
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    content_type_conformance,
    negative_data_rejection,
]
LOGGERS = ("uvicorn.error", "uvicorn.asgi", "api")


class Collect(logging.Handler):
    """Keeps every record of the server's loggers."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def unhandled(self) -> list[str]:
        found = []
        for record in self.records:
            message = record.getMessage()
            if (
                record.exc_info is not None
                or record.levelno >= logging.ERROR
                or "Traceback" in message
                or "Exception in ASGI application" in message
            ):
                text = message
                if record.exc_info is not None:
                    text += "\n" + logging.Formatter().formatException(record.exc_info)
                found.append(f"{record.name}: {text}")
        return found


@contextmanager
def server_log() -> Iterator[Collect]:
    """Records of the server's loggers. Entered once the server runs: uvicorn configures
    its loggers at start-up, which drops handlers attached before."""
    handler = Collect()
    loggers = [logging.getLogger(name) for name in LOGGERS]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


class Caller:
    """A user of the server under test and the fixtures the generated calls aim at."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.username = unique("st")
        r = http.post("/auth/register", json={"username": self.username, "password": PASSWORD})
        assert r.status_code == 201, r.text
        self.token = self.login()
        self.member = unique("stm")
        r = http.post("/auth/register", json={"username": self.member, "password": PASSWORD})
        assert r.status_code == 201, r.text
        self.item = unique("st-item-")
        self.ensure_item()

    def login(self) -> str:
        r = self.http.post("/auth/token", data={"username": self.username, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def ensure_item(self) -> None:
        """The caller's own item exists (a generated DELETE may have removed it)."""
        r = self.http.post("/items", json={"name": "fuzzed", "id": self.item}, headers=self.headers)
        assert r.status_code in (201, 409), r.text


def operation_strategy(operation: Any, caller: Caller) -> st.SearchStrategy[Any]:
    parameters = {p.name for p in operation.path_parameters}
    strategies = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        strategies.append(operation.as_strategy(generation_mode=mode))
        if "item_id" in parameters:
            fixed = {"item_id": caller.item}
            if "username" in parameters:
                fixed["username"] = caller.member
            strategies.append(operation.as_strategy(generation_mode=mode, path_parameters=fixed))
    return st.one_of(strategies)


def describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, BaseExceptionGroup):
        text += "".join(f"\n  - {type(e).__name__}: {e}" for e in exc.exceptions)
    return text[:3000]


def exercise(operation: Any, caller: Caller, base_url: str, calls: dict[str, int]) -> None:
    """Run one operation's generated cases through the checks."""
    label = operation.label

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation_strategy(operation, caller))
    def run(case: Any) -> None:
        calls[label] = calls.get(label, 0) + 1
        if label == "POST /auth/logout":
            caller.token = caller.login()  # each logout revokes the session it used
        case.call_and_validate(base_url=base_url, headers=caller.headers, checks=CHECKS, timeout=30)
        if label == "DELETE /items/{item_id}":
            caller.ensure_item()

    run()


def test_every_operation_survives_generated_requests(make_server: MakeServer) -> None:
    with (
        make_server() as srv,
        server_log() as log,
        httpx.Client(base_url=srv.base_url, timeout=30) as http,
    ):
        caller = Caller(http)
        schema = schemathesis.openapi.from_url(f"{srv.base_url}/openapi.json", timeout=30)
        operations = [result.ok() for result in schema.get_all_operations()]
        labels = {op.label for op in operations}
        # Every documented REST operation is exercised (the schema lists them all).
        assert {
            "POST /auth/register",
            "POST /auth/token",
            "POST /auth/login",
            "POST /auth/logout",
            "GET /auth/me",
            "POST /auth/refresh",
            "POST /auth/ws-ticket",
            "POST /items",
            "GET /items",
            "GET /items/{item_id}",
            "DELETE /items/{item_id}",
            "GET /items/{item_id}/members",
            "PUT /items/{item_id}/members/{username}",
            "DELETE /items/{item_id}/members/{username}",
            "POST /items/{item_id}/messages",
            "GET /items/{item_id}/messages",
            "GET /items/{item_id}/presence",
            "GET /items/{item_id}/state",
            "POST /items/{item_id}/state",
            "GET /kinds",
            "GET /healthz",
            "GET /readyz",
        } <= labels, labels

        failures: dict[str, str] = {}
        calls: dict[str, int] = {}
        for operation in operations:
            try:
                exercise(operation, caller, srv.base_url, calls)
            # Every operation runs; all failures are reported. (Schemathesis raises a
            # FailureGroup, a BaseExceptionGroup.)
            except (Exception, BaseExceptionGroup) as exc:
                failures[operation.label] = describe(exc)
            finally:
                caller.token = caller.login()  # whatever the last call did to the session
                caller.ensure_item()

        assert not failures, "\n\n".join(f"{k}\n{v}" for k, v in failures.items())
        assert set(calls) == labels, "every operation was called"
        # The server is still healthy, and logged no unhandled exception.
        assert http.get("/readyz").status_code == 200
        assert log.unhandled() == []
