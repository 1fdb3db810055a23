"""The catalogues themselves."""

from __future__ import annotations

from tests.e2e.adversarial.test_frames import FRAMES
from tests.e2e.adversarial.test_handshakes import HANDSHAKES
from tests.e2e.adversarial.test_raw_frames import RAW_FRAMES
from tests.e2e.adversarial.test_rest_access import REQUESTS as ACCESS
from tests.e2e.adversarial.test_rest_inputs import REQUESTS as INPUTS


def test_the_catalogue_is_big_enough() -> None:
    cases = [*HANDSHAKES, *ACCESS, *INPUTS, *FRAMES, *RAW_FRAMES]
    assert len(cases) >= 40
    for catalogue in (HANDSHAKES, ACCESS + INPUTS, FRAMES, RAW_FRAMES):
        ids = [c.id for c in catalogue]
        assert len(ids) == len(set(ids)), "case ids are unique"
