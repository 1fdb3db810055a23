"""OpenAPI declares how REST calls authenticate (so `/docs` can), and exactly the
operations that need a credential say so: each of them answers 401 without one, and
none of the others does."""

from __future__ import annotations

import re

from tests.support import Api


async def test_security_schemes_are_declared(api: Api) -> None:
    doc = (await api.http.get("/openapi.json")).json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["session"] == {**schemes["session"], "type": "apiKey", "in": "cookie"}
    assert schemes["session"]["name"] == "session"
    assert schemes["password"]["flows"]["password"]["tokenUrl"] == "/auth/token"


async def test_operations_marked_secured_are_the_ones_that_need_a_credential(api: Api) -> None:
    doc = (await api.http.get("/openapi.json")).json()
    secured, public = [], []
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            url = re.sub(r"\{[a-z_]+\}", "x1", path)
            r = await api.http.request(method.upper(), url, json={})
            needs = r.status_code == 401
            declared = operation.get("security") is not None
            (secured if declared else public).append((method, path))
            assert needs == declared, (method, path, r.status_code, operation.get("security"))
            if declared:
                assert {next(iter(s)) for s in operation["security"]} == {
                    "password",
                    "bearer",
                    "session",
                }
    assert ("get", "/auth/me") in secured and ("post", "/auth/login") in public
