"""Confidence intervals over seeds: the project's one place for them.

- :func:`t_interval`: mean with a Student-t interval (every benchmark table's "mean [95% CI]").
- :func:`mean_ci`: the same as JSON-ready ``(mean, [low, high])`` over the finite values.
- After Agarwal et al. (2021, "Deep RL at the edge of the statistical precipice"): interquartile
  mean (:func:`iqm`), percentile-bootstrap CIs (:func:`iqm_interval`) and the probability of
  improvement (:func:`improvement_interval`). rliable is not a dependency; scipy's ``bootstrap``
  does the resampling. With a single task the "stratified" bootstrap of rliable reduces to
  resampling seeds, which is what this does.

Randomness flows from an explicit ``np.random.Generator``. The module knows nothing about what the
numbers measure.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
from scipy import stats as sps


class Interval(NamedTuple):
    """A point estimate with its confidence interval."""

    value: float
    low: float
    high: float


class MeanInterval(NamedTuple):
    """A mean with a symmetric confidence interval ``mean +- half_width``."""

    mean: float
    half_width: float
    low: float
    high: float


def t_interval(values: np.ndarray | list[float], confidence: float = 0.95) -> MeanInterval:
    """Mean and Student-t confidence interval of independent samples (degenerate for one sample)."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    mean = float(x.mean())
    if x.size < 2:
        return MeanInterval(mean, 0.0, mean, mean)
    half = float(sps.t.ppf(0.5 + confidence / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return MeanInterval(mean, half, mean - half, mean + half)


def mean_ci(values: Sequence[float | None]) -> tuple[float, list[float]]:
    """Mean and 95% t-interval of the finite values, as JSON-ready ``(mean, [low, high])``
    (``(nan, [])`` when there is none; degenerate for one value)."""
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not finite:
        return float("nan"), []
    interval = t_interval(finite)
    return interval.mean, [interval.low, interval.high]


def iqm(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean: the mean of the middle 50% (scipy's 25% two-sided trimmed mean)."""
    return sps.trim_mean(values, 0.25, axis=axis)


def probability_of_improvement(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """``P(X > Y) + 0.5 P(X = Y)`` over all pairs of runs of X and Y (Mann-Whitney U / (m n))."""
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    y = np.moveaxis(np.asarray(y, dtype=np.float64), axis, -1)
    greater = (x[..., :, None] > y[..., None, :]).mean(axis=(-2, -1))
    equal = (x[..., :, None] == y[..., None, :]).mean(axis=(-2, -1))
    return greater + 0.5 * equal


def iqm_interval(values: np.ndarray, rng: np.random.Generator, n_resamples: int = 2000,
                 confidence: float = 0.95) -> Interval:
    """IQM with a percentile-bootstrap CI over seeds."""
    values = np.asarray(values, dtype=np.float64)
    point = float(iqm(values))
    if len(values) < 2 or np.ptp(values) == 0:
        return Interval(point, point, point)
    result = sps.bootstrap((values,), iqm, n_resamples=n_resamples, confidence_level=confidence,
                           method="percentile", vectorized=True, rng=rng)
    return Interval(point, float(result.confidence_interval.low), float(result.confidence_interval.high))


def improvement_interval(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, n_resamples: int = 2000,
                         confidence: float = 0.95) -> Interval:
    """Probability of improvement of X over Y with a percentile-bootstrap CI (seeds of X and Y
    resampled independently)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    point = float(probability_of_improvement(x, y))
    if len(x) < 2 or len(y) < 2 or (np.ptp(x) == 0 and np.ptp(y) == 0):
        return Interval(point, point, point)
    result = sps.bootstrap((x, y), probability_of_improvement, n_resamples=n_resamples,
                           confidence_level=confidence, method="percentile", vectorized=True,
                           paired=False, rng=rng)
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    # Degenerate resamples (all pairs tied) can leave NaN bounds; fall back to the point value.
    return Interval(point, low if np.isfinite(low) else point, high if np.isfinite(high) else point)


def gain_ratio_interval(x_target: np.ndarray, ref_target: np.ndarray, x_source: np.ndarray, ref_source: np.ndarray,
                        rng: np.random.Generator, n_resamples: int = 2000, confidence: float = 0.95) -> Interval:
    """``(IQM(x_target) - IQM(ref_target)) / (IQM(x_source) - IQM(ref_source))`` with a
    percentile-bootstrap CI: how much of its gain over a reference a controller keeps when it moves
    from one environment (source, e.g. the surrogate) to another (target, e.g. the real backend),
    the sim-to-real ratio. Within an environment the controller and the reference ran on the same
    seeds (``x[i]`` and ``ref[i]`` share seed ``i``), so seeds are resampled in pairs there; the two
    environments are resampled independently. NaN when the source gain is 0; the CI is wide (or NaN)
    when the source gain's own uncertainty reaches 0."""
    target = np.stack([np.asarray(x_target, dtype=np.float64), np.asarray(ref_target, dtype=np.float64)])
    source = np.stack([np.asarray(x_source, dtype=np.float64), np.asarray(ref_source, dtype=np.float64)])

    def ratio(t: np.ndarray, s: np.ndarray, axis: int = -1) -> np.ndarray:
        # t and s are (2, ..., n): row 0 the controller, row 1 the reference, seeds on the last axis
        with np.errstate(divide="ignore", invalid="ignore"):
            return (iqm(t[0], axis=axis) - iqm(t[1], axis=axis)) / (iqm(s[0], axis=axis) - iqm(s[1], axis=axis))

    point = float(ratio(target, source))
    if target.shape[-1] < 2 or source.shape[-1] < 2 or not np.isfinite(point):
        return Interval(point, point, point)
    result = sps.bootstrap((target, source), ratio, n_resamples=n_resamples, confidence_level=confidence,
                           method="percentile", vectorized=True, paired=False, axis=-1, rng=rng)
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return Interval(point, low if np.isfinite(low) else float("nan"), high if np.isfinite(high) else float("nan"))
