"""The seam between a controller-facing environment and a training run.

A ``TrainingBackend`` is anything that can run student updates at a given reveal ratio and report
statistics: the numpy surrogate in :mod:`exposure_env.surrogate`, or the real Qwen3 self-distillation
in ``distill_backend``. This module knows nothing about either; it only fixes the records they
exchange with :class:`exposure_env.env.ExposureEnv`.

Records are NamedTuples rather than frozen dataclasses on purpose: they are immutable and typed,
and they cost a fraction of a microsecond to build, which matters on the surrogate's hot path.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Protocol, runtime_checkable

import numpy as np


class TrainingStats(NamedTuple):
    """Statistics of a training run at one moment (after an update, or at reset).

    Every backend fills every field with a finite float. Units are per token where it applies.
    """

    updates_done: int
    """Student updates applied since reset."""
    reveal_ratio: float
    """Reveal ratio in [0, 1] the other statistics were measured at (the last one applied)."""
    loss: float
    """Distillation loss of the last update: mean over completion tokens of the configured
    divergence between teacher and student (nats per token)."""
    loss_tail: float
    """90th percentile of the per-token distillation loss of the last update (nats)."""
    mismatch: float
    """Top-1 disagreement rate in [0, 1]: fraction of completion tokens where
    argmax p_T != argmax p_S."""
    probe_nll: float
    """Student NLL per token of the reference solutions of a fixed probe set. It does not depend
    on the reveal ratio, which makes it the default learning-progress signal."""
    confidence: float
    """Mean student probability of its own argmax token on its rollouts, in [0, 1]."""
    teacher_ref_logprob: float
    """Mean per-token log-probability (<= 0) that the teacher, prompted at the current exposure,
    gives the whole reference solution (reasoning and final answer line) on a fixed probe set. It
    grounds the reward (``G_gt``): it rises with the reveal ratio (revealed steps are easy to
    reproduce) and with how well the teacher reads the reference. The final answer line alone would
    not do: the teacher always sees it, so its log-prob is ~0 at every exposure."""
    grad_norm: float
    """Gradient norm of the last update before clipping (0 for backends without gradients)."""
    rollout_length: float
    """Mean number of completion tokens of the last update's rollouts."""
    score: float
    """The backend's latest evaluation of the student in [0, 1]: expected accuracy for the
    surrogate, Average@k for the real backend. May be refreshed less often than every update."""


# Fields that have one value per student update inside a window, in the order the env reads them.
TRACE_FIELDS: tuple[str, ...] = (
    "loss",
    "loss_tail",
    "mismatch",
    "probe_nll",
    "confidence",
    "teacher_ref_logprob",
    "grad_norm",
    "rollout_length",
)


class UpdateTrace(NamedTuple):
    """Per-update values inside one window: every array has shape ``(num_updates,)``."""

    loss: np.ndarray
    loss_tail: np.ndarray
    mismatch: np.ndarray
    probe_nll: np.ndarray
    confidence: np.ndarray
    teacher_ref_logprob: np.ndarray
    grad_norm: np.ndarray
    rollout_length: np.ndarray

    @classmethod
    def from_stats(cls, per_update: "list[TrainingStats] | tuple[TrainingStats, ...]") -> "UpdateTrace":
        """Collect a trace from one :class:`TrainingStats` per update."""
        return cls(
            *(np.array([getattr(s, name) for s in per_update], dtype=np.float64) for name in TRACE_FIELDS)
        )


class WindowResult(NamedTuple):
    """What ``run_window`` returns: the state at the end of the window and how it got there."""

    stats: TrainingStats
    """Statistics at the end of the window (``score`` freshly evaluated if the backend evaluates
    at window ends)."""
    trace: UpdateTrace
    """Per-update values of the window, one entry per update actually run."""
    diverged: bool = False
    """True when training broke down (non-finite loss, collapse); the env then terminates."""
    divergence_reason: str = ""


@runtime_checkable
class TrainingBackend(Protocol):
    """A training run that a controller steers through its reveal ratio.

    ``reset`` starts a fresh run (deterministic for a given seed), ``run_window`` applies
    ``num_updates`` student updates with the teacher seeing ``reveal_ratio`` of the reference,
    ``state_dict``/``load_state_dict`` checkpoint and resume the run exactly (RNG included).
    Values in ``state_dict`` are plain Python / numpy (or torch tensors for torch backends), so
    the dict can be pickled.
    """

    def reset(self, seed: int | None = None) -> TrainingStats: ...

    def run_window(self, reveal_ratio: float, num_updates: int) -> WindowResult: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...
