"""The numpy surrogate backend and ``ATESD-Surrogate-v0`` through ``gym.make``."""

from __future__ import annotations

import copy
import json
import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import exposure_env
from exposure_env.errors import ConfigError
from exposure_env.surrogate import (
    TRACE_HIGH,
    TRACE_LOW,
    SurrogateBackend,
    SurrogateParams,
    SurrogateState,
    competence,
    expected_accuracy,
    initial,
    make_surrogate_env,
    observe,
    transition,
)
from exposure_env.types import TRACE_FIELDS, TrainingBackend

SURROGATE_ID = exposure_env.SURROGATE_ID


def rollout(env: gym.Env, seed: int, steps: int, action_seed: int = 0) -> list:
    """(obs, reward, terminated, info score) of ``steps`` random-action steps (resets on end)."""
    actions = np.random.default_rng(action_seed).random((steps, 1)).astype(np.float32)
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        out.append((obs, reward, terminated, info["score"], info["mismatch"]))
        if terminated or truncated:
            out.append(env.reset()[0])
    return out


@pytest.mark.filterwarnings("error")
def test_gymnasium_env_checker_passes():
    env = gym.make(SURROGATE_ID)
    check_env(env.unwrapped)


def test_sb3_env_checker_passes_through_symmetric_actions():
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    # Building the RescaleAction wrapper warns inside gymnasium (float64 bounds); see the report.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = exposure_env.symmetric_actions(gym.make(SURROGATE_ID))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3_check_env(env)


def test_backend_satisfies_protocol():
    assert isinstance(SurrogateBackend(), TrainingBackend)


def test_same_seed_rolls_out_identically_and_other_seed_differs():
    a = rollout(gym.make(SURROGATE_ID), seed=7, steps=120)
    b = rollout(gym.make(SURROGATE_ID), seed=7, steps=120)
    c = rollout(gym.make(SURROGATE_ID), seed=8, steps=120)
    for x, y in zip(a, b):
        if isinstance(x, tuple):
            assert np.array_equal(x[0], y[0]) and x[1:] == y[1:]
        else:
            assert np.array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_observations_and_statistics_stay_in_their_declared_ranges():
    env = gym.make(SURROGATE_ID, total_updates=40, hold_window=3)
    rng = np.random.default_rng(1)
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        assert env.observation_space.contains(obs)
        terminated = False
        while not terminated:
            obs, reward, terminated, _, info = env.step(rng.random(1).astype(np.float32))
            assert env.observation_space.contains(obs) and np.isfinite(reward)
            for i, name in enumerate(TRACE_FIELDS):
                values = info["trace"][name]
                assert np.all(values >= TRACE_LOW[i]) and np.all(values <= TRACE_HIGH[i]), name
            assert 0.0 <= info["score"] <= 1.0


def test_state_dict_resumes_exactly_including_rng():
    env = gym.make(SURROGATE_ID).unwrapped
    env.reset(seed=3)
    for _ in range(10):
        env.step(np.array([0.4], dtype=np.float32))
    saved = pickle.loads(pickle.dumps(env.state_dict()))
    first = [env.step(np.array([a], dtype=np.float32)) for a in (0.1, 0.9, 0.5, 0.5)]
    other = gym.make(SURROGATE_ID).unwrapped
    other.reset(seed=99)
    other.load_state_dict(saved)
    second = [other.step(np.array([a], dtype=np.float32)) for a in (0.1, 0.9, 0.5, 0.5)]
    for x, y in zip(first, second):
        assert np.array_equal(x[0], y[0]) and x[1] == y[1] and x[2] == y[2]
        assert all(np.array_equal(x[4]["trace"][k], y[4]["trace"][k]) for k in TRACE_FIELDS)


def test_load_state_dict_rejects_other_params():
    backend = SurrogateBackend(SurrogateParams(learning_rate=0.05))
    backend.reset(0)
    with pytest.raises(ConfigError, match="params"):
        SurrogateBackend().load_state_dict(backend.state_dict())


def test_single_env_is_the_batched_functions_at_batch_size_one():
    params = SurrogateParams()
    backend = SurrogateBackend(params)
    stats = backend.reset(5)
    rng = np.random.default_rng(5)
    state = initial(params, rng, 1)
    observed = observe(params, state, np.array([params.initial_reveal_ratio]), rng)
    assert stats.loss == observed.stats[0, 0] and stats.score == observed.score[0]
    for alpha in (0.2, 0.8, 1.0):
        result = backend.run_window(alpha, 4)
        window = transition(params, state, np.array([alpha]), 4, rng)
        state = window.state
        assert np.array_equal(result.trace.values, window.traces[:, 0])
        assert result.stats.score == window.score[0, -1]


@pytest.mark.parametrize(
    "field, value",
    [
        ("learning_rate", -0.1),
        ("absorb_width", 0.0),
        ("shallow_persistence", 1.0),
        ("collapse_score", float("nan")),
        ("difficulty_mix", (0.5, 0.6, 0.1)),
        ("level_depth", (1.0, 1.0)),
        ("observation_noise", (0.1,) * 3),
        ("init_ability_high", -5.0),
        ("confidence_range", 0.9),
    ],
)
def test_bad_params_raise_config_error_naming_the_field(field, value):
    with pytest.raises(ConfigError) as info:
        SurrogateParams(**{field: value})
    assert info.value.field == field and field in str(info.value)
    with pytest.raises(ConfigError, match=field):
        gym.make(SURROGATE_ID, params={field: value})


def test_bad_kwargs_raise_config_error():
    with pytest.raises(ConfigError, match="bogus"):
        make_surrogate_env(bogus=1)
    with pytest.raises(ConfigError, match="unknown keys"):
        SurrogateParams.from_dict({"learning_rat": 0.1})
    with pytest.raises(ConfigError, match="hold_window"):
        make_surrogate_env(hold_window=0)


def test_params_are_plain_data():
    params = SurrogateParams(difficulty_mix=[0.5, 0.25, 0.25], learning_rate=0.1)
    assert params.difficulty_mix == (0.5, 0.25, 0.25)
    assert SurrogateParams.from_dict(json.loads(json.dumps(params.to_dict()))) == params
    _ = params.arrays  # the cached constants must not leak into equality, copies or pickles
    assert copy.deepcopy(params) == params == pickle.loads(pickle.dumps(params))
    env = gym.make(SURROGATE_ID, difficulty_mix=(0.2, 0.3, 0.5), params={"harm_rate": 0.1})
    assert env.unwrapped.backend.params.difficulty_mix == (0.2, 0.3, 0.5)
    assert env.unwrapped.backend.params.harm_rate == 0.1
    pickle.dumps(env.spec)


def test_initial_students_span_weak_to_medium():
    params = SurrogateParams()
    scores = np.array([expected_accuracy(params, initial(params, np.random.default_rng(s), 1))[0]
                       for s in range(200)])
    assert scores.min() < 0.3 and scores.max() > 0.5
    assert 0.0 < scores.min() and scores.max() < 0.75


def test_observe_without_rng_is_the_noise_free_mean():
    params = SurrogateParams()
    state = initial(params, np.random.default_rng(0), 64)
    alpha = np.full(64, 0.6)
    clean = observe(params, state, alpha).stats
    noisy = np.stack([observe(params, state, alpha, np.random.default_rng(s)).stats for s in range(300)])
    sigma = np.array(params.observation_noise)[:, None]
    assert np.all(np.abs(noisy.mean(0) - clean) < 5 * sigma / np.sqrt(300) + 1e-9)
    quiet = params.replace(observation_noise=(0.0,) * len(TRACE_FIELDS))
    assert np.allclose(observe(quiet, state, alpha, np.random.default_rng(1)).stats, clean)


def test_more_exposure_raises_teacher_ref_logprob_and_teacher_signal():
    params = SurrogateParams()
    state = initial(params, np.random.default_rng(0), 1)
    alphas = np.linspace(0, 1, 11)
    tiled = SurrogateState(np.repeat(state.logit, 11, axis=1), np.repeat(state.shallow, 11))
    stats = observe(params, tiled, alphas).stats
    row = TRACE_FIELDS.index("teacher_ref_logprob")
    assert np.all(np.diff(stats[row]) > 0) and np.all(stats[row] <= 0)
    assert np.all(np.diff(stats[TRACE_FIELDS.index("loss")]) > 0)


def test_collapse_is_reported_as_divergence_and_penalised():
    env = gym.make(SURROGATE_ID, params={"collapse_score": 0.95}, divergence_penalty=2.0)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(np.array([1.0], dtype=np.float32))
    assert terminated and reward == -2.0 and info["diverged"]
    assert "collapse" in info["divergence_reason"]


def test_competence_is_per_level_and_mixed_by_the_difficulty_mix():
    params = SurrogateParams(difficulty_mix=(0.6, 0.3, 0.1))
    state = initial(params, np.random.default_rng(2), 8)
    assert competence(state).shape == (3, 8)
    assert np.allclose(expected_accuracy(params, state), np.array([0.6, 0.3, 0.1]) @ competence(state))


def test_benchmark_scripts_write_their_results(tmp_path):
    from benchmarks import env_throughput, surrogate_sweep

    out = tmp_path / "throughput.json"
    result = env_throughput.main(["--out", str(out), "--steps", "300", "--repeats", "1", "--batch-sizes", "1", "4",
                                  "--batched-env-steps", "400", "--ppo-timesteps", "0"])
    saved = json.loads(out.read_text())
    assert set(saved) >= {"surrogate_steps_per_s", "cartpole_steps_per_s", "ratio_vs_cartpole", "batched"}
    assert set(saved["batched"]) == {"1", "4"} and saved["ratio_vs_cartpole"] == result["ratio_vs_cartpole"] > 0

    out = tmp_path / "sweep.json"
    surrogate_sweep.main(["--out", str(out), "--seeds", "4"])
    saved = json.loads(out.read_text())
    assert [row["alpha"] for row in saved["fixed"]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert {"ramp_0.2_to_1.0", "greedy_immediate"} <= set(saved["adaptive"])


def test_deep_copied_env_continues_identically():
    """Lookahead controllers copy the env; the copy must not share state or RNG with the original."""
    env = gym.make(SURROGATE_ID)
    env.reset(seed=2)
    env.step(np.array([0.3], dtype=np.float32))
    twin = copy.deepcopy(env)
    for alpha in (0.9, 0.1, 0.5):
        a = env.step(np.array([alpha], dtype=np.float32))
        b = twin.step(np.array([alpha], dtype=np.float32))
        assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    twin.step(np.array([1.0], dtype=np.float32))
    assert env.unwrapped.backend.state_dict()["updates_done"] == 16


@pytest.mark.parametrize("batch", [64, 1024])  # Generator.random path, and the 16-bit raw-draw path
def test_observation_noise_has_zero_mean_and_the_declared_std(batch):
    params = SurrogateParams()
    state = initial(params, np.random.default_rng(0), batch)
    alpha = np.full(batch, 0.4)
    clean = observe(params, state, alpha).stats
    sigma = np.array(params.observation_noise)[:, None, None]
    noise = np.stack([observe(params, state, alpha, np.random.default_rng(s)).stats for s in range(40)], axis=1)
    inside = (noise > TRACE_LOW[:, None, None] + 1e-9) & (noise < TRACE_HIGH[:, None, None] - 1e-9)
    z = ((noise - clean[:, None]) / sigma)[inside]  # statistics clipped at a bound are excluded
    assert abs(z.mean()) < 4 / np.sqrt(z.size) and abs(z.std() - 1) < 0.05
