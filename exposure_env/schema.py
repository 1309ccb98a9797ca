"""The observation schema, declared once.

Every feature the controller sees is one :class:`ObservationField` below: its name, the bounds of
the ``Box`` it lives in, what it means, and where its value comes from (``source``: a
:class:`~exposure_env.types.TrainingStats` field, or ``progress`` for ``t / T``) and whether it is a
running average (``ema``) or the latest value. Everything that fills an observation derives from
these declarations: :func:`initial_features` at reset and :func:`window_readout` after a window.

The running averages (EMAs) are updated once per student update, in closed form over a window:
with decay ``d`` and values ``x_1..x_n`` the EMA after the window is
``d**n * ema + sum_i (1 - d) * d**(n - i) * x_i``. The module knows nothing about rewards, backends
or Gymnasium's envs.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from gymnasium import spaces

from exposure_env.types import TRACE_FIELDS, TRACE_INDEX


class ObservationField(NamedTuple):
    name: str
    low: float
    high: float
    meaning: str
    source: str
    """``progress`` (updates done / budget), ``reveal_ratio``, ``score`` or a per-update statistic."""
    ema: bool
    """True: EMA (per update, decay ``ema_decay``) of ``source``; False: its latest value."""


OBSERVATION_FIELDS: tuple[ObservationField, ...] = (
    ObservationField("progress", 0.0, 1.0, "training progress t/T: updates done over the update budget",
                     "progress", False),
    ObservationField("alpha_ema", 0.0, 1.0, "EMA (per update) of the reveal ratio applied", "reveal_ratio", True),
    ObservationField("loss_ema", 0.0, 100.0, "EMA of the distillation loss (nats/token)", "loss", True),
    ObservationField("mismatch_ema", 0.0, 1.0, "EMA of the top-1 teacher-student disagreement rate", "mismatch",
                     True),
    ObservationField("probe_nll_ema", 0.0, 100.0,
                     "EMA of the student NLL of probe reference solutions (nats/token)", "probe_nll", True),
    ObservationField("confidence", 0.0, 1.0, "student's mean probability of its own argmax token, last update",
                     "confidence", False),
    ObservationField("teacher_ref_logprob_ema", -100.0, 0.0,
                     "EMA of the teacher's mean log-prob of the reference solution at the current exposure",
                     "teacher_ref_logprob", True),
    ObservationField("score", 0.0, 1.0, "latest evaluation score of the student (accuracy / Average@k)", "score",
                     False),
)

OBSERVATION_NAMES: tuple[str, ...] = tuple(f.name for f in OBSERVATION_FIELDS)
OBSERVATION_LOW = np.array([f.low for f in OBSERVATION_FIELDS], dtype=np.float32)
OBSERVATION_HIGH = np.array([f.high for f in OBSERVATION_FIELDS], dtype=np.float32)
_LOW64, _HIGH64 = OBSERVATION_LOW.astype(np.float64), OBSERVATION_HIGH.astype(np.float64)

PROGRESS_COLUMN = OBSERVATION_NAMES.index("progress")
SCORE_COLUMN = OBSERVATION_NAMES.index("score")
ALPHA_COLUMN = next(i for i, f in enumerate(OBSERVATION_FIELDS) if f.source == "reveal_ratio")
_TRACED = [(i, f) for i, f in enumerate(OBSERVATION_FIELDS) if f.source in TRACE_INDEX]


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


class WindowReadout(NamedTuple):
    """The linear map from a window's trace to the traced features (see :func:`window_readout`)."""

    matrix: np.ndarray
    """(F * n, num_features): ``trace.reshape(B, F * n) @ matrix`` gives every traced feature's
    increment (EMA features) or value (latest-value features); zero columns for the others."""
    carry: np.ndarray
    """(num_features,): ``d**n`` for EMA features, 0 for the others."""
    alpha_weight: float
    """``1 - d**n``: the weight of the (constant) reveal ratio in its EMA."""


@functools.lru_cache(maxsize=256)
def window_readout(decay: float, num_updates: int) -> WindowReadout:
    """Features after a window = ``features * carry + trace @ matrix``, plus the reveal ratio's EMA
    term, the progress and the score (which the trace does not hold). Cached; arrays read-only."""
    carry_n, weights = ema_window_weights(float(decay), int(num_updates))
    matrix = np.zeros((len(TRACE_FIELDS), num_updates, len(OBSERVATION_FIELDS)))
    carry = np.zeros(len(OBSERVATION_FIELDS))
    for column, field in _TRACED:
        if field.ema:
            matrix[TRACE_INDEX[field.source], :, column] = weights
            carry[column] = carry_n
        else:
            matrix[TRACE_INDEX[field.source], -1, column] = 1.0
    carry[ALPHA_COLUMN] = carry_n
    matrix = matrix.reshape(len(TRACE_FIELDS) * num_updates, len(OBSERVATION_FIELDS))
    matrix.setflags(write=False)
    carry.setflags(write=False)
    return WindowReadout(matrix, carry, 1.0 - carry_n)


def initial_features(values: np.ndarray, alpha: np.ndarray, score: np.ndarray) -> np.ndarray:
    """(B, num_features) float64 features of runs at reset: every EMA starts at its source's value.

    ``values``: (F, B) statistics in ``TRACE_FIELDS`` order; ``alpha``, ``score``: (B,).
    """
    features = np.zeros((values.shape[1], len(OBSERVATION_FIELDS)))
    for column, field in _TRACED:
        features[:, column] = values[TRACE_INDEX[field.source]]
    features[:, ALPHA_COLUMN] = alpha
    features[:, SCORE_COLUMN] = score
    return features


def to_observation(features: np.ndarray) -> np.ndarray:
    """The float32 observation: ``features`` clipped into the declared bounds (any leading shape)."""
    clipped = np.maximum(features, _LOW64)
    np.minimum(clipped, _HIGH64, out=clipped)
    return clipped.astype(np.float32)
