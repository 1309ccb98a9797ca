"""The native batched surrogate, and the surrogate under Gymnasium's Sync/Async vector envs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import exposure_env
from exposure_env.errors import ConfigError, InvalidActionError, ResetNeededError
from exposure_env.types import TRACE_FIELDS
from exposure_env.vector import SurrogateVectorEnv

SURROGATE_ID = exposure_env.SURROGATE_ID


def make_vec(num_envs: int, mode: str = "vector_entry_point", **kwargs) -> gym.vector.VectorEnv:
    return gym.make_vec(SURROGATE_ID, num_envs=num_envs, vectorization_mode=mode, **kwargs)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("mode", ["vector_entry_point", "sync", "async"])
def test_make_vec_modes_step_through_an_episode(mode):
    envs = make_vec(3, mode, total_updates=12, hold_window=4)
    try:
        assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
        obs, info = envs.reset(seed=0)
        assert obs.shape == (3, 8) and envs.observation_space.contains(obs)
        assert np.unique(obs[:, 7]).size == 3  # three different students
        for _ in range(3):
            obs, rewards, terminated, truncated, info = envs.step(np.full((3, 1), 0.5, dtype=np.float32))
            assert envs.observation_space.contains(obs)
            assert rewards.shape == (3,) and np.isfinite(rewards).all()
            assert info["score"].shape == (3,)
        assert terminated.all() and not truncated.any()
        obs, rewards, terminated, _, info = envs.step(np.full((3, 1), 0.5, dtype=np.float32))
        assert (rewards == 0).all() and not terminated.any() and (obs[:, 0] == 0).all()  # autoreset
    finally:
        envs.close()


def test_batch_of_one_matches_the_single_env_for_the_first_episode():
    single = gym.make(SURROGATE_ID, total_updates=30, hold_window=4, reward_mode="discounted+gt")
    batched = make_vec(1, total_updates=30, hold_window=4, reward_mode="discounted+gt")
    obs_s, _ = single.reset(seed=11)
    obs_b, _ = batched.reset(seed=11)
    assert np.array_equal(obs_s, obs_b[0])
    actions = np.random.default_rng(0).uniform(-0.2, 1.2, size=(8, 1)).astype(np.float32)
    for action in actions:  # 8 steps: 7 full windows and a last one of 2 updates
        obs_s, r_s, term_s, _, info_s = single.step(action)
        obs_b, r_b, term_b, _, info_b = batched.step(action[None])
        np.testing.assert_allclose(obs_b[0], obs_s, rtol=1e-6, atol=1e-7)
        assert r_b[0] == pytest.approx(r_s, rel=1e-12, abs=1e-15)
        assert term_b[0] == term_s and info_b["action_clipped"][0] == info_s["action_clipped"]
        n = info_b["num_updates"][0]
        for name in TRACE_FIELDS:
            assert np.array_equal(info_b["trace"][name][0, :n], info_s["trace"][name])
        assert np.isnan(info_b["trace"]["loss"][0, n:]).all()
        assert info_b["score"][0] == info_s["score"]
    assert term_s


def test_same_seed_batches_are_identical():
    a, b = make_vec(16), make_vec(16)
    oa, _ = a.reset(seed=4)
    ob, _ = b.reset(seed=4)
    assert np.array_equal(oa, ob)
    actions = np.random.default_rng(1).random((60, 16, 1)).astype(np.float32)
    for action in actions:
        ra, rb = a.step(action), b.step(action)
        assert np.array_equal(ra[0], rb[0]) and np.array_equal(ra[1], rb[1]) and np.array_equal(ra[2], rb[2])


def test_divergence_terminates_with_penalty_and_autoresets():
    envs = make_vec(4, params={"collapse_score": 0.45}, divergence_penalty=3.0)
    obs, info = envs.reset(seed=0)
    _, rewards, terminated, _, info = envs.step(np.ones((4, 1), dtype=np.float32))
    collapsed = info["diverged"]
    assert collapsed.any()
    assert np.array_equal(terminated, collapsed | (info["updates_done"] >= 200))
    assert (rewards[collapsed] == -3.0).all() and (info["updates_done"][collapsed] == 0).all()
    obs, rewards, terminated, _, info = envs.step(np.full((4, 1), 0.5, dtype=np.float32))
    assert (rewards[collapsed] == 0).all() and (info["num_updates"][collapsed] == 0).all()
    assert (obs[collapsed, 0] == 0).all()


def test_rows_desynchronised_by_a_reset_run_windows_of_their_own_length():
    envs = make_vec(6, total_updates=10, hold_window=4, params={"collapse_score": 0.4})
    envs.reset(seed=3)
    for _ in range(12):
        _, rewards, _, _, info = envs.step(np.full((6, 1), 0.9, dtype=np.float32))
        assert np.isfinite(rewards).all()
        lengths = info["num_updates"]
        assert set(lengths.tolist()) <= {0, 2, 4}
        for row, n in enumerate(lengths):
            assert np.isfinite(info["trace"]["probe_nll"][row, :n]).all()
            assert np.isnan(info["trace"]["probe_nll"][row, n:]).all()


def test_bad_actions_raise_and_out_of_range_actions_are_clipped():
    envs = make_vec(2)
    with pytest.raises(ResetNeededError):
        envs.step(np.zeros((2, 1)))
    envs.reset(seed=0)
    with pytest.raises(InvalidActionError, match="finite"):
        envs.step(np.array([[0.5], [np.nan]]))
    with pytest.raises(InvalidActionError, match="shape"):
        envs.step(np.zeros((3, 1)))
    _, _, _, _, info = envs.step(np.array([[1.5], [0.5]]))
    assert info["action_clipped"].tolist() == [True, False] and info["reveal_ratio"][0] == 1.0


def test_bad_config_raises_config_error():
    with pytest.raises(ConfigError, match="num_envs"):
        SurrogateVectorEnv(num_envs=0)
    with pytest.raises(ConfigError, match="gamma"):
        SurrogateVectorEnv(num_envs=2, gamma=2.0)
    with pytest.raises(ConfigError, match="learning_rate"):
        SurrogateVectorEnv(num_envs=2, params={"learning_rate": -1})


def test_max_episode_steps_truncates_like_time_limit():
    envs = make_vec(3, max_episode_steps=5)
    single = gym.make(SURROGATE_ID, max_episode_steps=5)
    envs.reset(seed=0)
    single.reset(seed=0)
    for step in range(5):
        _, _, terminated, truncated, _ = envs.step(np.full((3, 1), 0.5, dtype=np.float32))
        _, _, term_single, trunc_single, _ = single.step(np.array([0.5], dtype=np.float32))
        assert truncated.tolist() == [step == 4] * 3 and not terminated.any()
        assert trunc_single == (step == 4) and not term_single
    obs, rewards, _, truncated, info = envs.step(np.full((3, 1), 0.5, dtype=np.float32))
    assert (rewards == 0).all() and (info["updates_done"] == 0).all() and not truncated.any()
