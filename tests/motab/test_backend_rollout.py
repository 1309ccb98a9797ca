"""``rollout="motab"`` on the real backend (the ATESD x MOTAB composition): runs through gym.make,
trains the student, keeps the teacher, stays deterministic; bad configs are named; plain is unchanged."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from distill_backend.motab.config import MotabConfig
from exposure_env.errors import ConfigError
from tests.distill_backend.conftest import TINY_KWARGS

# A high boundary makes the tiny warm start breach often, so the SFT half of the loss is exercised.
MOTAB_KWARGS = dict(TINY_KWARGS, rollout="motab", motab=dict(eps0=0.9, teacher_max_new_tokens=24))


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


def test_gym_make_motab_trains_the_student_and_keeps_the_teacher(tiny_cache, tiny_checkpoint):
    import gymnasium as gym

    import exposure_env  # noqa: F401  (registers the ids)

    env = gym.make("ATESD-Qwen3-v0", total_updates=4, hold_window=2, **MOTAB_KWARGS)
    backend = env.unwrapped.backend
    assert backend.config.motab == MotabConfig.tiny(eps0=0.9, teacher_max_new_tokens=24)
    env.reset(seed=0)
    student_before, teacher_before = _params(backend.model), _params(backend.teacher)
    obs, reward, terminated, truncated, info = env.step(np.array([0.5], dtype=np.float32))
    assert np.isfinite(obs).all() and np.isfinite(reward) and info["updates_done"] == 2

    stats = backend._stats
    assert all(np.isfinite(v) for v in stats) and stats.loss >= 0 and stats.grad_norm > 0
    assert 0 <= stats.mismatch <= 1 and 0 <= stats.confidence <= 1
    assert any(not torch.equal(a, b) for a, b in zip(student_before, _params(backend.model)))
    assert all(torch.equal(a, b) for a, b in zip(teacher_before, _params(backend.teacher)))

    records = backend.last_motab_records
    rows = backend.config.questions_per_update * backend.config.rollouts_per_question
    assert len(records) == rows
    breached = [r for r in records if r.breach_step is not None]
    assert breached, "eps0=0.9 should make the tiny student stray"
    for r in breached:  # rewound to the root cause, then the revise marker and the teacher's text
        assert 0 <= r.root_cause <= r.breach_step and backend.config.motab.revise_marker in r.stitched_text
    env.close()


def test_motab_is_deterministic_and_resumes_identically(tiny_config, tiny_checkpoint):
    from distill_backend.backend import Qwen3DistillBackend

    config = dataclasses.replace(tiny_config, rollout="motab", motab=MotabConfig.tiny(eps0=0.9,
                                                                                       teacher_max_new_tokens=24))
    backend = Qwen3DistillBackend(config)
    backend.reset(seed=4)
    backend.run_window(0.5, 1)
    state = backend.state_dict()
    continued = backend.run_window(0.5, 1)

    fresh = Qwen3DistillBackend(config)
    fresh.load_state_dict(state)
    resumed = fresh.run_window(0.5, 1)
    assert resumed.stats == continued.stats
    assert all(torch.equal(a, b) for a, b in zip(_params(backend.model), _params(fresh.model)))
    assert [r.stitched_text for r in fresh.last_motab_records] == [r.stitched_text for r in backend.last_motab_records]


def test_rollout_plain_equals_the_default(tiny_config, tiny_checkpoint):
    from distill_backend.backend import Qwen3DistillBackend
    from distill_backend.config import backend_config_from_kwargs

    assert tiny_config.rollout == "plain"
    default, plain = Qwen3DistillBackend(tiny_config), Qwen3DistillBackend(
        backend_config_from_kwargs({**TINY_KWARGS, "rollout": "plain"}))
    assert default.reset(seed=1) == plain.reset(seed=1)
    assert default.run_window(0.5, 1).stats == plain.run_window(0.5, 1).stats
    assert plain.last_motab_records == []


def test_bad_motab_configs_name_the_field(tiny_config, tiny_cache):
    from distill_backend.config import backend_config_from_kwargs

    with pytest.raises(ConfigError, match="rollout.*'greedy'"):
        backend_config_from_kwargs({**TINY_KWARGS, "rollout": "greedy"})
    with pytest.raises(ConfigError, match="motab_sft_weight"):
        dataclasses.replace(tiny_config, motab_sft_weight=-1.0)
    with pytest.raises(ConfigError, match="motab"):
        backend_config_from_kwargs({**TINY_KWARGS, "motab": {"eps": 0.1}})
    with pytest.raises(ConfigError, match="eps0"):
        backend_config_from_kwargs({**TINY_KWARGS, "motab": {"eps0": 0.0}})
    with pytest.raises(ConfigError, match="motab"):
        dataclasses.replace(tiny_config, motab={"eps0": 0.5})
