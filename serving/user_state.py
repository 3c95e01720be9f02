"""The stateful scoring path: per-user incremental states in a bounded LRU, run by onnxruntime only.

A serving folder exported from an incremental model (``pipelines.onnx_export_incremental``) carries an
append-step graph, a score-from-state graph and the empty state. ``POST /v1/users/{id}/events``
encodes raw behaviours with the same vocabularies as ``/v1/score`` and appends them one at a time;
``POST /v1/users/{id}/score`` scores candidates from the cached state, which equals ``/v1/score`` over
the same history (within the parity tolerance). States are kept for at most ``max_users`` users, the
least recently used evicted first; a state belongs to the model version that built it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from features.online import FeatureSpace, encode_request
from features.schema import Role
from features.transforms import dense_features
from serving.graph import (
    APPEND_GRAPH,
    OUTPUT,
    STATE_IN,
    STATE_INIT,
    STATE_SCORE_GRAPH,
    append_inputs,
    state_score_inputs,
)


@dataclass(frozen=True)
class IncrementalGraphs:
    """The two incremental graphs of a serving folder and the empty state of one user."""

    append: ort.InferenceSession
    score: ort.InferenceSession
    init: dict[str, np.ndarray]

    @classmethod
    def load(cls, folder: Path, options: ort.SessionOptions, providers: list[str]) -> IncrementalGraphs | None:
        """None when the folder has no incremental form (a model without an O(1) recurrent state)."""
        if not all((folder / f).exists() for f in (APPEND_GRAPH, STATE_SCORE_GRAPH, STATE_INIT)):
            return None
        with np.load(folder / STATE_INIT, allow_pickle=False) as init:
            state = {k: init[k] for k in init.files}
        return cls(ort.InferenceSession(str(folder / APPEND_GRAPH), options, providers=providers),
                   ort.InferenceSession(str(folder / STATE_SCORE_GRAPH), options, providers=providers), state)


@dataclass(frozen=True)
class UserState:
    """One user's cached state (immutable: an append makes a new one).

    Args:
        version: the model version that built it.
        profile: encoded user-profile ids, [1] each.
        tensors: the graphs' state entries (B = 1).
        behaviours: behaviours appended so far.
        last_ts: the latest behaviour's time.
    """

    version: str
    profile: dict[str, np.ndarray]
    tensors: dict[str, np.ndarray]
    behaviours: int
    last_ts: int


def encode_profile(space: FeatureSpace, user: dict) -> dict[str, np.ndarray]:
    return {f.name: space.encode(f.vocab, [user.get(f.name)]) for f in space.fmap.by_role(Role.USER)}


def append_events(graphs: IncrementalGraphs, space: FeatureSpace, state: UserState, events: list[dict]) -> UserState:
    """``state`` with ``events`` (raw, ordered by time, none before ``state.last_ts``) appended in order."""
    tensors = dict(state.tensors)
    time_field = space.fmap.by_role(Role.SEQ_TIME)[0].name
    for event in events:
        step = dict(state.profile)
        for vocab, name in space.history_fields().items():
            step[name] = space.encode(vocab, [event.get(vocab)])
        step[time_field] = np.array([int(event["ts"])], dtype=np.int64)
        feeds = {**{STATE_IN + k: v for k, v in tensors.items()}, **{gi.name: step[gi.name]
                                                                    for gi in append_inputs(space.fmap)}}
        tensors = dict(zip(graphs.init, graphs.append.run(None, feeds), strict=True))
    last_ts = int(events[-1]["ts"]) if events else state.last_ts
    return UserState(state.version, state.profile, tensors, state.behaviours + len(events), last_ts)


def score_state(graphs: IncrementalGraphs, space: FeatureSpace, state: UserState, request: dict) -> np.ndarray:
    """Scores [C] of raw ``candidates`` at ``timestamp`` with ``context``, from the user's state."""
    fmap, ts = space.fmap, int(request["timestamp"])
    # the same context and dense features as ``features.online.encode_request`` over the same history
    probe = {"user": {}, "context": request.get("context", {}), "timestamp": ts, "history": [],
             "candidates": request["candidates"]}
    arrays = {**encode_request(space, probe), **state.profile}
    dense = dense_features(np.array([state.behaviours]), np.array([ts]), np.array([state.last_ts]))
    arrays["dense"] = np.stack([dense[f.name] for f in fmap.by_role(Role.DENSE)], axis=1).astype(np.float32)
    feeds = {**{STATE_IN + k: v for k, v in state.tensors.items()},
             **{gi.name: arrays[gi.name] for gi in state_score_inputs(fmap)}}
    return graphs.score.run([OUTPUT], feeds)[0][0]


class UserStateCache:
    """At most ``max_users`` states, least recently used evicted first; thread-safe.

    Args:
        max_users: capacity (>= 1).
        on_evict: called once per evicted user. Default: None.
    """

    def __init__(self, max_users: int, on_evict=None) -> None:
        self.max_users, self.on_evict = max_users, on_evict
        self._states: OrderedDict[str, UserState] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._states)

    def get(self, user_id: str) -> UserState | None:
        with self._lock:
            state = self._states.get(user_id)
            if state is not None:
                self._states.move_to_end(user_id)
            return state

    def replace(self, user_id: str, expected: UserState | None, new: UserState) -> bool:
        """Store ``new`` if the user's state is still ``expected`` (False: another request changed it)."""
        evicted = 0
        with self._lock:
            if self._states.get(user_id) is not expected:
                return False
            self._states[user_id] = new
            self._states.move_to_end(user_id)
            while len(self._states) > self.max_users:
                self._states.popitem(last=False)
                evicted += 1
        if evicted and self.on_evict is not None:
            self.on_evict(evicted)
        return True

    def pop(self, user_id: str) -> UserState | None:
        with self._lock:
            return self._states.pop(user_id, None)
