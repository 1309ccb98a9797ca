"""The observation schema, declared once.

Every feature the controller sees is one :class:`ObservationField` below: its name, the bounds of
the ``Box`` it lives in and what it means. :func:`build_observation` is the only code that fills
the vector, and it works on arrays with any leading batch shape, so the single env and the native
batched surrogate produce identical observations.

The running averages (EMAs) are updated once per student update from a window's trace, in closed
form: with decay ``d`` and values ``x_1..x_n`` the EMA after the window is
``d**n * ema + sum_i (1 - d) * d**(n - i) * x_i``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from gymnasium import spaces


class ObservationField(NamedTuple):
    name: str
    low: float
    high: float
    meaning: str


OBSERVATION_FIELDS: tuple[ObservationField, ...] = (
    ObservationField("progress", 0.0, 1.0, "training progress t/T: updates done over the update budget"),
    ObservationField("alpha_ema", 0.0, 1.0, "EMA (per update) of the reveal ratio applied"),
    ObservationField("loss_ema", 0.0, 100.0, "EMA of the distillation loss (nats/token)"),
    ObservationField("mismatch_ema", 0.0, 1.0, "EMA of the top-1 teacher-student disagreement rate"),
    ObservationField("probe_nll_ema", 0.0, 100.0, "EMA of the student NLL of probe reference solutions (nats/token)"),
    ObservationField("confidence", 0.0, 1.0, "student's mean probability of its own argmax token, last update"),
    ObservationField(
        "teacher_ref_logprob_ema", -100.0, 0.0,
        "EMA of the teacher's mean log-prob of the reference solution at the current exposure"
    ),
    ObservationField("score", 0.0, 1.0, "latest evaluation score of the student (accuracy / Average@k)"),
)

OBSERVATION_NAMES: tuple[str, ...] = tuple(f.name for f in OBSERVATION_FIELDS)
OBSERVATION_LOW = np.array([f.low for f in OBSERVATION_FIELDS], dtype=np.float32)
OBSERVATION_HIGH = np.array([f.high for f in OBSERVATION_FIELDS], dtype=np.float32)

# The statistics tracked as EMAs, in the order of the EMA array (TrainingStats field names).
EMA_SOURCES: tuple[str, ...] = ("reveal_ratio", "loss", "mismatch", "probe_nll", "teacher_ref_logprob")


def observation_space() -> spaces.Box:
    """The ``Box`` every ATESD environment observes in."""
    return spaces.Box(OBSERVATION_LOW, OBSERVATION_HIGH, dtype=np.float32)


@functools.lru_cache(maxsize=256)
def ema_window_weights(decay: float, num_updates: int) -> tuple[float, np.ndarray]:
    """Carry factor ``d**n`` and per-update weights ``(1-d) d**(n-i)`` of a window of ``n`` updates.

    Cached (every env step needs it); the returned array is read-only.
    """
    weights = (1.0 - decay) * decay ** np.arange(num_updates - 1, -1, -1, dtype=np.float64)
    weights.setflags(write=False)
    return float(decay**num_updates), weights


def advance_ema(ema: np.ndarray, traces: np.ndarray, decay: float) -> np.ndarray:
    """EMAs after a window. ``ema``: (..., k); ``traces``: (..., k, n) per-update values."""
    carry, weights = ema_window_weights(float(decay), traces.shape[-1])
    return carry * ema + traces @ weights


def build_observation(
    progress: np.ndarray | float,
    ema: np.ndarray,
    confidence: np.ndarray | float,
    score: np.ndarray | float,
) -> np.ndarray:
    """Assemble the float32 observation, clipped into the declared bounds.

    ``ema`` has the :data:`EMA_SOURCES` on its last axis; the other inputs broadcast against its
    leading shape. Non-finite inputs are a backend bug and are caught by ``ExposureEnv``.
    """
    ema = np.asarray(ema, dtype=np.float64)
    lead = ema.shape[:-1]
    out = np.empty(lead + (len(OBSERVATION_FIELDS),), dtype=np.float32)
    out[..., 0] = progress
    out[..., 1:5] = ema[..., 0:4]
    out[..., 5] = confidence
    out[..., 6] = ema[..., 4]
    out[..., 7] = score
    return np.clip(out, OBSERVATION_LOW, OBSERVATION_HIGH, out=out)
