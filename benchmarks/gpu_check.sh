#!/usr/bin/env bash
# The Triton kernels' GPU check (issue 7), for a lent GPU machine: runs on that image's own python3
# (torch/triton preinstalled there; nothing is installed), from the repository root:
#   OUT=/some/dir bash benchmarks/gpu_check.sh
# Writes under $OUT: versions.txt, tests.log (the triton tests compiled, the gpu-marked bf16 ones included),
# attention_bf16.md (the harness, fwd+bwd, every pattern, L = 128 … 8192) and sparse_fwd.md (the sparse
# kernel's forward time as L grows at fixed k, r). About 6–8 minutes on an H200.
set -uo pipefail
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
PY=${PYTHON:-python3}
status=0
$PY - <<'PY' 2>&1 | tee "$OUT/versions.txt"
import torch, triton
print("torch", torch.__version__, "triton", triton.__version__, "cuda", torch.version.cuda,
      torch.cuda.get_device_name() if torch.cuda.is_available() else "NO CUDA")
PY
# the compiled kernels against the reference (fp32 tiny shapes + gpu-marked bf16 realistic shapes)
timeout 240 $PY -m pytest -q -p no:cacheprovider tests/suan/ops/triton 2>&1 | tee "$OUT/tests.log" || status=1
timeout 300 $PY -m benchmarks.attention_bench --device cuda --dtype bf16 --lengths 128,512,1024,2048,4096,8192 \
  --out "$OUT/attention_bf16.md" 2>&1 | tail -n 80 || status=1
timeout 120 $PY -m benchmarks.attention_bench --device cuda --dtype bf16 --patterns local-dilated --fwd-only \
  --lengths 512,1024,2048,4096,8192 --out "$OUT/sparse_fwd.md" 2>&1 | tail -n 30 || status=1
exit $status
