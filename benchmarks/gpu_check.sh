#!/usr/bin/env bash
# GPU check of ATESD-Qwen3-v0 (CUDA + bf16, random-init Qwen3 of the 0.6B shape, 151,936-token
# vocabulary): env run finite, update tokens/s, fused-loss peak GPU memory against B x T x V.
# See benchmarks/gpu_check.py. One command, run from anywhere; about 2-4 minutes on one H100/H200.
#
# Needs python3 with CUDA torch, transformers, tokenizers, peft, numpy and scipy. Our other
# dependency, gymnasium, travels as wheels in .whl/ (an ignored folder; carry it). Prepare them
# once, in the repository root (gymnasium 1.4.0 requires numpy, cloudpickle, typing-extensions,
# farama-notifications; only gymnasium and farama-notifications are missing on the GPU image):
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl gymnasium==1.4.0 farama-notifications==0.0.4
#
# PYTHON overrides the interpreter (default python3). Output: $OUT/gpu_check.json (or benchmarks/results/gpu_check.json when OUT is unset); copy it to
# benchmarks/results/gpu_check.json and commit it. Extra arguments go to benchmarks.gpu_check
# (e.g. --device cpu --dtype float32 --small for the CPU smoke mode).
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"  # the interpreter with torch
if compgen -G ".whl/*.whl" > /dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
out_dir="${OUT:-benchmarks/results}"
export PYTHONUNBUFFERED=1
"$python" -m benchmarks.gpu_check --out "$out_dir/gpu_check.json" "$@"
echo "gpu_check: wrote $out_dir/gpu_check.json (commit it as benchmarks/results/gpu_check.json)"
