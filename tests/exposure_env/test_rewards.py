"""Reward functions against hand-computed values, for single windows and batches."""

import numpy as np
import pytest

from exposure_env.rewards import (
    combine_reward,
    discounted_progress,
    grounded_score,
    immediate_progress,
    reward_components,
    window_reward,
)


def test_discounted_progress_counts_only_drops():
    # l: 1.0 -> 0.8 (drop .2) -> 0.9 (rise, ignored) -> 0.5 (drop .4)
    value = discounted_progress(1.0, np.array([0.8, 0.9, 0.5]), gamma=0.5)
    assert value == pytest.approx(0.2 + 0.0 + 0.25 * 0.4)


def test_immediate_progress_counts_rises():
    assert immediate_progress(1.0, np.array([0.8, 1.3])) == pytest.approx(-0.3)


def test_grounded_score_is_discount_normalized_mean():
    value = grounded_score(np.array([-1.0, -3.0]), gamma=0.5)
    assert value == pytest.approx((-1.0 - 1.5) / 1.5)


def test_batched_matches_single():
    rng = np.random.default_rng(0)
    before = rng.random(5)
    trace = rng.random((5, 4))
    g = -rng.random((5, 4))
    batched = window_reward("discounted+gt", before, trace, g, 0.9, 0.2)
    single = [window_reward("discounted+gt", before[i], trace[i], g[i], 0.9, 0.2) for i in range(5)]
    np.testing.assert_allclose(batched, single)


def test_combine_reward_unknown_mode():
    parts = reward_components(1.0, np.array([0.9]), np.array([-1.0]), 0.9)
    with pytest.raises(ValueError, match="reward_mode"):
        combine_reward("greedy", parts, 0.1)
