"""The scoring graph's contract: named inputs in a fixed order, calibrated scores out.

Used by the exporter (torch side) and by the service (numpy side, no torch import), so both agree
on names, order, dtypes and shapes. B = users in the request batch, L = history slots, C = candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

from features.schema import FeatureMap, Role

OUTPUT = "scores"


@dataclass(frozen=True)
class GraphInput:
    """One input of the scoring graph.

    Args:
        name: input name (a feature map field, ``dense`` or ``hist_len``).
        dtype: ``int64`` or ``float32``.
        shape: symbolic shape, letters from B, L, C, F (dense width).
    """

    name: str
    dtype: str
    shape: tuple[str, ...]


def graph_inputs(fmap: FeatureMap) -> list[GraphInput]:
    """Inputs in the order the graph takes them."""
    out = [GraphInput(f.name, "int64", ("B",)) for f in (*fmap.by_role(Role.USER), *fmap.by_role(Role.CONTEXT))]
    out.append(GraphInput("dense", "float32", ("B", "F")))
    out += [GraphInput(f.name, "int64", ("B", "L")) for f in fmap.by_role(Role.SEQ)]
    out.append(GraphInput(fmap.by_role(Role.SEQ_TIME)[0].name, "int64", ("B", "L")))
    out.append(GraphInput("hist_len", "int64", ("B",)))
    out += [GraphInput(f.name, "int64", ("B", "C")) for f in fmap.by_role(Role.TARGET)]
    out.append(GraphInput(fmap.by_role(Role.TARGET_TIME)[0].name, "int64", ("B",)))
    return out


# the incremental form (``pipelines.onnx_export_incremental``): an append-step graph and a score-from-state graph
APPEND_GRAPH, STATE_SCORE_GRAPH, STATE_INIT = "append.onnx", "score_state.onnx", "state_init.npz"
STATE_IN, STATE_OUT = "state.", "next."  # graph-name prefixes of a state entry, in and out


def append_inputs(fmap: FeatureMap) -> list[GraphInput]:
    """Per-behaviour inputs of the append graph (after the state): profile, behaviour fields, its time."""
    out = [GraphInput(f.name, "int64", ("B",)) for f in fmap.by_role(Role.USER)]
    out += [GraphInput(f.name, "int64", ("B",)) for f in fmap.by_role(Role.SEQ)]
    return out + [GraphInput(fmap.by_role(Role.SEQ_TIME)[0].name, "int64", ("B",))]


def state_score_inputs(fmap: FeatureMap) -> list[GraphInput]:
    """Inputs of the score-from-state graph (after the state): profile, context, dense, candidates, time."""
    out = [GraphInput(f.name, "int64", ("B",)) for f in (*fmap.by_role(Role.USER), *fmap.by_role(Role.CONTEXT))]
    out.append(GraphInput("dense", "float32", ("B", "F")))
    out += [GraphInput(f.name, "int64", ("B", "C")) for f in fmap.by_role(Role.TARGET)]
    return out + [GraphInput(fmap.by_role(Role.TARGET_TIME)[0].name, "int64", ("B",))]
