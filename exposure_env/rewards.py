"""Reward functions: discounted learning progress (docs/methods.md, section 2), as pure functions.

Notation, for a decision that starts at update ``t0`` and is credited over ``L`` updates:
``l_t`` is the progress signal after update ``t`` (default: the probe NLL, which does not move when
the reveal ratio moves) and ``g_t`` the teacher's mean log-prob of the reference solution at the
current exposure (``TrainingStats.teacher_ref_logprob``).

- ``immediate``:      ``R = l_{t0} - l_{t0+L}`` (the plain change, drops and rises alike)
- ``discounted``:     ``G_lp = sum_{i=1..L} gamma**(i-1) * max(0, l_{t0+i-1} - l_{t0+i})``
- ``discounted+gt``:  ``G_lp + lambda_gt * G_gt`` with
                      ``G_gt = sum_i gamma**(i-1) g_{t0+i} / sum_i gamma**(i-1)``

Every function takes the value before the window, ``l_before`` with shape ``(...)``, and a trace
with the updates on the last axis, shape ``(..., L)``, so one code path serves a single env, a
batch of envs and an agent that concatenates traces across windows for a longer lookahead
(:mod:`exposure_env.credit`). :class:`RewardSettings` is the one set of settings (mode, gamma,
lambda_gt) the env's reward and an agent's credit share. The module knows nothing about envs,
backends or agents.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from exposure_env.errors import ConfigError, check_choice, check_range, store_integers

REWARD_MODES: tuple[str, ...] = ("immediate", "discounted", "discounted+gt")


@dataclass(frozen=True)
class RewardSettings:
    """How a decision is rewarded. The env's reward (:class:`~exposure_env.config.ExposureEnvConfig`
    extends this) and an agent's lookahead credit (:class:`~exposure_env.credit.CreditSettings`)
    share these fields and defaults. The ATESD paper publishes none of the values; they are ours."""

    reward_mode: str = "discounted"
    """One of ``immediate``, ``discounted``, ``discounted+gt`` (see the module docstring). The default
    is the plain learning-progress signal; the teacher-grounded term is opt-in."""
    gamma: float = 0.9
    """Per-update discount inside the credit window."""
    lambda_gt: float = 0.005
    """Weight of the teacher-grounded term ``G_gt`` in ``discounted+gt``. It is meant as a guard
    against lowering the exposure only to shrink the mismatch, not as a reward of its own. On the
    default surrogate (``benchmarks/surrogate_sweep.py``, 50 seeds) the episode return of
    ``discounted+gt`` peaks at a fixed reveal ratio of 0.75 with ``lambda_gt = 0.05`` although 0.5
    scores best; with 0.005 it peaks at 0.5."""

    def __post_init__(self) -> None:
        store_integers(self)
        check_choice("reward_mode", self.reward_mode, REWARD_MODES)
        check_range("gamma", self.gamma, 0.0, 1.0)
        check_range("lambda_gt", self.lambda_gt, 0.0, None)

    def components(
        self, l_before: np.ndarray | float, l_trace: np.ndarray, g_trace: np.ndarray
    ) -> "RewardComponents":
        """``immediate``, ``G_lp`` and ``G_gt`` of one window (or a batch) with this ``gamma``."""
        return reward_components(l_before, l_trace, g_trace, self.gamma)

    def reward(self, components: "RewardComponents") -> np.ndarray:
        """The reward of this mode from its components."""
        return combine_reward(self.reward_mode, components, self.lambda_gt)


@functools.lru_cache(maxsize=256)
def discount_weights(gamma: float, length: int) -> np.ndarray:
    """``gamma**0 .. gamma**(length-1)`` (read-only; cached because every env step needs it)."""
    weights = float(gamma) ** np.arange(int(length), dtype=np.float64)
    weights.setflags(write=False)  # cached and shared: nobody may modify it
    return weights


class CreditMap(NamedTuple):
    """The reward of a window of ``L`` updates as one linear map plus one positive part."""

    matrix: np.ndarray
    """(1 + 2L, L + 2): for ``x = [l_0, l_1 .. l_L, g_1 .. g_L]``, ``x @ matrix`` is
    ``[d_1 .. d_L, l_0 - l_L, G_gt]`` with the per-update drops ``d_i = l_{i-1} - l_i``."""
    weights: np.ndarray
    """(L,) discount weights: ``G_lp = max(0, d) @ weights``."""


@functools.lru_cache(maxsize=256)
def credit_map(gamma: float, length: int) -> CreditMap:
    """The reward formulas of the module docstring for a window of ``length`` updates (cached,
    read-only). Every reward in the project is computed from this map: by
    :func:`reward_components` and, placed inside its window map, by the episode kernel."""
    weights = discount_weights(gamma, length)
    matrix = np.zeros((1 + 2 * length, length + 2))
    for i in range(length):
        matrix[i, i] = 1.0  # d_{i+1} = l_i - l_{i+1}
        matrix[i + 1, i] = -1.0
    matrix[0, length] = 1.0  # immediate: l_0 - l_L
    matrix[length, length] = -1.0
    matrix[length + 1:, length + 1] = weights / weights.sum()  # G_gt: discount-normalized mean
    matrix.setflags(write=False)
    return CreditMap(matrix, weights)


class RewardComponents(NamedTuple):
    """The three ingredients of every reward mode, each with the leading shape of the inputs."""

    immediate: np.ndarray
    discounted: np.ndarray
    grounded: np.ndarray


def reward_components(
    l_before: np.ndarray | float, l_trace: np.ndarray, g_trace: np.ndarray, gamma: float
) -> RewardComponents:
    """``immediate``, ``G_lp`` and ``G_gt`` of one window (or a batch of windows)."""
    l_trace = np.asarray(l_trace, dtype=np.float64)
    length = l_trace.shape[-1]
    cmap = credit_map(float(gamma), length)
    l_before = np.broadcast_to(np.asarray(l_before, dtype=np.float64), l_trace.shape[:-1])
    x = np.concatenate((l_before[..., None], l_trace, np.asarray(g_trace, dtype=np.float64)), axis=-1)
    y = x @ cmap.matrix
    return RewardComponents(y[..., length], np.maximum(y[..., :length], 0.0) @ cmap.weights, y[..., length + 1])


def immediate_progress(l_before: np.ndarray | float, l_trace: np.ndarray) -> np.ndarray:
    """Plain change of the signal over the window: ``l_before - l_last``."""
    return reward_components(l_before, l_trace, np.zeros_like(l_trace, dtype=np.float64), 1.0).immediate


def discounted_progress(l_before: np.ndarray | float, l_trace: np.ndarray, gamma: float) -> np.ndarray:
    """``G_lp``: discounted sum of the positive per-update drops."""
    return reward_components(l_before, l_trace, np.zeros_like(l_trace, dtype=np.float64), gamma).discounted


def grounded_score(g_trace: np.ndarray, gamma: float) -> np.ndarray:
    """``G_gt``: discount-normalized mean of the teacher's reference-solution log-prob."""
    g_trace = np.asarray(g_trace, dtype=np.float64)
    return reward_components(np.zeros(g_trace.shape[:-1]), np.zeros_like(g_trace), g_trace, gamma).grounded


def combine_reward(mode: str, components: RewardComponents, lambda_gt: float) -> np.ndarray:
    """The reward of the given mode from its components (see the module docstring)."""
    if mode == "immediate":
        return components.immediate
    if mode == "discounted":
        return components.discounted
    if mode == "discounted+gt":
        return components.discounted + lambda_gt * components.grounded
    raise ConfigError("reward_mode", "one of " + ", ".join(repr(m) for m in REWARD_MODES), mode)


def window_reward(
    mode: str,
    l_before: np.ndarray | float,
    l_trace: np.ndarray,
    g_trace: np.ndarray,
    gamma: float,
    lambda_gt: float,
) -> np.ndarray:
    """The reward of one decision in the given mode."""
    return combine_reward(mode, reward_components(l_before, l_trace, g_trace, gamma), lambda_gt)
