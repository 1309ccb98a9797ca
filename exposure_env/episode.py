"""The episode kernel: how a window of student updates becomes observation, reward, end and info.

Pure functions over a batch of ``B`` runs, shared by every consumer: :class:`~exposure_env.env.ExposureEnv`
(any backend, ``B = 1``), :class:`~exposure_env.vector.SurrogateVectorEnv` (``B = num_envs``) and
``benchmarks/surrogate_sweep.py`` (a batch of seeds):

- :func:`parse_actions`: the one place an action is validated (NaN, inf, shape) and clipped into [0, 1];
- :func:`start`: the :class:`EpisodeState` after reset, from the backend's reset statistics;
- :func:`window_lengths`: how many updates the next window runs (``hold_window``, or the rest of the budget);
- :func:`advance`: ``(state, action, window, config) -> Step`` (next state, observation, reward,
  terminated, diverged and the reward components);
- :func:`reset_info` / :func:`step_info`: the ``info`` dicts, whose keys are declared once below
  (:class:`ResetInfo`, :class:`StepInfo`) and are the same for the single and the vector env.

Semantics: the reward is :class:`~exposure_env.rewards.RewardSettings`'s reward of the window (the
decision's own window is its lookahead). A window diverges when the backend says so or when any
statistic or the score is not finite; a diverged run keeps its last good state, gets
``-divergence_penalty`` as reward and zero reward components, and terminates. A run also terminates
when its update budget is spent. The kernel knows the env config, the observation schema, the
reward functions and the trace type. It does not know any backend, RNG, Gymnasium space, wrapper or
autoreset rule.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple, TypedDict

import numpy as np

from exposure_env.config import ExposureEnvConfig
from exposure_env.errors import InvalidActionError
from exposure_env.rewards import RewardComponents, credit_map
from exposure_env.schema import (
    ALPHA_COLUMN,
    OBSERVATION_FIELDS,
    PROGRESS_COLUMN,
    SCORE_COLUMN,
    initial_features,
    to_observation,
    window_readout,
)
from exposure_env.types import GROUNDING_FIELD, TRACE_FIELDS, TRACE_INDEX, UpdateTrace


# -- info keys, declared once --------------------------------------------------------------------
class ResetInfo(TypedDict):
    """``info`` of ``reset``. In the vector env every value is an array with a leading ``num_envs`` axis."""

    score: float
    """The backend's latest evaluation of the student (expected accuracy, Average@k)."""
    mismatch: float
    """Top-1 teacher-student disagreement of the last update (at reset: at the initial reveal ratio)."""
    updates_done: int
    """Student updates applied since reset."""
    total_updates: int
    """The update budget T of the episode."""
    hold_window: int
    """H: updates per decision (the last window of a run may be shorter)."""
    num_decisions: int
    """Env steps of a full episode, ``ceil(T / H)``."""


class StepInfo(ResetInfo):
    """``info`` of ``step``: the reset keys plus what happened in the window."""

    reveal_ratio: float
    """The reveal ratio applied (after clipping; NaN for a vector sub-env that was reset this step)."""
    action_clipped: bool
    """True when a finite action outside [0, 1] was clipped."""
    num_updates: int
    """Updates run in this window (0 for a vector sub-env that was reset this step)."""
    progress_before: float
    """The progress signal ``l_0`` before the window."""
    trace: UpdateTrace
    """Every per-update statistic of the window plus ``progress`` and ``grounded`` (a mapping of
    arrays of shape ``(num_updates,)``; ``(num_envs, hold_window)`` in the vector env, NaN-padded)."""
    reward_components: dict[str, float]
    """``immediate``, ``discounted`` (G_lp) and ``grounded`` (G_gt) of the window; 0 on divergence."""
    diverged: bool
    """True when training broke down in this window (the episode then terminates)."""
    divergence_reason: str
    """Why (the backend's reason, or ``non-finite statistics``); empty when not diverged."""


RESET_INFO_KEYS: tuple[str, ...] = tuple(ResetInfo.__annotations__)
STEP_INFO_KEYS: tuple[str, ...] = tuple(StepInfo.__annotations__)
REWARD_COMPONENT_KEYS: tuple[str, ...] = RewardComponents._fields


# -- state and records --------------------------------------------------------------------------
class EpisodeState(NamedTuple):
    """Where each of ``B`` runs stands between windows."""

    updates_done: np.ndarray
    """(B,) int64 student updates applied since reset."""
    features: np.ndarray
    """(B, num_features) float64 observation features before clipping (see :mod:`exposure_env.schema`)."""
    progress: np.ndarray
    """(B,) the progress signal ``l`` after the last update."""
    mismatch: np.ndarray
    """(B,) top-1 mismatch of the last update."""

    @property
    def score(self) -> np.ndarray:
        """(B,) the latest score."""
        return self.features[:, SCORE_COLUMN]

    def rows(self, index: Any) -> "EpisodeState":
        """The runs ``index`` (an index array, mask or slice) as their own batch."""
        return EpisodeState(*(array[index] for array in self))

    def replace_rows(self, index: Any, other: "EpisodeState") -> "EpisodeState":
        """A copy with the runs ``index`` taken from ``other`` (a batch of those runs)."""
        arrays = []
        for mine, theirs in zip(self, other):
            merged = mine.copy()
            merged[index] = theirs
            arrays.append(merged)
        return EpisodeState(*arrays)


class Action(NamedTuple):
    """Validated actions of ``B`` runs."""

    alpha: np.ndarray
    """(B,) float64 reveal ratios in [0, 1]."""
    clipped: np.ndarray
    """(B,) bool: the action was a finite value outside [0, 1] and was clipped."""


class Window(NamedTuple):
    """What the kernel needs from a window of ``n`` updates of ``B`` runs."""

    trace: UpdateTrace
    """(F, B, n) per-update statistics; their last entries are the statistics at the window's end."""
    score: np.ndarray
    """(B,) the score at the end of the window."""
    diverged: np.ndarray
    """(B,) bool: the backend reported a breakdown (collapse, ...)."""
    reasons: np.ndarray
    """(B,) object array of the backend's divergence reasons ('' where none)."""


class Step(NamedTuple):
    """The outcome of :func:`advance` for ``B`` runs."""

    state: EpisodeState
    observation: np.ndarray
    """(B, num_features) float32."""
    reward: np.ndarray
    """(B,) float64."""
    terminated: np.ndarray
    """(B,) bool: budget spent or diverged."""
    diverged: np.ndarray
    """(B,) bool."""
    reasons: np.ndarray
    """(B,) object array: why each diverged run diverged ('' elsewhere)."""
    components: RewardComponents
    """Each (B,); zero where diverged."""
    progress_before: np.ndarray
    """(B,) the progress signal before the window."""
    action: Action
    num_updates: int | np.ndarray
    """Updates run in the window: one number for all runs of an :func:`advance`, or a (B,) int64
    array when windows of different lengths were merged (the vector env)."""
    trace: UpdateTrace
    """The window's trace, ``progress`` bound to the config's progress signal."""


# -- the kernel ----------------------------------------------------------------------------------
def parse_actions(actions: Any, num_envs: int | None = None) -> Action:
    """Validate and clip actions: the reveal ratios to apply and which of them were clipped.

    ``num_envs=None`` (a single env): a float or an array with one element (shape ``()`` or
    ``(1,)``). Otherwise shape ``(num_envs, 1)`` or ``(num_envs,)``. NaN, inf, other shapes and
    non-numeric input raise :class:`~exposure_env.errors.InvalidActionError`; finite values outside
    [0, 1] are clipped, and the clip is reported.
    """
    if num_envs is None and type(actions) is np.ndarray and actions.shape == (1,) and actions.dtype.kind == "f":
        value = float(actions[0])  # fast path: what agents and the env checker send
        if math.isfinite(value):
            clipped = min(1.0, max(0.0, value))
            return Action(np.array([clipped]), np.array([clipped != value]))
    expected = "(1,)" if num_envs is None else f"({num_envs}, 1)"
    try:
        array = np.asarray(actions, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidActionError(
            f"actions must be reveal ratios in [0, 1] of shape {expected}; received {actions!r}"
        ) from exc
    allowed = ((), (1,)) if num_envs is None else ((num_envs, 1), (num_envs,))
    if array.shape not in allowed:
        raise InvalidActionError(
            f"actions must have shape {expected} (one reveal ratio in [0, 1] per env); received shape {array.shape}"
        )
    alpha = array.reshape(-1)
    if not np.isfinite(alpha).all():
        raise InvalidActionError(f"actions must be finite reveal ratios in [0, 1]; received {alpha}")
    clipped = np.minimum(np.maximum(alpha, 0.0), 1.0)
    return Action(clipped, clipped != alpha)


def start(values: np.ndarray, score: np.ndarray, alpha: np.ndarray, config: ExposureEnvConfig) -> EpisodeState:
    """The state after reset: ``values`` (F, B) and ``score`` (B,) are the reset statistics, measured
    at reveal ratio ``alpha`` (B,); every EMA starts at its statistic's value."""
    batch = values.shape[1]
    return EpisodeState(
        updates_done=np.zeros(batch, dtype=np.int64),
        features=initial_features(values, alpha, score),
        progress=values[TRACE_INDEX[config.progress_signal]].astype(np.float64),
        mismatch=values[TRACE_INDEX["mismatch"]].astype(np.float64),
    )


def window_lengths(state: EpisodeState, config: ExposureEnvConfig) -> np.ndarray:
    """(B,) updates of each run's next window: ``hold_window``, or what is left of the budget."""
    return np.minimum(config.hold_window, config.total_updates - state.updates_done)


def observation(state: EpisodeState) -> np.ndarray:
    """(B, num_features) float32 observations of ``state``."""
    return to_observation(state.features)


class _WindowMap(NamedTuple):
    """Everything linear in a window, as one matrix (see :func:`_window_map`)."""

    matrix: np.ndarray
    discount: np.ndarray  # G_lp = max(0, drops) @ discount
    drops: slice
    immediate: int
    grounded: int
    progress: int  # the progress signal after the last update
    mismatch: int  # the mismatch of the last update
    checksum: int  # sum of every statistic and the score: finite iff all of them are


@functools.lru_cache(maxsize=256)
def _window_map(ema_decay: float, gamma: float, progress_signal: str, n: int) -> _WindowMap:
    """The observation's readout (:func:`~exposure_env.schema.window_readout`) and the reward's linear
    part (:func:`~exposure_env.rewards.credit_map`) placed in one matrix, so that one matmul per
    window computes the new features, the per-update drops, ``immediate``, ``G_gt`` and the values
    the state keeps. Input row ``x = [trace (F * n) | l_0 | alpha | score | features]``."""
    fields, num_features = len(TRACE_FIELDS), len(OBSERVATION_FIELDS)
    at_l0, at_alpha, at_score, at_features = fields * n, fields * n + 1, fields * n + 2, fields * n + 3
    readout = window_readout(ema_decay, n)
    cmap = credit_map(gamma, n)
    drops = slice(num_features, num_features + n)
    immediate, grounded = num_features + n, num_features + n + 1
    progress, mismatch, checksum = grounded + 1, grounded + 2, grounded + 3
    matrix = np.zeros((at_features + num_features, checksum + 1))
    matrix[: fields * n, :num_features] = readout.matrix
    matrix[at_features:, :num_features] = np.diag(readout.carry)
    matrix[at_alpha, ALPHA_COLUMN] = readout.alpha_weight
    matrix[at_score, SCORE_COLUMN] = 1.0
    # the credit map's input [l_0, l_1 .. l_n, g_1 .. g_n] sits at these rows of x
    l_rows = TRACE_INDEX[progress_signal] * n + np.arange(n)
    g_rows = TRACE_INDEX[GROUNDING_FIELD] * n + np.arange(n)
    matrix[np.r_[at_l0, l_rows, g_rows], drops.start: grounded + 1] = cmap.matrix
    matrix[l_rows[-1], progress] = 1.0
    matrix[TRACE_INDEX["mismatch"] * n + n - 1, mismatch] = 1.0
    matrix[: fields * n, checksum] = 1.0
    matrix[at_score, checksum] = 1.0
    matrix.setflags(write=False)
    return _WindowMap(matrix, cmap.weights, drops, immediate, grounded, progress, mismatch, checksum)


# OpenBLAS runs a matrix product on several threads above 65536 * 4 multiply-adds. On a shared 2-core
# machine those threads were measured to stall the window map of 1024 runs ((1024 x 43) @ (43 x 22))
# from ~25 us to several ms; products over row blocks below that size stay on the calling thread.
_SINGLE_THREAD_WORK = 65536 * 4


def _matmul_rows(x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``x @ matrix``, computed over row blocks small enough for a single-threaded BLAS call."""
    rows = max(1, _SINGLE_THREAD_WORK // (matrix.shape[0] * matrix.shape[1]))
    if x.shape[0] <= rows:
        return x @ matrix
    out = np.empty((x.shape[0], matrix.shape[1]))
    for start in range(0, x.shape[0], rows):
        np.matmul(x[start:start + rows], matrix, out=out[start:start + rows])
    return out


def advance(state: EpisodeState, action: Action, window: Window, config: ExposureEnvConfig) -> Step:
    """One decision for ``B`` runs whose windows all have the same length (see the module docstring)."""
    values = window.trace.values  # (F, B, n)
    fields, batch, n = values.shape
    if n < 1:
        raise ValueError("a window holds at least one update")
    flat = values.reshape(1, fields * n) if batch == 1 else values.transpose(1, 0, 2).reshape(batch, fields * n)
    m = _window_map(config.ema_decay, config.gamma, config.progress_signal, n)
    x = np.concatenate((flat, state.progress[:, None], action.alpha[:, None], window.score[:, None], state.features),
                       axis=1)
    y = _matmul_rows(x, m.matrix)
    parts = RewardComponents(y[:, m.immediate], np.maximum(y[:, m.drops], 0.0) @ m.discount, y[:, m.grounded])
    reward = config.reward(parts)
    updates_done = state.updates_done + n
    features = y[:, : len(OBSERVATION_FIELDS)]
    np.divide(updates_done, config.total_updates, out=features[:, PROGRESS_COLUMN])
    new = EpisodeState(updates_done, features, y[:, m.progress], y[:, m.mismatch])
    diverged = ~np.isfinite(y[:, m.checksum])
    reasons = window.reasons
    terminated = new.updates_done >= config.total_updates
    # (np.count_nonzero: ndarray.any() costs a microsecond more at batch size one, on every step)
    if np.count_nonzero(diverged) or np.count_nonzero(window.diverged):
        diverged |= window.diverged
        new = EpisodeState(*(np.where(diverged.reshape(-1, *(1,) * (old.ndim - 1)), old, fresh)
                             for old, fresh in zip(state, new)))
        reward = np.where(diverged, -float(config.divergence_penalty), reward)
        parts = RewardComponents(*(np.where(diverged, 0.0, part) for part in parts))
        reasons = np.where(diverged & (reasons == ""), "non-finite statistics", reasons).astype(object)
        terminated = diverged | (new.updates_done >= config.total_updates)
    return Step(new, to_observation(new.features), reward, terminated, diverged, reasons, parts, state.progress,
                action, n, window.trace.with_progress_signal(config.progress_signal))


# -- info ----------------------------------------------------------------------------------------
def reset_info(state: EpisodeState, config: ExposureEnvConfig, row: int | None = None) -> ResetInfo:
    """The reset ``info``: Python scalars for run ``row``, or arrays over the batch (``row=None``)."""
    if row is None:
        counts = state.updates_done
        return ResetInfo(score=state.score.copy(), mismatch=state.mismatch.copy(), updates_done=counts.copy(),
                         total_updates=np.full_like(counts, config.total_updates),
                         hold_window=np.full_like(counts, config.hold_window),
                         num_decisions=np.full_like(counts, config.num_decisions))
    return ResetInfo(score=float(state.features[row, SCORE_COLUMN]), mismatch=float(state.mismatch[row]),
                     updates_done=int(state.updates_done[row]), total_updates=config.total_updates,
                     hold_window=config.hold_window, num_decisions=config.num_decisions)


def step_info(step: Step, config: ExposureEnvConfig, row: int | None = None) -> StepInfo:
    """The step ``info``: Python scalars and the window's trace for run ``row``, or arrays over the
    batch (``row=None``)."""
    parts = step.components
    if row is None:
        info: StepInfo = reset_info(step.state, config)  # type: ignore[assignment]
        info.update(reveal_ratio=step.action.alpha, action_clipped=step.action.clipped,
                    num_updates=np.broadcast_to(step.num_updates, step.diverged.shape).astype(np.int64),
                    progress_before=step.progress_before, trace=step.trace,
                    reward_components=parts._asdict(), diverged=step.diverged, divergence_reason=step.reasons)
        return info
    state = step.state
    return StepInfo(
        score=float(state.features[row, SCORE_COLUMN]), mismatch=float(state.mismatch[row]),
        updates_done=int(state.updates_done[row]), total_updates=config.total_updates,
        hold_window=config.hold_window, num_decisions=config.num_decisions,
        reveal_ratio=float(step.action.alpha[row]), action_clipped=bool(step.action.clipped[row]),
        num_updates=step.num_updates if isinstance(step.num_updates, int) else int(step.num_updates[row]),
        progress_before=float(step.progress_before[row]),
        trace=step.trace.window(row),
        reward_components={name: float(part[row]) for name, part in zip(REWARD_COMPONENT_KEYS, parts)},
        diverged=bool(step.diverged[row]), divergence_reason=str(step.reasons[row]))

