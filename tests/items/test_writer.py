"""The message writer: group commits, acknowledgements before publishing, refusals."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.errors import Forbidden, NotFound
from api.items.group_store import SessionGroupStore
from api.items.writer import MessageWriter
from api.models import Role
from tests.items.conftest import seed

Sessions = async_sessionmaker[AsyncSession]


class RecordingPublisher:
    def __init__(self, fail: bool = False) -> None:
        self.published: list[tuple[str, int]] = []
        self.fail = fail

    async def publish_messages(self, messages: Sequence[tuple[str, int, str]]) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.published.extend((item_id, seq) for item_id, seq, _ in messages)


async def test_a_burst_is_stored_in_order_and_published_after_its_acks(
    sessions: Sessions,
) -> None:
    await seed(sessions, "a", {})
    publisher = RecordingPublisher()
    writer = MessageWriter(SessionGroupStore(sessions, 0), publisher)
    await writer.start()
    try:
        futures = [writer.submit("a", "owner", "owner", str(n)) for n in range(50)]
        stored = await asyncio.gather(*futures)
    finally:
        await writer.stop()
    assert [m.seq for m in stored] == list(range(1, 51))
    assert [m.data for m in stored] == [str(n) for n in range(50)]
    assert publisher.published == [("a", seq) for seq in range(1, 51)]


async def test_refusals_fail_their_own_futures_only(sessions: Sessions) -> None:
    await seed(sessions, "a", {"r": Role.reader})
    writer = MessageWriter(SessionGroupStore(sessions, 0), RecordingPublisher())
    await writer.start()
    try:
        reader = writer.submit("a", "r", "r", "1")
        stranger = writer.submit("a", "x", "x", "2")
        owner = writer.submit("a", "owner", "owner", "3")
        with pytest.raises(Forbidden):
            await reader
        with pytest.raises(NotFound):
            await stranger
        assert (await owner).seq == 1
    finally:
        await writer.stop()


async def test_a_failed_publish_keeps_the_message_stored(sessions: Sessions) -> None:
    await seed(sessions, "a", {})
    writer = MessageWriter(SessionGroupStore(sessions, 0), RecordingPublisher(fail=True))
    await writer.start()
    try:
        first = await writer.publish("a", "owner", "owner", "1")
        second = await writer.publish("a", "owner", "owner", "2")
    finally:
        await writer.stop()
    assert (first.seq, second.seq) == (1, 2)


async def test_stop_stores_what_is_queued(sessions: Sessions) -> None:
    await seed(sessions, "a", {})
    writer = MessageWriter(SessionGroupStore(sessions, 0), RecordingPublisher())
    await writer.start()
    futures = [writer.submit("a", "owner", "owner", str(n)) for n in range(5)]
    await writer.stop()
    assert [f.result().seq for f in futures] == [1, 2, 3, 4, 5]
