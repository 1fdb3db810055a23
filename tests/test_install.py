"""The wheel, installed as users install it: built from this tree, put into a fresh venv
with its dependencies, then `item-channels migrate` and `item-channels serve` run from an
empty directory, far from the source tree. Needs the package index (or pip's cache):
`-m "not network"` skips it offline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory
from websockets.sync.client import connect

from api import __version__, migrate
from tests.processes import wait_until_healthy
from tests.servers import free_port
from tests.support import PASSWORD

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.network, pytest.mark.timeout(600)]


def package_files() -> set[str]:
    """What the wheel must hold: every file of api/ and migrations/ that git tracks or
    would track, under the names the installed package gives them."""
    names = set()
    for path in (ROOT / "api").rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            names.add(path.relative_to(ROOT).as_posix())
    for path in (ROOT / "migrations").rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            names.add("api/" + path.relative_to(ROOT).as_posix())
    return names


def run(*command: str | Path, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=480
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture
def user_env(tmp_path: Path) -> dict[str, str]:
    """A user's environment: none of the suite's settings, pip set up as on this machine."""
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
    env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("PIP_")}
    env.setdefault("HOME", str(tmp_path))
    return env


@pytest.fixture
def installed(tmp_path: Path, user_env: dict[str, str]) -> Path:
    """A fresh venv with the wheel and its dependencies; returns its bin directory."""
    # Built from a copy: setuptools leaves build/ behind in the tree it builds from.
    source = tmp_path / "source"
    for name in ("api", "migrations"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    dist = tmp_path / "dist"
    build = ("-m", "pip", "wheel", "--quiet", "--no-deps", "-w", dist, source)
    run(sys.executable, *build, cwd=tmp_path, env=user_env)
    (wheel,) = dist.glob("item_channels-*.whl")
    assert wheel.name.startswith(f"item_channels-{__version__}-")
    with zipfile.ZipFile(wheel) as archive:
        missing = package_files() - set(archive.namelist())
    assert not missing, f"the wheel lacks {sorted(missing)}: list the package in pyproject.toml"

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path, env=user_env)
    # Dependencies resolved from the index (pip's cache makes repeat runs quick).
    run(venv / "bin" / "pip", "install", "--quiet", wheel, cwd=tmp_path, env=user_env)
    return venv / "bin"


@pytest.fixture
def empty_dir(tmp_path: Path) -> Path:
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path


@pytest.fixture
def serving(installed: Path, empty_dir: Path, user_env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    log = empty_dir.parent / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [installed / "item-channels", "serve", "--port", str(port)],
            cwd=empty_dir,
            env=user_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"127.0.0.1:{port}"
    try:
        wait_until_healthy(proc, f"http://{base}", log, within=60)
        yield base
    finally:
        proc.terminate()
        proc.wait(30)


def test_installed_wheel_migrates_and_serves(
    installed: Path, empty_dir: Path, user_env: dict[str, str], serving: str
) -> None:
    head = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
    # `serve` migrated at start-up already; `migrate` is harmless and says where it is.
    out = run(installed / "item-channels", "migrate", cwd=empty_dir, env=user_env)
    assert out.strip() == f"database at revision {head}"
    # The installed code, not this tree's.
    where = run(
        installed / "python", "-c", "import api; print(api.__file__)", cwd=empty_dir, env=user_env
    )
    assert not Path(where.strip()).is_relative_to(ROOT)

    with httpx.Client(base_url=f"http://{serving}", timeout=10) as http:
        r = http.get("/readyz")
        assert r.status_code == 200, r.text
        assert http.get("/openapi.json").json()["info"]["version"] == __version__
        # Every web asset is found in the installed package.
        for page in ("/", "/monitor"):
            r = http.get(page)
            assert r.status_code == 200 and "<html" in r.text.lower(), page
        for asset in (ROOT / "api" / "web").iterdir():
            if asset.suffix != ".html":
                r = http.get(f"/static/{asset.name}")
                assert r.status_code == 200 and r.content == asset.read_bytes(), asset.name

        credentials = {"username": "first-user", "password": PASSWORD}
        assert http.post("/auth/register", json=credentials).status_code == 201
        r = http.post("/auth/login", json=credentials)
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        r = http.post(
            "/items", json={"name": "board"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 201, r.text
        item_id = r.json()["id"]

    with connect(f"ws://{serving}/items/{item_id}/ws?token={token}", open_timeout=10) as ws:
        frame = json.loads(ws.recv(timeout=10))
    assert frame["type"] == "ready"
    assert frame["item_id"] == item_id and frame["role"] == "owner"
    # Everything it keeps is under the directory it was started in.
    assert (empty_dir / "var" / "item-channels.db").is_file()
