"""A tiny deterministic-peak backend for agent tests: learning progress peaks at a known alpha.

Per update the probe NLL drops by ``rate * exp(-(alpha - peak)**2 / (2 width**2))`` plus small
noise, so every reward mode prefers alpha = ``peak`` at every state. Importing this module registers
``ATESD-Stub-v0`` (``gym.make("tests.agents.stub_env:ATESD-Stub-v0")`` works in fresh processes).
"""

from __future__ import annotations

from typing import Any, Mapping

import gymnasium as gym
import numpy as np

from exposure_env import ExposureEnv, TrainingStats, UpdateTrace, WindowResult, split_env_kwargs

STUB_ID = "ATESD-Stub-v0"


class PeakBackend:
    def __init__(self, peak: float = 0.3, width: float = 0.15, rate: float = 0.01, noise: float = 0.001) -> None:
        self.peak, self.width, self.rate, self.noise = peak, width, rate, noise
        self.rng = np.random.default_rng(0)
        self.stats: TrainingStats | None = None

    def _stats(self, updates: int, alpha: float, nll: float) -> TrainingStats:
        score = float(np.clip(1.0 - nll / 3.0, 0.0, 1.0))
        return TrainingStats(updates, alpha, 1.0 + alpha, 1.5 + alpha, 0.2 * alpha, nll, 0.5 + 0.4 * score,
                             -1.0 + 0.5 * alpha, 1.0, 20.0, score)

    def reset(self, seed: int | None = None) -> TrainingStats:
        self.rng = np.random.default_rng(seed)
        self.stats = self._stats(0, 1.0, 2.5 + 0.1 * self.rng.random())
        return self.stats

    def run_window(self, reveal_ratio: float, num_updates: int) -> WindowResult:
        assert self.stats is not None
        per_update = []
        nll, updates = self.stats.probe_nll, self.stats.updates_done
        gain = self.rate * np.exp(-((reveal_ratio - self.peak) ** 2) / (2 * self.width**2))
        for _ in range(num_updates):
            nll = max(0.0, nll - gain - self.noise * self.rng.standard_normal())
            updates += 1
            per_update.append(self._stats(updates, reveal_ratio, nll))
        self.stats = per_update[-1]
        return WindowResult(self.stats, UpdateTrace.from_stats(per_update))

    def state_dict(self) -> dict[str, Any]:
        return {"stats": self.stats._asdict() if self.stats else None, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.stats = TrainingStats(**state["stats"]) if state["stats"] else None
        self.rng.bit_generator.state = state["rng"]

    def close(self) -> None:
        return None


def make_stub_env(peak: float = 0.3, width: float = 0.15, rate: float = 0.01, noise: float = 0.001,
                  **kwargs: Any) -> ExposureEnv:
    config, rest = split_env_kwargs(kwargs)
    assert not rest, rest
    return ExposureEnv(PeakBackend(peak, width, rate, noise), config)


if STUB_ID not in gym.registry:
    gym.register(id=STUB_ID, entry_point="tests.agents.stub_env:make_stub_env")
