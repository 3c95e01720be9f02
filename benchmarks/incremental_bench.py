"""Incremental user state vs full recompute as the history grows (L = 100, 1000, 10 000).

A benchmark, not a test: every figure is a ratio against a baseline timed in the same run. For each
O(1)-state recurrent mixer, an incremental SUAN (``incremental=True``) scores C = 100 candidates for
one user after one new behaviour in two ways:
  full        the whole history of L behaviours through ``model(batch)`` (what /v1/score does);
  incremental one ``append`` of the new behaviour to the cached state, then ``score`` from it.
The run is correctness-gated: the incremental scores must equal the full recompute's (1e-4 relative,
fp32) at every L. The append alone and the state's size are printed too (neither grows with L).
``--onnx`` also exports the three graphs and times onnxruntime the same two ways (what the service runs).

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.incremental_bench --help
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.lightsuan_bench import bench_fmap, timed, user_batch
from serving.graph import APPEND_GRAPH, OUTPUT, STATE_IN, STATE_SCORE_GRAPH, graph_inputs, state_score_inputs
from suan.config import ModelConfig
from suan.mixers.registry import MIXERS as REGISTRY
from suan.models.ctr import build_model
from suan.models.incremental import IncrementalCTR

# every registered mixer whose state does not grow with the history
MIXERS = tuple(name for name, spec in REGISTRY.items() if spec.constant_state)
GATE_RTOL = 1e-4


def _state_after(inc: IncrementalCTR, batch: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    """The state after the first ``n`` behaviours of ``batch`` (one append each)."""
    fields = [*inc.model.embed.user_fields, *inc.model.embed.seq_fields, "hist_ts"]
    state = inc.init_state(1)
    for t in range(n):
        state = inc.append(state, _behaviour(batch, fields, t))
    return state


def _behaviour(batch: dict[str, torch.Tensor], fields: list[str], t: int) -> dict[str, torch.Tensor]:
    return {f: batch[f][:, t] if batch[f].dim() == 2 else batch[f] for f in fields}


def bench_mixer(mixer: str, args) -> list[dict]:
    fmap = bench_fmap(max(args.lengths))
    cfg = ModelConfig.from_grade("suan", args.grade, mixer=mixer, backend="torch", incremental=True)
    model = build_model(cfg, fmap).eval()
    inc = IncrementalCTR(model)
    fields = [*model.embed.user_fields, *model.embed.seq_fields, "hist_ts"]
    onnx = _export_all(model, fmap, Path(tempfile.mkdtemp(prefix="incbench-"))) if args.onnx else None
    rows = []
    for L in args.lengths:
        batch = user_batch(fmap, L, args.candidates)
        batch["hist_ts"] = torch.arange(L).unsqueeze(0) * 600 + 1_600_000_000
        batch["target_ts"] = batch["hist_ts"][:, -1] + 60
        with torch.no_grad():
            before = _state_after(inc, batch, L - 1)  # the cached state before the newest behaviour
            newest = _behaviour(batch, fields, L - 1)
            want, got = model(batch), inc.score(inc.append(before, newest), batch)
            if not torch.allclose(got, want, rtol=GATE_RTOL, atol=GATE_RTOL * float(want.abs().max())):
                print(f"MISMATCH ({mixer}, L = {L}): incremental differs from full recompute by "
                      f"{float((got - want).abs().max()):.3g}")
                sys.exit(1)
            full = timed(lambda b=batch: model(b), args.repeats)
            step = timed(lambda s=before, e=newest, b=batch: inc.score(inc.append(s, e), b), args.repeats)
            only_append = timed(lambda s=before, e=newest: inc.append(s, e), args.repeats)
        state_bytes = sum(v.numel() * v.element_size() for v in before.values())
        row = dict(mixer=mixer, L=L, full=full, inc=step, append=only_append, state=state_bytes)
        if onnx is not None:
            row.update(_onnx_times(onnx, fmap, batch, {k: v.numpy() for k, v in before.items()}, fields, args))
        rows.append(row)
    return rows


def _export_all(model, fmap, folder: Path) -> dict:
    """The full scoring graph and the two incremental graphs of ``model`` as onnxruntime sessions."""
    from pipelines.onnx_export import export_onnx
    from pipelines.onnx_export_incremental import export_incremental
    from pipelines.onnx_session import session

    export_onnx(model, fmap, folder / "model.onnx")
    export_incremental(model, fmap, folder)
    return {name: session(folder / f) for name, f in (("full", "model.onnx"), ("append", APPEND_GRAPH),
                                                      ("score", STATE_SCORE_GRAPH))}


def _onnx_times(sessions: dict, fmap, batch: dict, state: dict, fields: list[str], args) -> dict:
    """onnxruntime: full graph over the history vs append graph + score-from-state graph."""
    feeds = {gi.name: batch[gi.name].numpy() for gi in graph_inputs(fmap)}
    step = {f: batch[f][:, -1].numpy() if batch[f].dim() == 2 else batch[f].numpy() for f in fields}
    score_in = {gi.name: batch[gi.name].numpy() for gi in state_score_inputs(fmap)}
    keys = list(state)

    def incremental() -> np.ndarray:
        new = sessions["append"].run(None, {**{STATE_IN + k: v for k, v in state.items()}, **step})
        return sessions["score"].run([OUTPUT], {**{STATE_IN + k: v for k, v in zip(keys, new, strict=True)},
                                                **score_in})[0]

    want = sessions["full"].run([OUTPUT], feeds)[0]
    if not np.allclose(incremental(), want, atol=1e-4, rtol=0):
        print("MISMATCH: onnxruntime incremental scores differ from the full graph's")
        sys.exit(1)
    return dict(ort_full=timed(lambda: sessions["full"].run([OUTPUT], feeds), args.repeats),
                ort_inc=timed(incremental, args.repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mixers", default=",".join(MIXERS), help="comma-separated recurrent mixers")
    parser.add_argument("--lengths", default="100,1000,10000", help="comma-separated history lengths L")
    parser.add_argument("--grade", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--onnx", action="store_true",
                        help="also export the graphs and time onnxruntime (full graph vs append + score graphs)")
    args = parser.parse_args()
    args.lengths = [int(x) for x in args.lengths.split(",")]
    torch.set_num_threads(args.threads)
    print(f"one append + score of {args.candidates} candidates vs full recompute, SUAN g{args.grade} incremental, "
          f"torch eager, {args.threads} thread(s), median of {args.repeats}")
    onnx_head = f"{'ORT full':>10}{'ORT incr':>10}{'ratio':>8}" if args.onnx else ""
    print(f"{'mixer':<15}{'L':>7}{'full ms':>10}{'incr ms':>10}{'full/incr':>11}{'append ms':>11}"
          f"{'state KiB':>11}{onnx_head}")
    for mixer in args.mixers.split(","):
        for r in bench_mixer(mixer, args):
            ort = (f"{r['ort_full'] * 1e3:>10.2f}{r['ort_inc'] * 1e3:>10.2f}{r['ort_full'] / r['ort_inc']:>7.1f}x"
                   if args.onnx else "")
            print(f"{r['mixer']:<15}{r['L']:>7}{r['full'] * 1e3:>10.2f}{r['inc'] * 1e3:>10.2f}"
                  f"{r['full'] / r['inc']:>10.1f}x{r['append'] * 1e3:>11.2f}{r['state'] / 1024:>11.1f}{ort}")


if __name__ == "__main__":
    main()
