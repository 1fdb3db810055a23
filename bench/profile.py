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


def summary(label: str, folded: str) -> str:
    """Markdown: the top functions by own samples and by total (inclusive) samples."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in folded.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";") if not f.startswith("process ")]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    lines = [f"# Profile: {label}", "", f"{samples:,} samples at {RATE} Hz (py-spy).", ""]
    for title, counter in (("Own time", own), ("Total time (callees included)", total)):
        lines += [f"## {title}", "", "| % | samples | function |", "|--:|--:|---|"]
        for func, count in counter.most_common(TOP):
            share = 100 * count / samples if samples else 0
            lines.append(f"| {share:.1f} | {count:,} | `{func}` |")
        lines.append("")
    return "\n".join(lines)
