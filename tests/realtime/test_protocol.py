"""Frames encoded by hand on hot paths match the models they stand for."""

from __future__ import annotations

import pytest

from api.realtime import protocol


@pytest.mark.parametrize("ref", [None, "c-1", ""])
@pytest.mark.parametrize("seq", [1, 2**31 - 1])
def test_ack_frame_matches_the_model(ref: str | None, seq: int) -> None:
    assert protocol.ack_frame(ref, seq) == protocol.encode(protocol.AckFrame(ref=ref, seq=seq))
