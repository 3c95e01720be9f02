"""Export the incremental form of a model as two ONNX graphs, behind a parity gate.

``append.onnx``: state + one behaviour per row → new state (``state.<key>`` in, ``next.<key>`` out);
``score_state.onnx``: state + profile/context/dense + candidates → calibrated pCTR [B, C];
``state_init.npz``: the empty state of one user (plain numpy arrays, no pickle), so the service makes
states without torch. Only a model built with ``incremental=True`` over an O(1)-state recurrent mixer
has this form. Parity: onnxruntime replays recorded histories (an empty one, odd lengths) through both
graphs and must match PyTorch's states and scores within ``PARITY_ATOL``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from features.schema import FeatureMap
from pipelines.onnx_session import PARITY_ATOL, ParityError, session
from serving.graph import (
    APPEND_GRAPH,
    OUTPUT,
    STATE_IN,
    STATE_INIT,
    STATE_OUT,
    STATE_SCORE_GRAPH,
    append_inputs,
    state_score_inputs,
)
from suan.models.ctr import CTRModel
from suan.models.incremental import IncrementalCTR


def has_incremental_form(model: CTRModel) -> bool:
    """Built with ``incremental=True`` and its state does not grow with the history."""
    return bool(getattr(model.cfg, "incremental", False)) and not IncrementalCTR(model).state_grows


class AppendGraph(nn.Module):
    """Positional wrapper: ``(*state, *append_inputs) → (*new state)`` in ``keys`` order."""

    def __init__(self, inc: IncrementalCTR, keys: list[str], names: list[str]) -> None:
        super().__init__()
        self.inc, self.keys, self.names = inc, keys, names

    def forward(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        state = dict(zip(self.keys, tensors[:len(self.keys)], strict=True))
        new = self.inc.append(state, dict(zip(self.names, tensors[len(self.keys):], strict=True)))
        return tuple(new[k] for k in self.keys)


class StateScoreGraph(nn.Module):
    """Positional wrapper: ``(*state, *state_score_inputs) → pCTR [B, C]``."""

    def __init__(self, inc: IncrementalCTR, keys: list[str], names: list[str]) -> None:
        super().__init__()
        self.inc, self.keys, self.names = inc, keys, names

    def forward(self, *tensors: Tensor) -> Tensor:
        state = dict(zip(self.keys, tensors[:len(self.keys)], strict=True))
        batch = dict(zip(self.names, tensors[len(self.keys):], strict=True))
        return self.inc.model.probabilities(self.inc.score(state, batch))  # [B, C]


def _export(graph: nn.Module, args: tuple[Tensor, ...], names: list[str], outputs: list[str], dims: list[dict],
            path: Path) -> None:
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(graph, args, dynamo=True, dynamic_shapes=(tuple(dims),), input_names=names,
                                    output_names=outputs, optimize=True, verbose=False)
    program.save(str(path))


def recorded_histories(fmap: FeatureMap, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Parity cases: (B, behaviours, C) = (1, 0, 1), (2, 1, 5), (3, 7, 13) with valid ids, sorted times."""
    rng = np.random.default_rng(seed)
    cases = []
    for B, n, C in ((1, 0, 1), (2, 1, 5), (3, 7, 13)):
        case: dict[str, np.ndarray] = {"n": np.array(n)}
        for gi in (*append_inputs(fmap), *state_score_inputs(fmap)):
            shape = tuple({"B": B, "C": C, "F": len(fmap.by_role("dense"))}[d] for d in gi.shape)
            if gi.name == "dense":
                case[gi.name] = rng.normal(size=shape).astype(np.float32)
            elif gi.name.endswith("_ts"):
                case[gi.name] = np.full(shape, 1_600_000_000, dtype=np.int64)
            elif gi.name.startswith("hist_"):
                case[gi.name] = rng.integers(0, fmap.field(gi.name).vocab_size, size=(B, max(n, 1))).astype(np.int64)
            else:
                case[gi.name] = rng.integers(0, fmap.field(gi.name).vocab_size, size=shape).astype(np.int64)
        case["hist_ts"] = 1_600_000_000 + np.cumsum(rng.integers(0, 10**5, size=(B, max(n, 1))), axis=1)
        case["target_ts"] = case["hist_ts"][:, -1] + 3600
        cases.append(case)
    return cases


def export_incremental(model: CTRModel, fmap: FeatureMap, folder: Path) -> list[dict]:
    """Write the two graphs and the empty state into ``folder``, checked by :func:`parity_incremental`.

    Returns:
        the parity report (raises :class:`~pipelines.onnx_session.ParityError` beyond the tolerance).
    """
    inc = IncrementalCTR(model.eval())
    init = inc.init_state(1)
    keys = list(init)
    np.savez(folder / STATE_INIT, **{k: v.numpy() for k, v in init.items()})
    batch = {k: torch.from_numpy(v) for k, v in recorded_histories(fmap)[2].items()}
    state = {k: v.expand(3, *v.shape[1:]).clone() for k, v in init.items()}
    B, C = torch.export.Dim("B", min=1), torch.export.Dim("C", min=1)
    state_dims = [{0: B} for _ in keys]
    names = [gi.name for gi in append_inputs(fmap)]
    step = {n: batch[n][:, 0] if batch[n].dim() == 2 else batch[n] for n in names}
    _export(AppendGraph(inc, keys, names), (*state.values(), *(step[n] for n in names)),
            [STATE_IN + k for k in keys] + names, [STATE_OUT + k for k in keys],
            state_dims + [{0: B} for _ in names], folder / APPEND_GRAPH)
    specs = state_score_inputs(fmap)
    dims = [{k: {"B": B, "C": C}[d] for k, d in enumerate(gi.shape) if d in ("B", "C")} for gi in specs]
    _export(StateScoreGraph(inc, keys, [gi.name for gi in specs]), (*state.values(), *(batch[gi.name] for gi in specs)),
            [STATE_IN + k for k in keys] + [gi.name for gi in specs], [OUTPUT], state_dims + dims,
            folder / STATE_SCORE_GRAPH)
    return parity_incremental(inc, fmap, folder)


def _state_diff(got: np.ndarray, want: np.ndarray) -> float:
    """Max |got - want| relative to the entry's scale (running sums grow with the history)."""
    return float(np.abs(got - want).max() / max(1.0, float(np.abs(want).max())))


def parity_incremental(inc: IncrementalCTR, fmap: FeatureMap, folder: Path) -> list[dict]:
    """Max |ORT - torch| of the scores and of the states (relative to their scale, when above 1) over each
    recorded history; raises :class:`ParityError` when either is beyond ``PARITY_ATOL``."""
    append, score = session(folder / APPEND_GRAPH), session(folder / STATE_SCORE_GRAPH)
    init = dict(np.load(folder / STATE_INIT))
    names, specs = [gi.name for gi in append_inputs(fmap)], [gi.name for gi in state_score_inputs(fmap)]
    report = []
    for case in recorded_histories(fmap):
        B = case["target_ts"].shape[0]
        ort_state = {k: np.repeat(v, B, axis=0) for k, v in init.items()}
        torch_state = {k: torch.from_numpy(v) for k, v in ort_state.items()}
        diff = 0.0
        with torch.no_grad():
            for t in range(int(case["n"])):
                step = {n: case[n][:, t] if case[n].ndim == 2 else case[n] for n in names}
                outs = append.run(None, {**{STATE_IN + k: v for k, v in ort_state.items()}, **step})
                ort_state = dict(zip(init, outs, strict=True))
                torch_state = inc.append(torch_state, {n: torch.from_numpy(v) for n, v in step.items()})
                diff = max(diff, *(_state_diff(ort_state[k], torch_state[k].numpy()) for k in init))
            want = inc.model.probabilities(inc.score(torch_state, {n: torch.from_numpy(case[n]) for n in specs}))
        got = score.run([OUTPUT], {**{STATE_IN + k: v for k, v in ort_state.items()}, **{n: case[n] for n in specs}})[0]
        score_diff = float(np.abs(got - want.numpy()).max())
        report.append({"batch": B, "behaviours": int(case["n"]), "candidates": int(got.shape[1]),
                       "max_abs_diff": score_diff, "state_max_rel_diff": diff})
        diff = max(diff, score_diff)
        if not diff <= PARITY_ATOL:
            raise ParityError(f"incremental graphs differ from PyTorch by {diff:.3g} > {PARITY_ATOL} on {report[-1]}")
    return report
