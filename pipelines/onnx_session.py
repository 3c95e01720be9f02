"""The parity gate's pieces shared by both exports: the tolerance, its error, a CPU ONNX Runtime session."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

PARITY_ATOL = 1e-5


class ParityError(RuntimeError):
    """onnxruntime and PyTorch disagree beyond the tolerance."""



def session(path: Path, threads: int = 1) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
