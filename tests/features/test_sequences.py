"""History windows and gathering: leakage properties on random logs."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from features.sequences import gather_ranges, group_starts, history_windows

logs = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 6)), min_size=0, max_size=60)


def _sorted(log):
    user = np.array([u for u, _ in log], dtype=np.int64)
    ts = np.array([t for _, t in log], dtype=np.int64)
    order = np.lexsort((np.arange(len(log)), ts, user))
    return user[order], ts[order]


@settings(max_examples=200, deadline=None)
@given(logs, st.integers(1, 5))
def test_strict_time_history_is_exactly_the_last_l_strictly_earlier_events(log, max_len):
    user, ts = _sorted(log)
    win = history_windows(user, ts, max_len, strict_time=True)
    for i in range(len(user)):
        earlier = [j for j in range(len(user)) if user[j] == user[i] and ts[j] < ts[i]]
        want = earlier[-max_len:]
        got = list(range(win.hist_start[i], win.hist_end[i]))
        assert got == want
        assert all(ts[j] < ts[i] and user[j] == user[i] for j in got)
        assert win.is_sample[i] == bool(earlier)


@settings(max_examples=200, deadline=None)
@given(logs, st.integers(1, 5))
def test_file_order_history_is_the_previous_events_of_the_user(log, max_len):
    user = np.sort(np.array([u for u, _ in log], dtype=np.int64))
    ts = np.zeros(len(user), dtype=np.int64)
    win = history_windows(user, ts, max_len, strict_time=False)
    for i in range(len(user)):
        earlier = [j for j in range(i) if user[j] == user[i]]
        assert list(range(win.hist_start[i], win.hist_end[i])) == earlier[-max_len:]
        assert win.is_sample[i] == bool(earlier)


def test_group_starts_marks_the_first_index_of_each_run():
    assert group_starts(np.array([3, 3, 5, 5, 5, 9])).tolist() == [0, 0, 2, 2, 2, 5]
    assert group_starts(np.array([], dtype=np.int64)).tolist() == []


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 6)), max_size=20))
def test_gather_ranges_concatenates_aranges(pairs):
    starts = np.array([s for s, _ in pairs], dtype=np.int64)
    lengths = np.array([n for _, n in pairs], dtype=np.int64)
    idx, offsets = gather_ranges(starts, lengths)
    want = [j for s, n in pairs for j in range(s, s + n)]
    assert idx.tolist() == want
    assert offsets.tolist() == [0, *np.cumsum(lengths).tolist()]
