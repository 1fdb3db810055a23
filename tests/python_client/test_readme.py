"""The README's client example runs as printed (only the server address changes)."""

from __future__ import annotations

import asyncio
import re
import sys

from tests.processes import ROOT
from tests.servers import LiveServer


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- client-example -->\n```python\n(.*?)```", text, re.DOTALL)
    assert match is not None, "the README lost its client example"
    return match.group(1)


async def test_the_readme_example_runs(server: LiveServer) -> None:
    code = readme_example().replace("http://127.0.0.1:8000", server.base_url)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines == ["stored as 1", "1 alice {'text': 'hi'}"]
