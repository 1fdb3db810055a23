from __future__ import annotations

from tests.support import Api, read_until, ready


async def test_publish_over_websocket_is_acked_and_delivered(api: Api) -> None:
    alice = await api.user()
    item = await api.item(alice)
    ws, hello = await ready(api.server, item, alice.token)
    async with ws:
        assert hello["last_seq"] == 0 and hello["role"] == "owner"
        await ws.send('{"type":"publish","data":{"n":1},"ref":"a"}')
        ack = (await read_until(ws, "ack"))[-1]
        assert ack == {"type": "ack", "ref": "a", "seq": 1}
        message = (await read_until(ws, "message"))[-1]
        assert message["seq"] == 1 and message["data"] == {"n": 1}
