#!/usr/bin/env bash
# one entry point that does its own set-up: `bash dev.sh demo` runs the main job, `bash dev.sh test` the suite.
# it creates .venv with python3.11, installs torch first (exact pin: a range would pull a CUDA build),
# then the project with its dev extra; a stamp skips the install when pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")"
VENV=${SUAN_VENV:-.venv}
PY=${SUAN_PYTHON:-$(command -v python3.11 || command -v python3)}

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
  fi
  local stamp="$VENV/.suan-install-stamp"
  local want
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    # SUAN_TORCH_INDEX lets a user pick a wheel index (e.g. the CPU or a CUDA one) for torch
    if [ -n "${SUAN_TORCH_INDEX:-}" ]; then
      "$VENV/bin/python" -m pip install --quiet torch==2.13.0 --index-url "$SUAN_TORCH_INDEX"
    else
      "$VENV/bin/python" -m pip install --quiet torch==2.13.0
    fi
    "$VENV/bin/python" -m pip install --quiet -e ".[dev]"
    echo "$want" > "$stamp"
  fi
}

export MLFLOW_DISABLE_TELEMETRY=true
cmd=${1:-help}
shift || true
case "$cmd" in
  demo)
    setup
    exec "$VENV/bin/suan" demo "$@"
    ;;
  test)
    setup
    # one single-threaded test process per core (pytest-xdist; worksteal evens out the minute-long tests):
    # SUAN_TEST_WORKERS=0 runs them in this process. Cores counted before OMP_NUM_THREADS is set: nproc obeys it.
    workers=${SUAN_TEST_WORKERS:-$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)}
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
    exec "$VENV/bin/python" -m pytest -n "$workers" --dist worksteal "$@"
    ;;
  setup)
    setup
    ;;
  *)
    echo "usage: bash dev.sh {demo|test|setup} [args...]" >&2
    exit 2
    ;;
esac
