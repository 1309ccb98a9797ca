import numpy as np
import pytest

from exposure_env.stats import improvement_interval, iqm, iqm_interval, probability_of_improvement


def test_iqm_ignores_the_tails():
    values = np.array([0.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 100.0])
    assert iqm(values) == pytest.approx(10.0)


def test_probability_of_improvement_counts_pairs_and_ties():
    assert probability_of_improvement(np.array([2.0, 3.0]), np.array([1.0, 1.0])) == 1.0
    assert probability_of_improvement(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.5
    assert probability_of_improvement(np.array([0.0, 2.0]), np.array([1.0])) == 0.5


def test_intervals_contain_the_point_and_shrink_with_more_seeds():
    rng = np.random.default_rng(0)
    small = iqm_interval(rng.normal(size=10), np.random.default_rng(1))
    large = iqm_interval(rng.normal(size=200), np.random.default_rng(1))
    assert small.low <= small.value <= small.high
    assert (large.high - large.low) < (small.high - small.low)
    pi = improvement_interval(rng.normal(1.0, 1.0, 10), rng.normal(0.0, 1.0, 10), np.random.default_rng(2))
    assert 0.0 <= pi.low <= pi.value <= pi.high <= 1.0


def test_constant_scores_give_a_degenerate_interval():
    interval = iqm_interval(np.full(5, 0.7), np.random.default_rng(0))
    assert interval.low == interval.value == interval.high == pytest.approx(0.7)
