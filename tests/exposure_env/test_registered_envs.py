"""What every registered env id promises: the env checker, reproducibility, the declared info keys,
and the same error classes from every backend for the same misuse."""

from __future__ import annotations

import copy
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import exposure_env
from exposure_env import RESET_INFO_KEYS, STEP_INFO_KEYS, ConfigError, ResetNeededError
from exposure_env.episode import REWARD_COMPONENT_KEYS
from exposure_env.types import UpdateTrace


def test_env_checker_passes_without_warnings(env_id_and_kwargs):
    env_id, kwargs = env_id_and_kwargs
    env = gym.make(env_id, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # transformers' deprecation notice about an argument distill_backend passes is not the env's
        warnings.filterwarnings("ignore", message=".*past_key_values.*", category=FutureWarning)
        check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_same_seed_episodes_are_identical(env_id_and_kwargs):
    env_id, kwargs = env_id_and_kwargs
    episodes = []
    for _ in range(2):
        env = gym.make(env_id, **kwargs)
        obs, _ = env.reset(seed=3)
        steps, terminated = [obs], False
        for alpha in (0.2, 0.9, 0.5):
            obs, reward, terminated, _, info = env.step(np.array([alpha], dtype=np.float32))
            steps.append((obs, reward, terminated, info["trace"].values.copy()))
        assert terminated  # 12 updates in windows of 4
        episodes.append(steps)
        env.close()
    first, second = episodes
    assert np.array_equal(first[0], second[0])
    for a, b in zip(first[1:], second[1:]):
        assert np.array_equal(a[0], b[0]) and a[1] == b[1] and a[2] == b[2] and np.array_equal(a[3], b[3])


def test_info_keys_are_the_declared_ones(env_id_and_kwargs):
    env_id, kwargs = env_id_and_kwargs
    env = gym.make(env_id, **kwargs)
    _, info = env.reset(seed=0)
    assert tuple(info) == RESET_INFO_KEYS
    assert (info["total_updates"], info["hold_window"], info["num_decisions"]) == (12, 4, 3)
    _, _, _, _, info = env.step(np.array([0.5], dtype=np.float32))
    assert tuple(info) == STEP_INFO_KEYS
    assert isinstance(info["trace"], UpdateTrace) and info["trace"].num_updates == info["num_updates"] == 4
    assert set(info["trace"].keys()) >= {"progress", "grounded", "probe_nll", "teacher_ref_logprob"}
    assert tuple(info["reward_components"]) == REWARD_COMPONENT_KEYS
    env.close()


def test_single_and_vector_env_return_the_same_info_keys():
    single = gym.make(exposure_env.SURROGATE_ID, total_updates=12, hold_window=4)
    vector = gym.make_vec(exposure_env.SURROGATE_ID, num_envs=3, vectorization_mode="vector_entry_point",
                          total_updates=12, hold_window=4)
    _, info_single = single.reset(seed=0)
    _, info_vector = vector.reset(seed=0)
    assert tuple(info_single) == tuple(info_vector) == RESET_INFO_KEYS
    _, _, _, _, info_single = single.step(np.array([0.5], dtype=np.float32))
    _, _, _, _, info_vector = vector.step(np.full((3, 1), 0.5, dtype=np.float32))
    assert tuple(info_single) == tuple(info_vector) == STEP_INFO_KEYS
    assert tuple(info_single["trace"].keys()) == tuple(info_vector["trace"].keys())
    assert tuple(info_single["reward_components"]) == tuple(info_vector["reward_components"])
    for key in STEP_INFO_KEYS:
        if key not in ("trace", "reward_components"):
            assert np.shape(info_vector[key]) == (3,), key
    assert info_vector["trace"]["progress"].shape == (3, 4)


def test_backends_raise_the_same_classes_for_the_same_misuse(env_id_and_kwargs):
    env_id, kwargs = env_id_and_kwargs
    env = gym.make(env_id, **kwargs)
    backend = env.unwrapped.backend
    with pytest.raises(ResetNeededError):
        backend.run_window(0.5, 1)
    with pytest.raises(ResetNeededError):
        backend.state_dict()
    with pytest.raises(ResetNeededError):
        env.unwrapped.step(np.array([0.5], dtype=np.float32))  # gym.make's OrderEnforcing raises its own
    backend.reset(0)
    for bad_ratio in (1.5, -0.1, float("nan")):
        with pytest.raises(ConfigError, match="reveal_ratio"):
            backend.run_window(bad_ratio, 1)
    with pytest.raises(ConfigError, match="num_updates"):
        backend.run_window(0.5, 0)
    foreign = {"version": -1, "stats": {}}  # neither backend's checkpoint
    with pytest.raises(ConfigError):
        backend.load_state_dict(copy.deepcopy(foreign))
    env.close()
