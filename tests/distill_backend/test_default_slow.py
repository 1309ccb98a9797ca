"""The real tiny default (cached warm start, built on first use: minutes on 2 shared cores)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_default_warm_start_is_partial_and_reads_the_reference():
    from distill_backend.warmstart import WarmStartConfig, ensure_warmstart, load_report

    report = load_report(ensure_warmstart(WarmStartConfig()))
    low, high = WarmStartConfig().accuracy_window
    assert report.in_window and low <= report.student_accuracy <= high
    # the teacher role is clearly better than the student role at every exposure
    assert min(report.teacher_accuracy.values()) > report.student_accuracy + 0.1


def test_default_env_passes_the_checker_and_trains():
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    import exposure_env  # noqa: F401

    env = gym.make("ATESD-Qwen3-v0", total_updates=4, hold_window=2, eval_size=20, eval_k=2)
    check_env(env.unwrapped, skip_render_check=True)
    env.reset(seed=0)
    before = [p.detach().clone() for p in env.unwrapped.backend.model.parameters()]
    _, reward, _, _, info = env.step(np.array([0.5], dtype=np.float32))
    assert np.isfinite(reward) and info["updates_done"] == 2
    after = list(env.unwrapped.backend.model.parameters())
    assert any(not (a == b).all() for a, b in zip(before, after))
