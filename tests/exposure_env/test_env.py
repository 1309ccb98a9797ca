"""ExposureEnv mechanics on a scripted backend: spaces, rewards, episode end, bad input, checkpoints."""

from __future__ import annotations

import copy
import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import exposure_env
from exposure_env import (
    BackendUnavailableError,
    ConfigError,
    ExposureEnvConfig,
    InvalidActionError,
    ResetNeededError,
)
from tests.exposure_env.stub_backend import make_scripted_env


def test_reset_observation_in_space_and_info_keys():
    env = make_scripted_env()
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    assert obs.dtype == np.float32
    assert set(info) >= {"score", "mismatch", "updates_done"}
    assert env.backend.seed == 3


def test_step_before_reset_raises():
    env = make_scripted_env()
    with pytest.raises(ResetNeededError, match="reset"):
        env.step(np.array([0.5], dtype=np.float32))


@pytest.mark.parametrize("bad", [np.array([np.nan]), np.array([np.inf]), float("-inf")])
def test_non_finite_action_raises(bad):
    env = make_scripted_env()
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match="finite"):
        env.step(bad)


@pytest.mark.parametrize("bad", [np.zeros(2), np.zeros((1, 1, 2)), "half"])
def test_wrong_shape_action_raises(bad):
    env = make_scripted_env()
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match="shape|reveal ratio"):
        env.step(bad)


def test_out_of_range_action_is_clipped_and_flagged():
    env = make_scripted_env()
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([1.7], dtype=np.float32))
    assert info["action_clipped"] and info["reveal_ratio"] == 1.0
    assert env.backend.calls[-1] == (1.0, 4)
    _, _, _, _, info = env.step(np.array([-0.2], dtype=np.float32))
    assert info["action_clipped"] and info["reveal_ratio"] == 0.0
    _, _, _, _, info = env.step(np.array([0.3], dtype=np.float32))
    assert not info["action_clipped"] and info["reveal_ratio"] == pytest.approx(0.3)


def test_discounted_reward_matches_formula():
    gamma = 0.5
    env = make_scripted_env(gamma=gamma, hold_window=3)
    env.reset(seed=0)
    _, reward, _, _, info = env.step(np.array([0.5]))
    # probe NLL falls by 0.05 per update: G = 0.05 * (1 + 0.5 + 0.25)
    assert reward == pytest.approx(0.05 * 1.75)
    assert info["progress_before"] == pytest.approx(2.0)
    np.testing.assert_allclose(info["trace"]["progress"], [1.95, 1.90, 1.85])


def test_reward_modes_differ_as_documented():
    rewards = {}
    for mode in ("immediate", "discounted", "discounted+gt"):
        env = make_scripted_env(gamma=0.5, hold_window=2, reward_mode=mode, lambda_gt=0.1)
        env.reset(seed=0)
        rewards[mode] = env.step(np.array([1.0]))[1]
    assert rewards["immediate"] == pytest.approx(0.2)  # 2.0 -> 1.8
    assert rewards["discounted"] == pytest.approx(0.1 + 0.05)
    # teacher_ref_logprob = -1 + alpha = 0 at alpha 1, so the grounded term adds nothing here
    assert rewards["discounted+gt"] == pytest.approx(0.15)
    env = make_scripted_env(gamma=0.5, hold_window=2, reward_mode="discounted+gt", lambda_gt=0.1)
    env.reset(seed=0)
    assert env.step(np.array([0.5]))[1] == pytest.approx(0.05 + 0.025 + 0.1 * -0.5)


def test_episode_terminates_at_budget_with_short_last_window():
    env = make_scripted_env(total_updates=10, hold_window=4)
    env.reset(seed=0)
    sizes, terminated = [], False
    while not terminated:
        _, _, terminated, truncated, info = env.step(np.array([0.5]))
        assert not truncated
        sizes.append(env.backend.calls[-1][1])
    assert sizes == [4, 4, 2] and info["updates_done"] == 10
    assert env.config.num_decisions == 3
    with pytest.raises(ResetNeededError):
        env.step(np.array([0.5]))
    obs, _ = env.reset()
    assert obs[0] == 0.0


@pytest.mark.parametrize("kwargs", [{"diverge_at": 6}, {"nan_at": 6}])
def test_divergence_terminates_with_penalty(kwargs):
    env = make_scripted_env(divergence_penalty=2.5, **kwargs)
    obs, _ = env.reset(seed=0)
    env.step(np.array([0.5]))
    obs, reward, terminated, _, info = env.step(np.array([0.5]))
    assert terminated and reward == -2.5 and info["diverged"]
    assert info["divergence_reason"]
    assert env.observation_space.contains(obs)


def test_state_dict_round_trip_resumes_identically():
    env = make_scripted_env()
    env.reset(seed=1)
    env.step(np.array([0.4]))
    state = copy.deepcopy(env.state_dict())
    first = [env.step(np.array([a]))[:2] for a in (0.2, 0.9)]
    env.load_state_dict(state)
    second = [env.step(np.array([a]))[:2] for a in (0.2, 0.9)]
    for (o1, r1), (o2, r2) in zip(first, second):
        np.testing.assert_array_equal(o1, o2)
        assert r1 == r2


def test_observation_ema_tracks_alpha():
    env = make_scripted_env(ema_decay=0.5, hold_window=2)
    obs, _ = env.reset(seed=0)
    assert obs[1] == pytest.approx(1.0)  # initial alpha EMA = reset's reveal ratio
    obs, *_ = env.step(np.array([0.0]))
    assert obs[1] == pytest.approx(0.25)  # 0.5**2 * 1.0


def test_gymnasium_env_checker_passes_without_warnings():
    env = make_scripted_env(total_updates=12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=True)


@pytest.mark.parametrize(
    "field, value",
    [("total_updates", 0), ("hold_window", 2.5), ("reward_mode", "greedy"), ("gamma", 1.5),
     ("ema_decay", 1.0), ("lambda_gt", -1.0), ("progress_signal", "accuracy")],
)
def test_invalid_config_names_field_and_value(field, value):
    with pytest.raises(ConfigError) as err:
        ExposureEnvConfig(**{field: value})
    message = str(err.value)
    assert field in message and repr(value) in message and "must be" in message


def test_registered_ids_and_plain_data_specs():
    for env_id in exposure_env.REGISTERED_IDS:
        spec = gym.spec(env_id)
        assert isinstance(spec.entry_point, str)
        assert pickle.loads(pickle.dumps(spec)) == spec
        copy.deepcopy(spec)


def test_qwen3_id_without_backend_gives_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "distill_backend.env_factory", None)
    with pytest.raises(BackendUnavailableError, match="pip install"):
        gym.make(exposure_env.QWEN3_ID)
