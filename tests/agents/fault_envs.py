"""A test-only env id for sweeps that go wrong: ``tests.agents.fault_envs:FaultySurrogate-v0``.

``gym.make`` with that id imports this module first (in whatever process makes the env: a local
worker or a Ray worker), so the id exists there too. It is ``ATESD-Surrogate-v0`` plus:

- ``step_sleep``: seconds slept in every step (slow runs that cost no CPU);
- ``kill_seed`` / ``kill_file``: ``reset(seed=kill_seed)`` kills its own process with SIGKILL while
  the file ``kill_file`` exists (delete it and the same command runs that seed normally);
- ``fail_seed``: ``reset(seed=fail_seed)`` raises ``RuntimeError``.
"""

from __future__ import annotations

import os
import signal
import time

import gymnasium as gym

import exposure_env  # noqa: F401 - registers ATESD-Surrogate-v0

ENV_ID = "tests.agents.fault_envs:FaultySurrogate-v0"


class FaultySurrogate(gym.Wrapper):
    def __init__(self, env: gym.Env, step_sleep: float, kill_seed: int, kill_file: str, fail_seed: int) -> None:
        super().__init__(env)
        self.step_sleep, self.kill_seed, self.kill_file, self.fail_seed = step_sleep, kill_seed, kill_file, fail_seed

    def reset(self, *, seed=None, options=None):  # noqa: ANN001, ANN201
        if seed == self.kill_seed and self.kill_file and os.path.exists(self.kill_file):
            os.kill(os.getpid(), signal.SIGKILL)
        if seed == self.fail_seed:
            raise RuntimeError(f"injected failure at seed {seed}")
        return super().reset(seed=seed, options=options)

    def step(self, action):  # noqa: ANN001, ANN201
        time.sleep(self.step_sleep)
        return super().step(action)


def make_faulty(step_sleep: float = 0.0, kill_seed: int = -1, kill_file: str = "", fail_seed: int = -1,
                **kwargs) -> gym.Env:
    return FaultySurrogate(gym.make("ATESD-Surrogate-v0", **kwargs), step_sleep, kill_seed, kill_file, fail_seed)


if "FaultySurrogate-v0" not in gym.registry:
    gym.register("FaultySurrogate-v0", entry_point=make_faulty)
