"""The seam between a controller-facing environment and a training run.

A ``TrainingBackend`` is anything that can run student updates at a given reveal ratio and report
statistics: the numpy surrogate in :mod:`exposure_env.surrogate`, or the real Qwen3 self-distillation
in ``distill_backend``. This module knows nothing about either; it only fixes the records they
exchange with the env: :class:`TrainingStats` (the run at one moment), :class:`UpdateTrace` (every
per-update statistic of a window, the one trace type from the backend to ``info["trace"]`` and the
decision log) and :class:`WindowResult`.

``TrainingStats`` is a NamedTuple rather than a frozen dataclass on purpose: it is immutable and
typed, and it costs a fraction of a microsecond to build, which matters on the surrogate's hot path.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, NamedTuple, Protocol, Sequence, runtime_checkable

import numpy as np

INITIAL_REVEAL_RATIO = 0.5
"""Reveal ratio at which a backend measures the statistics it returns from ``reset`` (no update has
been applied yet), shared by every backend (``initial_reveal_ratio`` in their configs).

Why 0.5: the reset statistics seed the observation's EMAs (``alpha_ema`` starts here, the loss and
mismatch EMAs start at their values for this exposure), so the value is a prior the controller sees
before its first decision. The midpoint of [0, 1] favours neither end: 1.0 would start every run
looking like plain OPSD, 0.0 like answer-only exposure. It is also the mean of the controllers'
initial Beta policy (``Beta(1 + ln 2, 1 + ln 2)``)."""


class TrainingStats(NamedTuple):
    """Statistics of a training run at one moment (after an update, or at reset).

    Every backend fills every field with a finite float. Units are per token where it applies.
    Every field between ``reveal_ratio`` and ``score`` is a per-update statistic: the list of them
    is :data:`TRACE_FIELDS`, derived from this declaration (the field list is written only here).
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


TRACE_FIELDS: tuple[str, ...] = TrainingStats._fields[2:-1]
"""The per-update statistics, in :class:`TrainingStats` order: row ``i`` of a trace is ``TRACE_FIELDS[i]``."""
TRACE_INDEX: Mapping[str, int] = {name: i for i, name in enumerate(TRACE_FIELDS)}

TRACE_BOUNDS: Mapping[str, tuple[float, float]] = {
    "loss": (0.0, 100.0),
    "loss_tail": (0.0, 100.0),
    "mismatch": (0.0, 1.0),
    "probe_nll": (0.0, 100.0),
    "confidence": (0.0, 1.0),
    "teacher_ref_logprob": (-100.0, 0.0),
    "grad_norm": (0.0, np.inf),
    "rollout_length": (1.0, np.inf),
}
"""Valid range of every per-update statistic (a simulated backend clips into it)."""

PROGRESS_SIGNALS: tuple[str, ...] = ("probe_nll", "loss")
"""Statistics that may serve as the learning-progress signal ``l`` (a decrease is progress)."""
DEFAULT_PROGRESS_SIGNAL = "probe_nll"
"""The probe NLL does not move when the reveal ratio moves, so its drops are learning, not exposure."""
GROUNDING_FIELD = "teacher_ref_logprob"
"""The statistic behind the teacher-grounded reward term ``G_gt``."""

_STATS_COLUMNS = [TrainingStats._fields.index(name) for name in TRACE_FIELDS]


def stats_from_values(updates_done: int, reveal_ratio: float, values: Sequence[float], score: float) -> TrainingStats:
    """A :class:`TrainingStats` from the per-update statistics in :data:`TRACE_FIELDS` order."""
    return TrainingStats(updates_done, reveal_ratio, *values, score)


def stats_values(stats: TrainingStats) -> np.ndarray:
    """The per-update statistics of ``stats`` as a ``(len(TRACE_FIELDS),)`` float64 array."""
    return np.array(stats[2:-1], dtype=np.float64)


class UpdateTrace:
    """Every per-update statistic of a window (or of a batch of windows) as one float64 array.

    ``values`` has shape ``(F, n)`` for one window of ``n`` updates, or ``(F, B, n)`` for ``B``
    windows side by side; row ``i`` is the statistic ``TRACE_FIELDS[i]``. The same object travels
    from the backend through the episode kernel into ``info["trace"]`` and the decision log.

    Access by name: ``trace["probe_nll"]`` (or ``trace.probe_nll``), plus two names the reward reads:
    ``trace["progress"]`` (the statistic chosen as the progress signal, ``progress_signal``) and
    ``trace["grounded"]`` (``teacher_ref_logprob``); ``keys()`` / ``items()`` list all of them, so
    ``dict(trace)`` is a plain dict of arrays. Like a NamedTuple of the statistics, it iterates over
    the :data:`TRACE_FIELDS` rows in order. Returned arrays are views of ``values``: never modify them.
    """

    __slots__ = ("values", "progress_signal")

    _fields: tuple[str, ...] = TRACE_FIELDS
    KEYS: tuple[str, ...] = TRACE_FIELDS + ("progress", "grounded")

    def __init__(self, values: np.ndarray, progress_signal: str = DEFAULT_PROGRESS_SIGNAL) -> None:
        if values.shape[0] != len(TRACE_FIELDS):
            raise ValueError(f"trace values must have {len(TRACE_FIELDS)} rows ({', '.join(TRACE_FIELDS)}); "
                             f"received shape {values.shape}")
        self.values = values
        self.progress_signal = progress_signal

    @classmethod
    def from_stats(cls, per_update: Sequence[TrainingStats]) -> "UpdateTrace":
        """Collect a trace from one :class:`TrainingStats` per update."""
        if not per_update:
            return cls(np.empty((len(TRACE_FIELDS), 0)))
        return cls(np.array(per_update, dtype=np.float64)[:, _STATS_COLUMNS].T.copy())

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any]) -> "UpdateTrace":
        """A trace from one array per statistic (every name of :data:`TRACE_FIELDS`)."""
        return cls(np.stack([np.asarray(columns[name], dtype=np.float64) for name in TRACE_FIELDS]))

    @property
    def num_updates(self) -> int:
        """Updates per window (the last axis)."""
        return int(self.values.shape[-1])

    def with_progress_signal(self, name: str) -> "UpdateTrace":
        """The same values with ``progress`` naming ``name``."""
        return self if name == self.progress_signal else UpdateTrace(self.values, name)

    def window(self, row: int) -> "UpdateTrace":
        """Window ``row`` of a batched trace."""
        return UpdateTrace(self.values[:, row], self.progress_signal)

    def __getitem__(self, key: str | int) -> np.ndarray:
        if isinstance(key, str):
            if key == "progress":
                key = self.progress_signal
            elif key == "grounded":
                key = GROUNDING_FIELD
            return self.values[TRACE_INDEX[key]]
        return self.values[key]

    def __getattr__(self, name: str) -> np.ndarray:
        index = TRACE_INDEX.get(name)
        if index is None:
            raise AttributeError(f"'UpdateTrace' object has no attribute {name!r}")
        return self.values[index]

    def keys(self) -> tuple[str, ...]:
        return self.KEYS

    def items(self) -> Iterator[tuple[str, np.ndarray]]:
        return ((key, self[key]) for key in self.KEYS)

    def __contains__(self, key: object) -> bool:
        return key in self.KEYS

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(TRACE_FIELDS)

    def __eq__(self, other: object) -> bool:
        # Exact equality of the values (NaN padding equal to itself), e.g. for Gymnasium's checker.
        if not isinstance(other, UpdateTrace):
            return NotImplemented
        return self.progress_signal == other.progress_signal and np.array_equal(
            self.values, other.values, equal_nan=True)

    __hash__ = None  # type: ignore[assignment]  # mutable contents

    def __repr__(self) -> str:
        return f"UpdateTrace(shape={self.values.shape}, progress_signal={self.progress_signal!r})"


class WindowResult(NamedTuple):
    """What ``run_window`` returns: the state at the end of the window and how it got there."""

    stats: TrainingStats
    """Statistics at the end of the window: the per-update statistics equal the trace's last entries;
    ``score`` is freshly evaluated if the backend evaluates at window ends."""
    trace: UpdateTrace
    """Per-update values of the window, shape ``(F, n)``, one column per update actually run."""
    diverged: bool = False
    """True when training broke down (non-finite loss, collapse); the env then terminates."""
    divergence_reason: str = ""


@runtime_checkable
class TrainingBackend(Protocol):
    """A training run that a controller steers through its reveal ratio.

    ``reset`` starts a fresh run (deterministic for a given seed) and returns its statistics measured
    at the backend's ``initial_reveal_ratio``; ``run_window`` applies ``num_updates`` student updates
    with the teacher seeing ``reveal_ratio`` of the reference; ``state_dict``/``load_state_dict``
    checkpoint and resume the run exactly (RNG included). Values in ``state_dict`` are plain Python /
    numpy (or torch tensors for torch backends), so the dict can be pickled.

    Misuse raises the same classes from every backend: ``run_window`` or ``state_dict`` before
    ``reset`` -> :class:`~exposure_env.errors.ResetNeededError`; a reveal ratio outside [0, 1], a
    non-positive ``num_updates`` or a checkpoint of another configuration or version ->
    :class:`~exposure_env.errors.ConfigError`. The env validates actions itself (clipping finite
    values into [0, 1]), so a backend only ever sees valid reveal ratios through it.
    """

    def reset(self, seed: int | None = None) -> TrainingStats: ...

    def run_window(self, reveal_ratio: float, num_updates: int) -> WindowResult: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...
