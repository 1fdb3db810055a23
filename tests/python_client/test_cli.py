"""`python -m api.client listen|publish` as a shell user runs it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

from tests.processes import ROOT
from tests.python_client.conftest import NewClient, me
from tests.servers import LiveServer

TIMEOUT = 30
# Item ids may begin with "-": after `--`, as a shell user passes them, they are not options.


async def cli(
    server: LiveServer, *args: str, module: str = "api.client", **env: str
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        "--url",
        server.base_url,
        *args,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run(
    server: LiveServer, *args: str, module: str = "api.client", **env: str
) -> tuple[int, str, str]:
    proc = await cli(server, *args, module=module, **env)
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_listen_prints_json_lines_and_publish_prints_the_seq(
    server: LiveServer, new_client: NewClient
) -> None:
    alice = await new_client()
    item = (await alice.create_item("x"))["id"]
    await alice.post_message(item, "old")
    assert alice.token is not None
    listener = await cli(
        server, "listen", "--since", "0", "--", item, ITEM_CHANNELS_TOKEN=alice.token
    )
    assert listener.stdout is not None
    try:
        first = json.loads(await asyncio.wait_for(listener.stdout.readline(), TIMEOUT))
        # Options also come after the command, as in `websocat`-style use.
        code, out, err = await run(
            server, "publish", "--token", alice.token, "--", item, '{"text": "hi"}'
        )
        assert (code, out, err) == (0, "2\n", "")
        second = json.loads(await asyncio.wait_for(listener.stdout.readline(), TIMEOUT))
    finally:
        listener.send_signal(signal.SIGINT)
        await asyncio.wait_for(listener.wait(), TIMEOUT)
    assert listener.returncode == 0
    assert (first["seq"], first["data"]) == (1, "old")
    assert (second["seq"], second["data"], second["sender"]) == (2, {"text": "hi"}, await me(alice))


async def test_username_and_password_from_the_environment(
    server: LiveServer, new_client: NewClient
) -> None:
    from tests.support import PASSWORD, unique

    alice = await new_client(login=False)
    name = unique()
    await alice.register(name, PASSWORD)
    await alice.login(name, PASSWORD)
    item = (await alice.create_item("x"))["id"]
    code, out, _ = await run(
        server, "--username", name, "publish", "--", item, "[1, 2]", ITEM_CHANNELS_PASSWORD=PASSWORD
    )
    assert (code, out) == (0, "1\n")
    assert [m["data"] for m in await alice.messages(item)] == [[1, 2]]


async def test_refusals_and_bad_input_exit_with_a_message(
    server: LiveServer, new_client: NewClient
) -> None:
    alice, bob = await new_client(), await new_client()
    item = (await alice.create_item("x"))["id"]
    assert bob.token is not None
    code, out, err = await run(server, "--token", bob.token, "listen", "--", item)
    assert (code, out) == (1, "") and "1008 'forbidden'" in err
    code, _, err = await run(server, "--token", bob.token, "publish", "--", item, "{not json")
    assert code == 1 and "not JSON" in err
    code, _, err = await run(server, "publish", "--", item, "1", ITEM_CHANNELS_TOKEN="")
    assert code == 1 and "--token" in err


async def test_the_service_command_hands_listen_and_publish_to_the_client(
    server: LiveServer, new_client: NewClient
) -> None:
    """`item-channels` (`python -m api`) offers the client's commands too."""
    alice = await new_client()
    item = (await alice.create_item("x"))["id"]
    assert alice.token is not None
    code, out, err = await run(
        server, "publish", "--token", alice.token, "--", item, '{"text": "hi"}', module="api"
    )
    assert (code, out, err) == (0, "1\n", "")
