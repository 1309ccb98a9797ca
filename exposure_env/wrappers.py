"""Small wrappers for using the envs with other libraries."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import RescaleAction


def symmetric_actions(env: gym.Env) -> gym.Env:
    """Expose the reveal ratio as an action in [-1, 1] (what Stable-Baselines3 expects).

    The env keeps ``Box(0, 1)``; this maps ``a in [-1, 1]`` to ``(a + 1) / 2``.
    """
    # float32 bounds: float64 ones make gymnasium warn that the Box's precision is lowered.
    return RescaleAction(env, min_action=np.float32(-1.0), max_action=np.float32(1.0))
