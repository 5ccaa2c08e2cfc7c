"""pipeline.ingest.frame_meta: the header values kept per frame, and gaps in the mode sequence
number."""

from __future__ import annotations

import json

import pytest

from pipeline.ingest import frame_meta


def test_to_json_keeps_only_the_listed_values():
    meta = {"imager": "themis19", "sequence": 7, "readout_start": None, "exposure_options": "X=1"}
    assert json.loads(frame_meta.to_json(meta)) == {"sequence": 7, "exposure_options": "X=1"}
    assert frame_meta.to_json({"imager": "themis19"}) is None
    assert frame_meta.to_json({}) is None and frame_meta.to_json(None) is None


@pytest.mark.parametrize(
    "text, number",
    [
        ('{"sequence":2027380}', 2027380),
        ('{"exposure_end":"x"}', None),
        (None, None),
        ("not json", None),
        ('{"sequence":"7"}', None),
        ('{"sequence":true}', None),
        ("[1]", None),
    ],
)
def test_sequence_of(text, number):
    assert frame_meta.sequence_of(text) == number


@pytest.mark.parametrize(
    "frames, expected",
    [
        ([(0, 10), (1, 11), (2, 12)], (0, 0)),  # counts up by one: nothing dropped
        ([(0, 10), (1, 11), (2, 14), (3, 15)], (1, 2)),  # 12 and 13 dropped
        ([(2, 14), (0, 10), (1, 11), (3, 15)], (1, 2)),  # any order of arrival
        ([(0, 10), (2, 12), (3, 13)], (0, 0)),  # frame 1 unreadable (quarantined): no gap
        ([(0, 10), (2, 13)], (1, 1)),  # frame 1 unreadable and one exposure dropped
        ([(0, 10), (1, None), (2, 14)], (1, 2)),  # frame 1 unnumbered: 12, 13 dropped
        ([(0, 10), (1, 3), (2, 4)], (1, 0)),  # the counter restarted: a gap, none counted
        ([(0, 5)], (0, 0)),
        ([], (0, 0)),
    ],
)
def test_sequence_gaps(frames, expected):
    assert frame_meta.sequence_gaps(frames) == expected
