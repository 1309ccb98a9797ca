"""The prepared GPU check runs its CPU smoke mode end to end (the CUDA run needs a GPU machine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_small_cpu_mode(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "OUT": str(tmp_path), "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--dtype", "float32",
                           "--small", "--timed-updates", "2", "--warmup-updates", "1"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["finite"] and result["env"]["decisions"] == 2
    assert result["update"]["tokens_per_s"] > 0 and result["update"]["rows_per_update"] == 8
    fused = result["loss_memory"]["fused_float32"]
    unfused = result["loss_memory"]["unfused_float32"]
    assert fused["vocab"] == 4096 and fused["naive_bytes"] == 512 * 4096 * 4
    assert fused["working_bytes"] < unfused["working_bytes"]
