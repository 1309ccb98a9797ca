"""A controlled run on the real (tiny, CPU) backend, killed with SIGKILL at a random decision and
resumed, ends with the same decision log and summary as an uninterrupted run (wall-clock fields
excepted): the backend's weights, optimizer, data position and RNGs are all in the run checkpoint."""

from __future__ import annotations

import json
import shutil

import numpy as np

from agents.cli import main
from agents.runner import CHECKPOINT_FILE
from tests.agents.kill_driver import masked, run_driver
from tests.distill_backend.conftest import TINY_KWARGS

KWARGS = {**TINY_KWARGS, "total_updates": 8, "hold_window": 2}  # 4 decisions


def _outputs(run_dir):
    log = (run_dir / "decisions.jsonl").read_text()
    return masked(log), masked((run_dir / "summary.json").read_text()), len(log.splitlines())


def test_sigkill_then_resume_on_the_tiny_backend_matches_the_uninterrupted_run(tiny_checkpoint, tmp_path):
    args = ["run", "--env", "ATESD-Qwen3-v0", "--agent", "beta", "--env-kwargs", json.dumps(KWARGS),
            "--no-progress", "--no-plot", "--checkpoint-every", "1", "--out", str(tmp_path / "out")]
    assert main(args) == 0
    expected = _outputs(tmp_path / "out" / "beta_seed0")
    assert expected[2] == 4
    shutil.move(tmp_path / "out" / "beta_seed0", tmp_path / "ref")
    decision = int(np.random.default_rng(5).integers(2, 5))  # killed during this decision (1-based)
    killed = run_driver(args, decision=decision)  # ATESD_CACHE_DIR (the tiny cache) is inherited
    assert killed.returncode == -9, killed.stderr[-2000:]
    partial = tmp_path / "out" / "beta_seed0.partial"
    assert (partial / CHECKPOINT_FILE).is_file()
    assert len((partial / "decisions.jsonl").read_text().splitlines()) == decision - 1
    assert main([*args, "--resume"]) == 0
    assert _outputs(tmp_path / "out" / "beta_seed0") == expected, f"killed during decision {decision}"
