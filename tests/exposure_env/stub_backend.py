"""A deterministic scripted backend for testing ExposureEnv's mechanics without any dynamics."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from exposure_env.types import TrainingStats, UpdateTrace, WindowResult


class ScriptedBackend:
    """Probe NLL falls by ``0.1 * alpha`` per update; every other statistic is a simple function.

    ``diverge_at`` makes ``run_window`` report divergence once that many updates are done;
    ``nan_at`` makes it return a NaN loss instead.
    """

    def __init__(self, diverge_at: int | None = None, nan_at: int | None = None) -> None:
        self.diverge_at = diverge_at
        self.nan_at = nan_at
        self.updates = 0
        self.nll = 2.0
        self.calls: list[tuple[float, int]] = []
        self.seed: int | None = None

    def _stats(self, alpha: float) -> TrainingStats:
        return TrainingStats(
            updates_done=self.updates, reveal_ratio=alpha, loss=0.5 * alpha, loss_tail=alpha,
            mismatch=0.2 * alpha, probe_nll=self.nll, confidence=0.6, teacher_ref_logprob=-1.0 + alpha,
            grad_norm=1.0, rollout_length=10.0, score=max(0.0, 1.0 - self.nll / 2.0),
        )

    def reset(self, seed: int | None = None) -> TrainingStats:
        self.seed = seed
        self.updates, self.nll = 0, 2.0
        return self._stats(1.0)

    def run_window(self, reveal_ratio: float, num_updates: int) -> WindowResult:
        self.calls.append((reveal_ratio, num_updates))
        per_update = []
        for _ in range(num_updates):
            self.updates += 1
            self.nll -= 0.1 * reveal_ratio
            stats = self._stats(reveal_ratio)
            if self.nan_at is not None and self.updates >= self.nan_at:
                stats = stats._replace(loss=float("nan"))
            per_update.append(stats)
        diverged = self.diverge_at is not None and self.updates >= self.diverge_at
        return WindowResult(per_update[-1], UpdateTrace.from_stats(per_update), diverged,
                            "scripted divergence" if diverged else "")

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "nll": self.nll}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.updates, self.nll = int(state["updates"]), float(state["nll"])

    def close(self) -> None:
        pass


def make_scripted_env(**env_kwargs: Any):
    from exposure_env import ExposureEnv, ExposureEnvConfig

    backend_kwargs = {k: env_kwargs.pop(k) for k in ("diverge_at", "nan_at") if k in env_kwargs}
    return ExposureEnv(ScriptedBackend(**backend_kwargs), ExposureEnvConfig(**env_kwargs))


def constant_trace(value: float, n: int) -> np.ndarray:
    return np.full(n, value)
