"""`WS /ws`: many items on one socket."""

from __future__ import annotations

from tests.e2e.multiplexed import open_ws, ready_frame, send, subscribe, subscribed_frame
from tests.support import Api, message_frame, read_until


async def test_subscribe_publish_and_receive(api: Api) -> None:
    alice = await api.user()
    item = await api.item(alice)
    ws, hello = await open_ws(api.server, alice.token)
    async with ws:
        assert hello == ready_frame(alice)
        assert await subscribe(ws, item) == subscribed_frame(item, "owner", 0)
        await send(ws, "publish", item_id=item, data={"n": 1}, ref="p1")
        frames = await read_until(ws, "message")
        assert {"type": "ack", "item_id": item, "ref": "p1", "seq": 1} in frames
        assert frames[-1] == message_frame(item, 1, alice.username, {"n": 1})
