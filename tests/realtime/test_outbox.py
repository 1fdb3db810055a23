"""The outbox on its own: order, duplicates, gaps, overflow, batches and eager sends."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from api.realtime import batching, protocol
from api.realtime.eager import start_eagerly
from api.realtime.outbox import Outbox


class FakeSocket:
    """Records what is sent; `hold()` makes sends wait until `release()`."""

    def __init__(self, stored: dict[int, str] | None = None) -> None:
        self.sent: list[str] = []
        self.closed: tuple[int, str] | None = None
        self.fetches: list[tuple[int, int]] = []
        self.stored = stored or {}
        self.fail = False
        self.store_down = False
        self.fetched_in: list[asyncio.Task[Any] | None] = []
        self._open = asyncio.Event()
        self._open.set()

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def send(self, text: str) -> None:
        await self._open.wait()
        if self.fail:
            raise OSError("peer gone")
        self.sent.append(text)

    async def close(self, code: int, reason: str) -> None:
        await self._open.wait()
        self.closed = (code, reason)

    async def fetch(self, item_id: str, after: int, upto: int) -> list[tuple[int, str]]:
        self.fetches.append((after, upto))
        self.fetched_in.append(asyncio.current_task())
        if self.store_down:
            raise OSError("database unavailable")
        await asyncio.sleep(0)
        return [(s, self.stored[s]) for s in range(after + 1, upto + 1) if s in self.stored]

    def seqs(self) -> list[int]:
        """Seqs of the message frames sent, batches unpacked."""
        found: list[int] = []
        for text in self.sent:
            frame = json.loads(text)
            for one in frame["frames"] if frame["type"] == "batch" else [frame]:
                if one["type"] == "message":
                    found.append(one["seq"])
        return found


def message(seq: int) -> str:
    return json.dumps({"type": "message", "seq": seq})


def make(socket: FakeSocket, capacity: int = 100, batch: bool = False) -> Outbox:
    return Outbox(
        item_id="item",
        user_id="u",
        username="alice",
        session_id="s",
        send=socket.send,
        close=socket.close,
        fetch=socket.fetch,
        capacity=capacity,
        batch=batch,
    )


async def settle(outbox: Outbox) -> None:
    for _ in range(5):
        await outbox.wait_sent()
        await asyncio.sleep(0)


async def test_an_idle_outbox_sends_at_the_end_of_the_turn_without_a_task() -> None:
    socket = FakeSocket()
    outbox = make(socket)
    outbox.start()
    outbox.push(1, message(1))
    outbox.push(2, message(2))
    assert socket.sent == []
    await asyncio.sleep(0)
    # One callback sent both; no send had to wait, so no task was made.
    assert socket.seqs() == [1, 2]
    assert outbox._task is None


async def test_frames_pushed_before_start_wait_for_it() -> None:
    socket = FakeSocket()
    outbox = make(socket)
    outbox.push(1, message(1))
    assert socket.sent == []
    outbox.start()
    assert socket.seqs() == [1]


async def test_a_waiting_send_queues_the_rest_in_order() -> None:
    socket = FakeSocket()
    outbox = make(socket)
    outbox.start()
    socket.hold()
    outbox.push(1, message(1))
    await asyncio.sleep(0)
    assert outbox._task is not None  # the send of 1 waits
    for seq in range(2, 6):
        outbox.push(seq, message(seq))
    assert socket.sent == []
    socket.release()
    await settle(outbox)
    assert socket.seqs() == [1, 2, 3, 4, 5]
    assert outbox._task is None
    outbox.push(6, message(6))
    await settle(outbox)
    assert socket.seqs()[-1] == 6


async def test_duplicates_are_dropped_and_unsequenced_frames_pass() -> None:
    socket = FakeSocket()
    outbox = make(socket)
    outbox.start()
    for seq in (1, 2, 2, 1, 3):
        outbox.push(seq, message(seq))
    outbox.push(0, protocol.PONG)
    await settle(outbox)
    assert socket.seqs() == [1, 2, 3]
    assert socket.sent[-1] == protocol.PONG


async def test_the_live_stream_is_sent_as_the_hub_hands_it() -> None:
    """The hub fills gaps once per process; a jump here is a pruned range, not a loss."""
    socket = FakeSocket(stored={2: message(2), 3: message(3)})
    outbox = make(socket)
    outbox.start()
    outbox.push(1, message(1))
    outbox.push(4, message(4))
    outbox.push(5, message(5))
    await settle(outbox)
    assert socket.fetches == []
    assert socket.seqs() == [1, 4, 5]


async def test_the_first_frame_goes_before_the_catch_up() -> None:
    socket = FakeSocket(stored={s: message(s) for s in range(1, 3)})
    outbox = make(socket)
    outbox.catch_up_to = 2
    outbox.push(3, message(3))
    outbox.start(first=(protocol.PONG,))
    await settle(outbox)
    assert socket.sent[0] == protocol.PONG
    assert socket.seqs() == [1, 2, 3]


async def test_a_close_requested_before_the_start_goes_out_alone() -> None:
    socket = FakeSocket(stored={1: message(1)})
    outbox = make(socket)
    outbox.catch_up_to = 1
    told: list[Outbox] = []
    outbox.on_close = told.append
    outbox.request_close(protocol.POLICY_VIOLATION, protocol.FORBIDDEN)
    outbox.start(first=(protocol.PONG,))
    await settle(outbox)
    assert socket.sent == []
    assert socket.closed == (protocol.POLICY_VIOLATION, protocol.FORBIDDEN)
    assert told == [outbox]


async def test_catch_up_comes_before_live_frames() -> None:
    socket = FakeSocket(stored={s: message(s) for s in range(1, 4)})
    outbox = make(socket)
    outbox.catch_up_to = 3
    outbox.push(4, message(4))
    outbox.start()
    outbox.push(5, message(5))
    await settle(outbox)
    assert socket.seqs() == [1, 2, 3, 4, 5]


async def test_overflow_drops_the_queue_and_closes_with_1013() -> None:
    socket = FakeSocket()
    outbox = make(socket, capacity=3)
    outbox.start()
    socket.hold()
    outbox.push(1, message(1))
    await asyncio.sleep(0)
    for seq in range(2, 10):
        outbox.push(seq, message(seq))
    assert outbox.closing is not None
    socket.release()
    await settle(outbox)
    # The frame being sent when it overflowed goes out; the queued ones do not.
    assert socket.seqs() == [1]
    assert socket.closed == (protocol.TRY_AGAIN_LATER, protocol.SLOW_CONSUMER)
    outbox.push(10, message(10))
    assert socket.seqs() == [1]


async def test_a_failed_send_ends_the_outbox_quietly() -> None:
    socket = FakeSocket()
    socket.fail = True
    outbox = make(socket)
    outbox.start()
    outbox.push(1, message(1))
    await asyncio.sleep(0)  # the send raised inside the callback; nothing escaped
    outbox.push(2, message(2))
    await settle(outbox)
    assert socket.sent == []
    assert outbox._task is None


async def test_batched_frames_of_one_turn_go_out_as_one_frame() -> None:
    socket = FakeSocket()
    outbox = make(socket, batch=True)
    outbox.start()
    for seq in range(1, 6):
        outbox.push(seq, message(seq))
    outbox.push(0, protocol.PONG)
    assert socket.sent == []  # sent at the end of this turn
    await settle(outbox)
    assert len(socket.sent) == 1
    frame = json.loads(socket.sent[0])
    assert frame["type"] == "batch"
    assert frame["frames"] == [json.loads(message(s)) for s in range(1, 6)] + [{"type": "pong"}]
    # A lone frame is sent as itself.
    outbox.push(6, message(6))
    await settle(outbox)
    assert json.loads(socket.sent[-1]) == json.loads(message(6))


async def test_batches_respect_their_size(monkeypatch: Any) -> None:
    monkeypatch.setattr(batching, "BATCH_MAX_FRAMES", 3)
    socket = FakeSocket()
    outbox = make(socket, batch=True)
    outbox.start()
    for seq in (1, 2, 3, 3, 4, 5, 6, 7, 8):
        outbox.push(seq, message(seq))
    await settle(outbox)
    assert socket.seqs() == list(range(1, 9))
    assert all(len(json.loads(t).get("frames", [None])) <= 3 for t in socket.sent)


async def test_a_batched_catch_up_is_sent_in_batches(monkeypatch: Any) -> None:
    monkeypatch.setattr(batching, "BATCH_MAX_FRAMES", 4)
    socket = FakeSocket(stored={s: message(s) for s in range(1, 11)})
    outbox = make(socket, batch=True)
    outbox.catch_up_to = 10
    outbox.start()
    await settle(outbox)
    assert socket.seqs() == list(range(1, 11))
    assert [len(json.loads(t)["frames"]) for t in socket.sent[:2]] == [4, 4]


async def test_stop_cancels_a_waiting_send() -> None:
    socket = FakeSocket()
    outbox = make(socket)
    outbox.start()
    socket.hold()
    outbox.push(1, message(1))
    await asyncio.sleep(0)
    task = outbox._task
    assert task is not None
    outbox.stop()
    await asyncio.sleep(0)
    assert task.cancelled()
    socket.release()
    outbox.push(2, message(2))
    await settle(outbox)
    assert socket.sent == []


# start_eagerly on its own.


async def test_a_coroutine_that_never_waits_runs_to_the_end_at_once() -> None:
    done: list[int] = []

    async def work() -> None:
        done.append(1)

    assert start_eagerly(work(), name="t") is None
    assert done == [1]


async def test_a_coroutine_that_waits_is_finished_by_a_task() -> None:
    gate = asyncio.Event()
    steps: list[str] = []

    async def work() -> None:
        steps.append("before")
        await gate.wait()
        await asyncio.sleep(0)
        steps.append("after")

    task = start_eagerly(work(), name="t")
    assert steps == ["before"] and task is not None
    gate.set()
    await task
    assert steps == ["before", "after"]


@pytest.mark.parametrize("before_its_first_step", [True, False])
async def test_cancelling_the_task_cancels_the_coroutine(before_its_first_step: bool) -> None:
    gate = asyncio.Event()
    cleaned: list[bool] = []

    async def work() -> None:
        try:
            await gate.wait()
        finally:
            cleaned.append(True)

    task = start_eagerly(work(), name="t")
    assert task is not None
    if not before_its_first_step:
        await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and cleaned == [True]


async def test_a_store_that_fails_a_fill_closes_the_socket_to_resume_later() -> None:
    socket = FakeSocket()
    socket.store_down = True
    outbox = make(socket)
    outbox.catch_up_to = 5
    outbox.start()
    outbox.push(6, message(6))
    await settle(outbox)
    assert socket.sent == []
    assert socket.closed == (protocol.TRY_AGAIN_LATER, protocol.STORE_UNAVAILABLE)


async def test_fills_run_in_the_outboxes_own_task() -> None:
    """The eager first step runs outside any task; the store is read inside one."""
    socket = FakeSocket(stored={1: message(1), 2: message(2)})
    outbox = make(socket)
    outbox.catch_up_to = 2
    outbox.push(3, message(3))
    loop = asyncio.get_running_loop()
    loop.call_soon(outbox.start)  # started from a plain callback
    await settle(outbox)
    assert socket.seqs() == [1, 2, 3]
    (task,) = socket.fetched_in
    assert task is not None and task is not asyncio.current_task()


async def test_batches_count_utf8_bytes(monkeypatch: Any) -> None:
    monkeypatch.setattr(batching, "BATCH_MAX_BYTES", 10_000)
    socket = FakeSocket()
    outbox = make(socket, batch=True)
    outbox.start()
    wide = "\u4e2d" * 1000  # 1,000 characters, 3,000 bytes in UTF-8
    for seq in range(1, 11):
        outbox.push(
            seq, json.dumps({"type": "message", "seq": seq, "data": wide}, ensure_ascii=False)
        )
    await settle(outbox)
    assert socket.seqs() == list(range(1, 11))
    assert all(len(text.encode()) <= 10_000 for text in socket.sent)
    assert len(socket.sent) > 1


async def test_a_replay_in_batches_counts_utf8_bytes(monkeypatch: Any) -> None:
    monkeypatch.setattr(batching, "BATCH_MAX_BYTES", 10_000)
    wide = "\u00e9" * 2000  # 2,000 characters, 4,000 bytes
    stored = {
        s: json.dumps({"type": "message", "seq": s, "data": wide}, ensure_ascii=False)
        for s in range(1, 8)
    }
    socket = FakeSocket(stored=stored)
    outbox = make(socket, batch=True)
    outbox.catch_up_to = 7
    outbox.start()
    await settle(outbox)
    assert socket.seqs() == list(range(1, 8))
    assert all(len(text.encode()) <= 10_000 for text in socket.sent)


async def test_cancelling_before_the_first_step_cancels_what_it_waits_for() -> None:
    inner = asyncio.get_running_loop().create_future()

    async def work() -> None:
        await inner

    task = start_eagerly(work(), name="t")
    assert task is not None
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and inner.cancelled()
