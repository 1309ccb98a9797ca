"""Reward functions: discounted learning progress (SPEC section 2), as pure functions.

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
batch of envs and an agent that concatenates traces across windows for a longer lookahead.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

REWARD_MODES: tuple[str, ...] = ("immediate", "discounted", "discounted+gt")


@functools.lru_cache(maxsize=256)
def _discount_weights(gamma: float, length: int) -> tuple[np.ndarray, float]:
    weights = gamma ** np.arange(length, dtype=np.float64)
    weights.setflags(write=False)  # cached and shared: nobody may modify it
    return weights, float(weights.sum())


def discount_weights(gamma: float, length: int) -> np.ndarray:
    """``gamma**0 .. gamma**(length-1)`` (read-only; cached because every env step needs it)."""
    return _discount_weights(float(gamma), int(length))[0]


def progress_drops(l_before: np.ndarray | float, l_trace: np.ndarray) -> np.ndarray:
    """Per-update decrease ``l_{i-1} - l_i`` of the progress signal, shape ``(..., L)``."""
    l_trace = np.asarray(l_trace, dtype=np.float64)
    drops = np.empty_like(l_trace)
    drops[..., 0] = l_before - l_trace[..., 0]
    np.subtract(l_trace[..., :-1], l_trace[..., 1:], out=drops[..., 1:])
    return drops


def immediate_progress(l_before: np.ndarray | float, l_trace: np.ndarray) -> np.ndarray:
    """Plain change of the signal over the window: ``l_before - l_last``."""
    return np.asarray(l_before, dtype=np.float64) - np.asarray(l_trace, dtype=np.float64)[..., -1]


def discounted_progress(l_before: np.ndarray | float, l_trace: np.ndarray, gamma: float) -> np.ndarray:
    """``G_lp``: discounted sum of the positive per-update drops."""
    drops = progress_drops(l_before, l_trace)
    return np.maximum(drops, 0.0) @ discount_weights(gamma, drops.shape[-1])


def grounded_score(g_trace: np.ndarray, gamma: float) -> np.ndarray:
    """``G_gt``: discount-normalized mean of the teacher's reference-solution log-prob."""
    g_trace = np.asarray(g_trace, dtype=np.float64)
    weights, total = _discount_weights(float(gamma), g_trace.shape[-1])
    return (g_trace @ weights) / total


class RewardComponents(NamedTuple):
    """The three ingredients of every reward mode, each with the leading shape of the inputs."""

    immediate: np.ndarray
    discounted: np.ndarray
    grounded: np.ndarray


def reward_components(
    l_before: np.ndarray | float, l_trace: np.ndarray, g_trace: np.ndarray, gamma: float
) -> RewardComponents:
    """Compute ``immediate``, ``G_lp`` and ``G_gt`` for one window (or a batch of windows)."""
    return RewardComponents(
        immediate_progress(l_before, l_trace),
        discounted_progress(l_before, l_trace, gamma),
        grounded_score(g_trace, gamma),
    )


def combine_reward(mode: str, components: RewardComponents, lambda_gt: float) -> np.ndarray:
    """The reward of the given mode from its components (see the module docstring)."""
    if mode == "immediate":
        return components.immediate
    if mode == "discounted":
        return components.discounted
    if mode == "discounted+gt":
        return components.discounted + lambda_gt * components.grounded
    raise ValueError(f"reward_mode must be one of {REWARD_MODES}; received {mode!r}")


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
