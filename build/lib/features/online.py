"""The online feature path: one scoring request (raw ids) → the scoring graph's input arrays.

Same vocabularies, same transforms and same truncation as offline preparation: raw values are
looked up as strings (unknown → OOV, missing → OOV), the history is ordered by time (stable) and
cut to its most recent L behaviours, context hour/weekday come from the impression time, and the
dense features come from ``features.transforms.dense_features``. numpy only, no torch, no polars
per request (vocabularies become dicts once, at load time).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from features.schema import OOV_ID, FeatureMap, Role
from features.transforms import TIME_CONTEXT, dense_features, time_context_values
from features.vocab import MISSING, Vocab


class RequestError(ValueError):
    """A request that cannot be scored; the message says which field and why."""


@dataclass(frozen=True)
class FeatureSpace:
    """What the online path needs from a serving folder: feature map and vocabulary dicts."""

    fmap: FeatureMap
    lookups: dict[str, dict[str, int]]
    max_len: int

    @classmethod
    def load(cls, folder: str | Path) -> FeatureSpace:
        """From a prepared or serving folder; histories keep the data's L most recent behaviours,
        as offline preparation did (the model then keeps its own, possibly shorter, L)."""
        folder = Path(folder)
        fmap = FeatureMap.load(folder / "feature_map.json")
        lookups = {name: Vocab.load(name, folder / "vocab" / f"{name}.parquet").lookup()
                   for name in fmap.vocab_sizes()}
        return cls(fmap, lookups, fmap.max_seq_len)

    @property
    def time_context(self) -> tuple[str, ...]:
        fields = (self.fmap.extra or {}).get("time_context_fields")
        names = [f.name for f in self.fmap.by_role(Role.CONTEXT)]
        return tuple(fields) if fields is not None else tuple(n for n in names if n in TIME_CONTEXT)

    def history_fields(self) -> dict[str, str]:
        """Behaviour field in the request (the vocabulary name) → graph input (``hist_<name>``)."""
        return {f.vocab: f.name for f in self.fmap.by_role(Role.SEQ)}

    def candidate_fields(self) -> dict[str, str]:
        return {f.name: f.vocab for f in self.fmap.by_role(Role.TARGET)}

    def encode(self, vocab: str, values: list) -> np.ndarray:
        table = self.lookups[vocab]
        return np.array([table.get(MISSING if v is None else str(v), OOV_ID) for v in values], dtype=np.int64)


def _ordered_history(history: list[dict], max_len: int) -> list[dict]:
    order = sorted(range(len(history)), key=lambda k: history[k]["ts"])  # stable: ties keep request order
    return [history[k] for k in order][-max_len:] if max_len else []


def encode_request(space: FeatureSpace, request: dict) -> dict[str, np.ndarray]:
    """Graph inputs for one user (B = 1) and its C candidates.

    Args:
        request: ``user`` {profile field: raw}, ``context`` {context field: raw}, ``timestamp`` (unix s),
            ``history`` [{behaviour field: raw, ``ts``: unix s}], ``candidates`` [{target field: raw}].
            Validation of types and limits happens before (the service's schema); missing optional
            fields are encoded as OOV.

    Returns:
        arrays named and shaped as ``serving.graph.graph_inputs`` with B = 1, L = max(len, 1).
    """
    fmap, ts = space.fmap, int(request["timestamp"])
    out: dict[str, np.ndarray] = {}
    for f in fmap.by_role(Role.USER):
        out[f.name] = space.encode(f.vocab, [request.get("user", {}).get(f.name)])
    time_ctx = time_context_values(np.array([ts]), space.time_context)
    for f in fmap.by_role(Role.CONTEXT):
        raw = time_ctx[f.name].tolist() if f.name in time_ctx else [request.get("context", {}).get(f.name)]
        out[f.name] = space.encode(f.vocab, raw)
    history = _ordered_history(request.get("history", []), space.max_len)
    n = len(history)
    width = max(n, 1)  # the graph needs at least one history slot; hist_len = 0 masks it
    for vocab, name in space.history_fields().items():
        ids = np.zeros((1, width), dtype=np.int64)
        ids[0, :n] = space.encode(vocab, [h.get(vocab) for h in history])
        out[name] = ids
    stamps = np.zeros((1, width), dtype=np.int64)
    stamps[0, :n] = [int(h["ts"]) for h in history]
    out[fmap.by_role(Role.SEQ_TIME)[0].name] = stamps
    out["hist_len"] = np.array([n], dtype=np.int64)
    dense = dense_features(np.array([n]), np.array([ts]), stamps[:, max(n - 1, 0)])
    out["dense"] = np.stack([dense[f.name] for f in fmap.by_role(Role.DENSE)], axis=1).astype(np.float32)
    for name, vocab in space.candidate_fields().items():
        out[name] = space.encode(vocab, [c.get(name) for c in request["candidates"]]).reshape(1, -1)
    out[fmap.by_role(Role.TARGET_TIME)[0].name] = np.array([ts], dtype=np.int64)
    return out
