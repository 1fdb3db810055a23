"""`/asyncapi.json` passes the official AsyncAPI parser (npm `@asyncapi/parser`), run with
Node. Skipped when node or npm is absent; the parser is installed once into a cache
directory outside the project (ASYNCAPI_PARSER_DIR, default ~/.cache/item-channels/npm)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support import Api

PARSER = "@asyncapi/parser@3.6.6"
SCRIPT = Path(__file__).with_name("parse_asyncapi.cjs")
# The first run installs the parser from npm.
pytestmark = [pytest.mark.node, pytest.mark.network, pytest.mark.timeout(400)]


def cache_dir() -> Path:
    if configured := os.environ.get("ASYNCAPI_PARSER_DIR"):
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "item-channels" / "npm"


@pytest.fixture(scope="session")
def node_modules() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to run the AsyncAPI parser")
    prefix = cache_dir()
    prefix.mkdir(parents=True, exist_ok=True)
    installed = prefix / "node_modules" / "@asyncapi" / "parser" / "package.json"
    with (prefix / ".lock").open("w") as lock:  # test workers share the cache
        fcntl.flock(lock, fcntl.LOCK_EX)
        version = PARSER.rpartition("@")[2]
        if not installed.exists() or json.loads(installed.read_text())["version"] != version:
            npm = ["npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix", prefix]
            subprocess.run([*npm, PARSER], check=True, timeout=300)
    return prefix / "node_modules"


def parse(node_modules: Path, document: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    done = subprocess.run(
        ["node", SCRIPT],
        input=json.dumps(document),
        capture_output=True,
        text=True,
        env={**os.environ, "NODE_PATH": str(node_modules)},
        timeout=120,
    )
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


async def test_the_asyncapi_document_passes_the_official_parser(
    api: Api, node_modules: Path
) -> None:
    document = (await api.http.get("/asyncapi.json")).json()
    returncode, diagnostics = parse(node_modules, document)
    errors = [d for d in diagnostics if d["severity"] == 0]
    assert returncode == 0 and not errors, errors


def test_the_parser_check_catches_an_invalid_document(node_modules: Path) -> None:
    broken = {
        "asyncapi": "3.0.0",
        "info": {"title": "x", "version": "1"},
        "operations": {"o": {"action": "send", "channel": {"$ref": "#/channels/missing"}}},
    }
    returncode, diagnostics = parse(node_modules, broken)
    assert returncode == 1
    assert any(d["severity"] == 0 for d in diagnostics)
