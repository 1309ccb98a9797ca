"""The real backend on a tiny model: updates, frozen teacher, save/restore, loading, bad inputs, gym."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from exposure_env.errors import ConfigError, DatasetError, ResetNeededError
from tests.distill_backend.conftest import TINY_KWARGS


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


def test_a_window_changes_the_student_and_keeps_the_frozen_teacher(backend):
    backend.reset(seed=0)
    student_before, teacher_before = _params(backend.model), _params(backend.teacher)
    result = backend.run_window(0.5, 3)
    assert result.stats.updates_done == 3 and not result.diverged
    assert len(result.trace.loss) == 3 and np.isfinite(np.stack(result.trace)).all()
    assert any(not torch.equal(a, b) for a, b in zip(student_before, _params(backend.model)))
    assert all(torch.equal(a, b) for a, b in zip(teacher_before, _params(backend.teacher)))
    stats = result.stats
    assert 0 <= stats.mismatch <= 1 and 0 <= stats.confidence <= 1 and stats.teacher_ref_logprob <= 0
    assert stats.loss >= 0 and stats.loss_tail >= 0 and stats.grad_norm > 0 and stats.probe_nll > 0
    assert 1 <= stats.rollout_length <= backend.config.max_new_tokens and 0 <= stats.score <= 1


def test_reset_restores_the_initial_student(backend):
    backend.reset(seed=0)
    initial = _params(backend.model)
    backend.run_window(1.0, 2)
    backend.reset(seed=1)
    assert all(torch.equal(a, b) for a, b in zip(initial, _params(backend.model)))


def test_same_seed_same_run_different_seed_different_run(backend):
    first = (backend.reset(seed=5), backend.run_window(0.25, 2))
    second = (backend.reset(seed=5), backend.run_window(0.25, 2))
    assert first[0] == second[0] and first[1].stats == second[1].stats
    backend.reset(seed=6)
    assert backend.run_window(0.25, 2).stats != first[1].stats


def test_save_restore_continues_identically(backend, tiny_config):
    from distill_backend.backend import Qwen3DistillBackend

    backend.reset(seed=3)
    backend.run_window(0.75, 2)
    state = backend.state_dict()
    continued = backend.run_window(0.75, 2)
    weights = _params(backend.model)

    fresh = Qwen3DistillBackend(tiny_config)  # a new process would start from a fresh backend too
    fresh.load_state_dict(state)
    resumed = fresh.run_window(0.75, 2)
    assert resumed.stats == continued.stats
    for name in resumed.trace._fields:
        np.testing.assert_array_equal(getattr(resumed.trace, name), getattr(continued.trace, name))
    assert all(torch.equal(a, b) for a, b in zip(weights, _params(fresh.model)))


def test_run_window_needs_reset_and_a_valid_alpha(backend):
    with pytest.raises(ResetNeededError):
        backend.run_window(0.5, 1)
    backend.reset(seed=0)
    for alpha in (-0.1, 1.5, float("nan")):
        with pytest.raises(ConfigError, match="reveal_ratio"):
            backend.run_window(alpha, 1)


@pytest.mark.parametrize("mode", ["current", "ema"])
def test_other_teacher_modes_run(tiny_config, tiny_checkpoint, mode):
    from distill_backend.backend import Qwen3DistillBackend

    b = Qwen3DistillBackend(dataclasses.replace(tiny_config, teacher=mode, teacher_ema_decay=0.5))
    b.reset(seed=0)
    teacher_before = None if b.teacher is None else _params(b.teacher)
    result = b.run_window(1.0, 2)
    assert np.isfinite(result.stats.loss)
    if mode == "ema":  # the EMA teacher follows the student
        assert any(not torch.equal(a, c) for a, c in zip(teacher_before, _params(b.teacher)))
    state = b.state_dict()
    assert (state["ema_teacher"] is not None) == (mode == "ema")


def test_checkpoint_directory_loads_like_the_tiny_default(tiny_config, tiny_checkpoint, tmp_path):
    from distill_backend.backend import Qwen3DistillBackend
    from distill_backend.models import load_causal_lm

    loaded = load_causal_lm(tiny_checkpoint, device="cpu", dtype="auto")
    assert loaded.dtype == torch.float32 and loaded.tokenizer.padding_side == "left"
    loaded.model.save_pretrained(tmp_path / "ckpt")
    loaded.tokenizer.save_pretrained(tmp_path / "ckpt")
    # The same divergence as the tiny default's recipe (a checkpoint path defaults to the paper's).
    from_path = Qwen3DistillBackend(dataclasses.replace(tiny_config, model=str(tmp_path / "ckpt"),
                                                        prompts=tiny_config.warmstart.prompts,
                                                        loss=tiny_config.effective_loss))
    default = Qwen3DistillBackend(tiny_config)
    assert from_path.reset(seed=2) == default.reset(seed=2)


def test_lora_trains_the_adapter_and_the_teacher_is_the_base_model(tiny_config, tiny_checkpoint):
    pytest.importorskip("peft")
    from distill_backend.backend import Qwen3DistillBackend

    b = Qwen3DistillBackend(dataclasses.replace(tiny_config, lora_rank=4, lora_alpha=8.0, lr=5e-2))
    assert b.teacher is None and all("lora" in n for n, p in b.model.named_parameters() if p.requires_grad)
    base = [p.detach().clone() for n, p in b.model.named_parameters() if not p.requires_grad]
    b.reset(seed=0)
    before = b._teacher_ref_logprob(1.0)
    b.run_window(1.0, 3)
    assert all(torch.equal(a, p) for a, p in zip(base, [p for n, p in b.model.named_parameters() if not p.requires_grad]))
    b._ref_logprob_cache.clear()  # score afresh: the adapter-disabled model must still be the base model
    assert b._teacher_ref_logprob(1.0) == pytest.approx(before, abs=1e-5)


def test_bad_inputs(tiny_config, tiny_checkpoint, tmp_path):
    from distill_backend.backend import Qwen3DistillBackend
    from distill_backend.config import backend_config_from_kwargs

    with pytest.raises(ConfigError, match="model"):
        Qwen3DistillBackend(dataclasses.replace(tiny_config, model=str(tmp_path / "missing")))
    with pytest.raises(ConfigError, match="loss"):
        dataclasses.replace(tiny_config, loss="kl_divergence")
    with pytest.raises(ConfigError, match="teacher"):
        dataclasses.replace(tiny_config, teacher="live")
    with pytest.raises(ConfigError, match="no_such_field"):
        backend_config_from_kwargs({**TINY_KWARGS, "no_such_field": 1})
    with pytest.raises(ConfigError, match="task"):
        backend_config_from_kwargs({**TINY_KWARGS, "task": {"levels": ["a"], "bogus": 1}})
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "1+1", "solution": "1+1=2\\n\\\\boxed{2}"}\n')
    with pytest.raises(DatasetError, match="row 1.*answer"):
        Qwen3DistillBackend(dataclasses.replace(tiny_config, dataset_path=str(bad)))


def test_collapse_detection(backend):
    backend.reset(seed=0)
    limit = backend.config.collapse_patience
    reasons = [backend._check_collapse(0.0, 1.0) for _ in range(limit)]
    assert all(r == "" for r in reasons[:-1]) and reasons[-1].startswith("collapse")
    backend._collapse_count = 0
    assert all(backend._check_collapse(0.0, 10.0) == "" for _ in range(2 * limit))  # healthy length


def test_gym_make_passes_the_env_checker(tiny_cache, tiny_checkpoint):
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    import exposure_env  # noqa: F401  (registers the ids)

    env = gym.make("ATESD-Qwen3-v0", total_updates=4, hold_window=2, **TINY_KWARGS)
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    obs, reward, terminated, truncated, info = env.step(np.array([0.5], dtype=np.float32))
    assert np.isfinite(reward) and info["updates_done"] == 2 and not terminated
    env.close()


def test_teacher_reference_logprob_varies_with_exposure_and_is_cached_for_a_frozen_teacher(backend):
    """G_gt's statistic scores the whole reference, so unlike the answer line alone (always shown,
    ~0 at every exposure) it moves with the reveal ratio."""
    backend.reset(seed=0)
    values = [backend._teacher_ref_logprob(alpha) for alpha in (0.0, 0.5, 1.0)]
    assert all(v < 0 for v in values) and max(values) - min(values) > 1e-5
    assert set(backend._ref_logprob_cache) == {0.0, 0.5, 1.0}
    window = backend.run_window(0.5, 2)
    assert np.all(window.trace.teacher_ref_logprob == values[1])  # frozen teacher: reused, not rescored


def test_teacher_reference_logprob_is_rescored_for_a_live_teacher(tiny_config, tiny_checkpoint):
    from distill_backend.backend import Qwen3DistillBackend

    b = Qwen3DistillBackend(dataclasses.replace(tiny_config, teacher="current", lr=5e-2))
    b.reset(seed=0)
    trace = b.run_window(1.0, 3).trace.teacher_ref_logprob
    assert not b._ref_logprob_cache and len(set(trace.tolist())) > 1  # the live teacher changes each update
    b.close()


def test_probe_every_holds_the_probe_nll_between_measurements(tiny_config, tiny_checkpoint):
    from distill_backend.backend import Qwen3DistillBackend

    b = Qwen3DistillBackend(dataclasses.replace(tiny_config, probe_every=3, lr=5e-2))
    b.reset(seed=0)
    trace = b.run_window(1.0, 6).trace.probe_nll  # measured after updates 3 and 6, held in between
    assert trace[0] == trace[1] and trace[2] != trace[1] and trace[2] == trace[3] == trace[4] != trace[5]
    every = Qwen3DistillBackend(dataclasses.replace(tiny_config, lr=5e-2))
    every.reset(seed=0)
    measured = every.run_window(1.0, 6).trace.probe_nll
    assert len(set(measured.tolist())) == 6 and measured[2] == trace[2] and measured[5] == trace[5]
    with pytest.raises(ConfigError, match="probe_every"):
        dataclasses.replace(tiny_config, probe_every=0)


def test_loss_and_learning_rate_follow_the_model_unless_given():
    """The tiny default takes its measured recipe, a checkpoint the paper's; explicit values win."""
    from distill_backend.config import CHECKPOINT_RECIPE, TINY_RECIPE, BackendConfig

    tiny = BackendConfig()
    assert (tiny.effective_loss, tiny.effective_lr) == (TINY_RECIPE["loss"], TINY_RECIPE["lr"])
    assert tiny.loss_config.kind == TINY_RECIPE["loss"]
    real = BackendConfig(model="/some/checkpoint")
    assert (real.effective_loss, real.effective_lr) == ("forward_kl", 5e-6)
    assert (CHECKPOINT_RECIPE["loss"], CHECKPOINT_RECIPE["lr"]) == ("forward_kl", 5e-6)
    assert real.loss_config.tau == 0.05
    chosen = BackendConfig(loss="jsd", lr=1e-3)
    assert (chosen.effective_loss, chosen.effective_lr, chosen.loss_config.kind) == ("jsd", 1e-3, "jsd")
    with pytest.raises(ConfigError, match="loss"):
        BackendConfig(loss="kl")
