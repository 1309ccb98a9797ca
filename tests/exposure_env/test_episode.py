"""The episode kernel against formulas written out here from scratch, on random batches."""

from __future__ import annotations

import numpy as np
import pytest

from exposure_env import episode
from exposure_env.config import ExposureEnvConfig
from exposure_env.errors import InvalidActionError
from exposure_env.rewards import reward_components
from exposure_env.schema import OBSERVATION_FIELDS, OBSERVATION_NAMES
from exposure_env.types import TRACE_FIELDS, TRACE_INDEX, UpdateTrace


def _batch(batch: int, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.1, 0.9, size=(len(TRACE_FIELDS), batch, n))
    values[TRACE_INDEX["teacher_ref_logprob"]] *= -1
    reset = rng.uniform(0.1, 0.9, size=(len(TRACE_FIELDS), batch))
    reset[TRACE_INDEX["teacher_ref_logprob"]] *= -1
    return values, reset, rng.uniform(0, 1, batch), rng.uniform(0, 1, batch)


def _window(values, score, diverged=None, reasons=None):
    batch = values.shape[1]
    return episode.Window(UpdateTrace(values), score,
                          np.zeros(batch, dtype=bool) if diverged is None else diverged,
                          np.full(batch, "", dtype=object) if reasons is None else reasons)


@pytest.mark.parametrize("mode", ["immediate", "discounted", "discounted+gt"])
def test_reward_is_the_formula(mode):
    config = ExposureEnvConfig(reward_mode=mode, gamma=0.7, lambda_gt=0.3, hold_window=3)
    values, reset, score, alpha = _batch(5, 3)
    state = episode.start(reset, score, alpha, config)
    step = episode.advance(state, episode.Action(alpha, np.zeros(5, dtype=bool)), _window(values, score), config)
    l_trace = np.concatenate([reset[TRACE_INDEX["probe_nll"]][:, None], values[TRACE_INDEX["probe_nll"]]], axis=1)
    g_trace = values[TRACE_INDEX["teacher_ref_logprob"]]
    weights = 0.7 ** np.arange(3)
    drops = l_trace[:, :-1] - l_trace[:, 1:]
    expected = {"immediate": l_trace[:, 0] - l_trace[:, -1],
                "discounted": np.maximum(drops, 0) @ weights,
                "grounded": g_trace @ weights / weights.sum()}
    for name, value in expected.items():
        np.testing.assert_allclose(getattr(step.components, name), value, rtol=1e-12)
    reward = {"immediate": expected["immediate"], "discounted": expected["discounted"],
              "discounted+gt": expected["discounted"] + 0.3 * expected["grounded"]}[mode]
    np.testing.assert_allclose(step.reward, reward, rtol=1e-12)
    parts = reward_components(l_trace[:, 0], l_trace[:, 1:], g_trace, 0.7)
    np.testing.assert_allclose(parts.discounted, expected["discounted"], rtol=1e-12)


def test_observation_features_follow_the_per_update_ema():
    config = ExposureEnvConfig(ema_decay=0.6, hold_window=4, total_updates=10)
    values, reset, score, alpha = _batch(3, 4, seed=1)
    state = episode.start(reset, score, alpha, config)
    new_alpha = np.array([0.1, 0.5, 1.0])
    step = episode.advance(state, episode.Action(new_alpha, np.zeros(3, dtype=bool)), _window(values, score), config)
    obs = step.observation
    for column, field in enumerate(OBSERVATION_FIELDS):
        if field.source == "progress":
            np.testing.assert_allclose(obs[:, column], 0.4)
        elif field.source == "score":
            np.testing.assert_allclose(obs[:, column], score.astype(np.float32))
        elif field.source == "reveal_ratio":
            expected = alpha.copy()
            for _ in range(4):
                expected = 0.6 * expected + 0.4 * new_alpha
            np.testing.assert_allclose(obs[:, column], expected, rtol=1e-6)
        elif field.ema:
            expected = reset[TRACE_INDEX[field.source]].copy()
            for i in range(4):
                expected = 0.6 * expected + 0.4 * values[TRACE_INDEX[field.source], :, i]
            np.testing.assert_allclose(obs[:, column], expected, rtol=1e-6)
        else:
            np.testing.assert_allclose(obs[:, column], values[TRACE_INDEX[field.source], :, -1], rtol=1e-6)
    assert OBSERVATION_NAMES[0] == "progress" and not step.terminated.any()


def test_divergence_keeps_the_last_good_state_and_terminates():
    config = ExposureEnvConfig(divergence_penalty=2.0, hold_window=2)
    values, reset, score, alpha = _batch(3, 2, seed=2)
    state = episode.start(reset, score, alpha, config)
    values[TRACE_INDEX["loss"], 1, 0] = np.nan  # run 1: a non-finite statistic
    diverged = np.array([False, False, True])  # run 2: the backend says so
    reasons = np.array(["", "", "collapse"], dtype=object)
    step = episode.advance(state, episode.Action(alpha, np.zeros(3, dtype=bool)),
                           _window(values, score, diverged, reasons), config)
    assert step.diverged.tolist() == [False, True, True] and step.terminated.tolist() == [False, True, True]
    assert step.reward[1:].tolist() == [-2.0, -2.0] and step.reasons.tolist() == ["", "non-finite statistics",
                                                                                    "collapse"]
    for old, new in zip(state, step.state):
        np.testing.assert_array_equal(new[1:], old[1:])
    assert step.state.updates_done.tolist() == [2, 0, 0]
    assert all(part[1:].tolist() == [0.0, 0.0] for part in step.components)
    assert np.isfinite(step.observation).all()


def test_budget_ends_the_episode_with_a_shorter_last_window():
    config = ExposureEnvConfig(total_updates=6, hold_window=4)
    values, reset, score, alpha = _batch(1, 4)
    state = episode.start(reset, score, alpha, config)
    assert episode.window_lengths(state, config).tolist() == [4]
    step = episode.advance(state, episode.Action(alpha, np.zeros(1, dtype=bool)), _window(values, score), config)
    assert episode.window_lengths(step.state, config).tolist() == [2] and not step.terminated[0]
    step = episode.advance(step.state, episode.Action(alpha, np.zeros(1, dtype=bool)),
                           _window(values[:, :, :2], score), config)
    assert step.terminated[0] and step.state.updates_done[0] == 6 and step.observation[0, 0] == 1.0


def test_parse_actions_validates_once_for_both_envs():
    assert episode.parse_actions(np.array([0.25], dtype=np.float32)).alpha.tolist() == [0.25]
    assert episode.parse_actions(0.25).alpha.tolist() == [0.25]
    parsed = episode.parse_actions(np.array([[1.5], [-0.5], [0.5]]), num_envs=3)
    assert parsed.alpha.tolist() == [1.0, 0.0, 0.5] and parsed.clipped.tolist() == [True, True, False]
    for bad, num_envs in ((np.array([np.nan]), None), (np.zeros(2), None), ("half", None), (np.zeros((2, 1)), 3),
                          (np.array([[0.5], [np.inf]]), 2)):
        with pytest.raises(InvalidActionError):
            episode.parse_actions(bad, num_envs)
