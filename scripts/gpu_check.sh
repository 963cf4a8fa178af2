#!/usr/bin/env bash
# One prepared GPU check (tests, CUDA benchmarks, a 1-epoch fit) with one summary; see
# scripts/gpu_check.py for the options. Without CUDA it only checks that the commands parse.
set -uo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" scripts/gpu_check.py "$@"
