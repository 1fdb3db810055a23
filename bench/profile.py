"""`--profile DIR`: sample the service with py-spy while each case is measured.

py-spy reads the server's memory from its own process (`--nonblocking`: the server is
never paused), so the CPU figures of a profiled run stay close to an unprofiled one.
Each case leaves `DIR/<case>.txt` (folded stacks, for flame-graph tools) and
`DIR/<case>.md` (the functions that hold the most samples, by own and total time).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RATE = 250  # samples per second
TOP = 25
_FRAME_LINE = re.compile(r"^(?P<func>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str | None:
    here = Path(sys.executable).with_name("py-spy")
    return str(here) if here.exists() else shutil.which("py-spy")


@contextmanager
def sampling(out_dir: Path | None, pid: int, label: str) -> Iterator[None]:
    """Sample `pid` (and its children) for the duration of the block, if profiling."""
    exe = py_spy() if out_dir is not None else None
    if out_dir is None or exe is None:
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-").lower()
    folded = out_dir / f"{slug}.txt"
    proc = subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--subprocesses",
            "--nonblocking",
            "--rate",
            str(RATE),
            "--format",
            "raw",
            "--output",
            str(folded),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if folded.exists():
        (out_dir / f"{slug}.md").write_text(summary(label, folded.read_text()))


def _short(frame: str) -> str:
    """`func (path/to/module.py:12)` -> `func (module.py)`: one row per function."""
    match = _FRAME_LINE.match(frame)
    if match is None:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = "/".join(Path(path).parts[-2:])
    return f"{match['func']} ({path})"


# py-spy names files relative to their entry of sys.path: `uvicorn/main.py`,
# `asyncio/runners.py`, and the service's own as `realtime/outbox.py`, `deps.py` or,
# found through the server's PYTHONPATH, `api/deps.py`.
_API = Path(__file__).resolve().parents[1] / "api"
_OURS = (
    "api/",
    *(f"{p.name}/" for p in _API.iterdir() if p.is_dir()),
    *(p.name for p in _API.glob("*.py")),
)
LAYERS = (
    # (how a frame's file starts, its layer); the first match wins.
    (("aiosqlite/",), "aiosqlite (its thread: SQLite itself)"),
    (("asyncio/runners.py",), "event loop in C (uvloop: sockets, syscalls)"),
    (("asyncio/",), "asyncio in Python (handles, futures, queues)"),
    (("sqlalchemy/",), "SQLAlchemy"),
    (("uvicorn/",), "uvicorn"),
    (("websockets/",), "websockets (uvicorn's WebSocket protocol)"),
    (("starlette/", "fastapi/"), "FastAPI + Starlette"),
    (("pydantic",), "pydantic"),
    (("jwt/",), "PyJWT"),
    (("logging/",), "logging"),
    (_OURS, "the service's own code"),
)


def _layer(frame: str) -> str:
    match = _FRAME_LINE.match(frame)
    path = match["file"] if match else frame
    for prefixes, layer in LAYERS:
        if path.startswith(prefixes):
            return layer
    return "other (standard library, other packages)"


def summary(label: str, folded: str) -> str:
    """Markdown: own samples by layer, then the top functions by own and by total samples."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    samples = 0
    for line in folded.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        raw = [f for f in stack.split(";") if not f.startswith("process ")]
        frames = [_short(f) for f in raw]
        if not frames:
            continue
        samples += count
        layers[_layer(raw[-1])] += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    lines = [f"# Profile: {label}", "", f"{samples:,} samples at {RATE} Hz (py-spy).", ""]
    lines += ["## Own time by layer", "", "| % | samples | layer |", "|--:|--:|---|"]
    for layer, count in layers.most_common():
        share = 100 * count / samples if samples else 0
        lines.append(f"| {share:.1f} | {count:,} | {layer} |")
    lines.append("")
    for title, counter in (("Own time", own), ("Total time (callees included)", total)):
        lines += [f"## {title}", "", "| % | samples | function |", "|--:|--:|---|"]
        for func, count in counter.most_common(TOP):
            share = 100 * count / samples if samples else 0
            lines.append(f"| {share:.1f} | {count:,} | `{func}` |")
        lines.append("")
    return "\n".join(lines)
