"""Small wrappers for using the envs with other libraries."""

from __future__ import annotations

import gymnasium as gym
from gymnasium.wrappers import RescaleAction


def symmetric_actions(env: gym.Env) -> gym.Env:
    """Expose the reveal ratio as an action in [-1, 1] (what Stable-Baselines3 expects).

    The env keeps ``Box(0, 1)``; this maps ``a in [-1, 1]`` to ``(a + 1) / 2``.
    """
    return RescaleAction(env, min_action=-1.0, max_action=1.0)
