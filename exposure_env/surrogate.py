"""A cheap numpy surrogate of a self-distillation run, and its :class:`TrainingBackend`.

The surrogate is three pure functions over a frozen :class:`SurrogateParams`:
:func:`initial` draws a batch of students, :func:`transition` applies ``n`` student updates at
a held reveal ratio and returns every per-update statistic, :func:`observe` measures the
statistics of a state. They work on a batch of ``B`` independent runs at once; the single-env
:class:`SurrogateBackend` is the same functions at ``B = 1`` and the native batched env in
:mod:`exposure_env.vector` is the same functions at any ``B``. The module knows nothing about
rewards, observations or Gymnasium: :class:`~exposure_env.env.ExposureEnv` turns what it reports
into an episode.

## The model

A student has a competence ``c_d in (0, 1)`` on each of ``D`` difficulty levels (default three:
easy, medium, hard), held as a logit ``z_d``. A teacher that sees a fraction ``alpha`` of the
reference reasoning (and always the final answer) shows the student targets that exceed what it
can do by the *gap*

    g_d = g_answer + alpha * depth_d * (1 - c_d)

(``g_answer``: what the final answer alone reveals; ``depth_d``: how far the reference reasoning of
level ``d`` goes beyond the student). Learning follows a zone of proximal development: a larger gap
carries more signal but is absorbed less, and targets far beyond the student do harm (the student
is pushed to imitate reasoning it cannot follow):

    dz_d = eta * g_d * exp(-g_d**2 / (2 w**2)) - harm * c_d * max(0, g_d - g_harm) + learning noise

(the harm scales with ``c_d``: a student can only lose what it has, so a level under too-strong
targets decays towards zero competence instead of running away in logit space).

Absorption peaks at ``g_d = w``, so the best reveal ratio ``alpha*_d ~ (w - g_answer) /
(depth_d (1 - c_d))`` rises with competence and is lower on deep (hard) levels. A shallow,
transient component ``s`` (surface imitation of the revealed reference) follows the exposure with
per-update persistence ``rho``:

    s <- rho * s + (1 - rho) * shallow_gain * alpha

It lowers the probe NLL at once under high exposure but carries no competence and fades as soon as
the exposure drops, which is what makes the immediate learning-progress reward misleading.

Per update the reported statistics are read off the latent features, with ``S = sum_d mix_d c_d``
(expected accuracy = ``score``) and ``G = sum_d mix_d g_d`` (mean gap):

    loss          = loss_floor + loss_per_gap * G          (forward-KL of the update, nats/token)
    loss_tail     = tail_floor + tail_per_gap * G          (90th percentile per-token loss)
    mismatch      = mm_floor + mm_range * (1 - exp(-G / mm_scale))   (top-1 disagreement)
    probe_nll     = nll_floor + nll_range * (1 - S) - s
    confidence    = conf_low + conf_range * S
    teacher_ref_logprob = ref_logprob_hidden + (ref_logprob_shown - ref_logprob_hidden) * alpha
    grad_norm     = grad_floor + grad_per_gap * G
    rollout_length = length_at_zero + (length_at_one - length_at_zero) * S

plus zero-mean uniform observation noise of a per-field standard deviation (uniform rather than
Gaussian because it is about five times cheaper to draw here and its bounded support keeps the
statistics in range), clipped to each statistic's valid range. ``score`` is the expectation itself
and carries no noise. The observation model is linear in the features ``(1, S, G, exp(-G /
mm_scale), s, alpha)``, which makes it a least-squares fit away from real traces.

Within a window of ``n`` updates at a held ``alpha``, ``dz`` is evaluated once at the window start
(an explicit Euler step of ``n`` updates) and the transient is advanced exactly, so a whole window
is a handful of vectorised numpy calls over ``(D, B, n)`` arrays and one draw of random numbers.

## Why these dynamics and defaults

A probe of the real tiny backend (``TINY-SETUP-NOTES.md``) found: full reveal hurt a ~20% student
(19% -> 10% over 150 updates) and was best for a 53-79% student (-> 97-99%); alpha = 0.5 helped the
weak students; the mismatch rose with the reveal ratio and shrank as the student improved. The
gap model gives these directions (the gap grows with ``alpha`` and shrinks with ``c``), and the
defaults were tuned by hand and a small random search so that, over 150 updates at a fixed alpha,
a 0.2 student loses accuracy at ``alpha = 1`` (0.20 -> 0.19) and gains at 0.5 (-> 0.53), the best
alpha rises with competence (0.25, 0.5, 0.75, 1.0 for students at 0.2, 0.4, 0.6, 0.8) and a 0.8
student does best at ``alpha = 1`` (-> 0.95). The surrogate's optimum rises a little later than
the real one (a 0.6 student prefers 0.75; the real probe's preferred 1.0) because its hard level
is still weak; the real task had a single difficulty. Initial competence is drawn per reset
(``init_ability_low..high`` plus per-level jitter; scores about 0.2-0.6) so runs start weak to
medium, where the schedule matters. Level offsets and depths make hard levels weaker and deeper,
so they prefer less exposure (paper claim 3). With these defaults the best fixed alpha of the
default run is 0.5 (paper: 0.5) and a schedule that raises exposure with competence beats it by
about one to two points (see ``benchmarks/surrogate_sweep.py``).

The transient ``s`` encodes the hypothesis that a student quickly copies the surface of revealed
references (the probe set *is* reference solutions). It is what makes a greedy one-window
controller choose full exposure. Its size is deliberately small: the ``discounted`` reward sums
only positive drops, so any component that rises and falls with the exposure pays a controller for
every rise and never charges it for the fall; with ``shallow_gain = 0.3`` an alternating 0/1
schedule earned about three times the discounted return of any sensible schedule. At the default
0.1 (persistence 0.85) it earns less than the best fixed alpha. The teacher's reference log-prob spans
only -0.3 .. -0.1 for the same reason: with ``lambda_gt = 0.05`` a wider span lets the ``G_gt``
term alone make full exposure the best-rewarded fixed schedule (with this span, 0.05 still moves
the best-rewarded fixed ratio from 0.5 to 0.75: hence the default ``lambda_gt = 0.005``). Both are
parameters to fit to real traces; every parameter is a plain float or tuple, and
:mod:`exposure_env.calibration` (``atesd calibrate``) fits them.

## Fitted to the real tiny default: where it and the papers disagree

The defaults above encode the papers' claims, and ``tests/exposure_env/test_surrogate_phenomena.py``
holds them to those claims. ``params="tiny-qwen3"`` is the fit to 40 traces of the real tiny default
(``benchmarks/results/calibration_tiny_qwen3.json``), and ``tests/exposure_env/test_calibrated_surrogate.py``
holds it to the real fixed-exposure study (``benchmarks/results/fixed_exposure_qwen3.json``) instead.
Where they disagree, the real backend showed:

- **Full exposure is not worse.** Over 400 updates the final score rises with the reveal ratio and
  saturates: alpha 0 and 0.25 leave the student near its warm start, 0.5 lifts it part of the way,
  0.75 and 1 reach the ceiling (the papers: an interior optimum, 0.5).
- **Mismatch grows with alpha only while the student is the same**: over the first quarter of the
  runs (before any take-off) the top-1 disagreement rises from 0.041 (alpha 0) to 0.064-0.065
  (0.75, 1), as the papers say; averaged over whole runs it is flat (0.038-0.045), because a run
  that takes off ends with a student that agrees with its teacher. The fit keeps a mismatch that
  grows with the mean gap, with a small range.
- **Every difficulty level prefers the most exposure** (the papers: easy levels more than hard).
- **No transient**: the fitted ``shallow_gain`` is ~1e-5, so the real probe NLL shows no surface
  imitation that fades with the exposure; the fit explains the runs by competence alone.
- **Take-off, not steady progress**: a run sags for ~100-200 updates before its score rises. The fit
  reproduces it with two of its three latent levels starting near zero competence (logits about
  -18 and -21) and one at 0.84, so competence climbs out of the flat end of the sigmoid. These
  latent levels are not the task's difficulty levels (the traces carry the overall score only);
  ``init_ability_*`` and ``init_jitter`` are 0 because every real run starts from the same warm start.

Collapse: when the expected accuracy falls below ``collapse_score`` the run is reported as
diverged (the env then terminates with its divergence penalty); ``collapse_score = 0`` disables it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import numpy as np
from scipy.special import expit

from exposure_env.config import ExposureEnvConfig, split_env_kwargs
from exposure_env.errors import ConfigError, ResetNeededError, check_range
from exposure_env.types import (
    INITIAL_REVEAL_RATIO,
    TRACE_BOUNDS,
    TRACE_FIELDS,
    TRACE_INDEX,
    TrainingStats,
    UpdateTrace,
    WindowResult,
    stats_from_values,
)

NUM_FEATURES = 6  # (1, S, G, exp(-G / mm_scale), s, alpha): the observation model's inputs
_UNIFORM_STD = math.sqrt(12.0)  # a uniform variable on [0, 1) scaled by sqrt(12) has unit std
# For big batches the uniforms are 16-bit, (k + 0.5) / 2**16 with k uniform on 0..2**16-1, four per
# raw 64-bit draw: about four times cheaper than Generator.random, and ample resolution for noise.
# Small draws (a single run) use Generator.random, which is one call. Both have mean 0.5.
_UNIFORM_LEVELS = 65536
_RAW_DRAW_MIN = 4096

# Valid range of every reported statistic (TRACE_FIELDS order); noisy values are clipped into it.
TRACE_LOW = np.array([TRACE_BOUNDS[name][0] for name in TRACE_FIELDS])
TRACE_HIGH = np.array([TRACE_BOUNDS[name][1] for name in TRACE_FIELDS])
_TRACE_LOW, _TRACE_HIGH = TRACE_LOW[:, None, None], TRACE_HIGH[:, None, None]


@dataclass(frozen=True)
class SurrogateParams:
    """Parameters of the surrogate (see the module docstring for the equations they enter)."""

    # --- the student and the difficulty mix -------------------------------------------------
    difficulty_mix: tuple[float, ...] = (0.3, 0.4, 0.3)
    """Share of each difficulty level (easy .. hard) in the evaluation set; sums to 1."""
    level_offset: tuple[float, ...] = (-0.5, 0.0, 0.5)
    """Per-level logit offset: level ``d`` starts at ``ability - level_offset[d]``."""
    level_depth: tuple[float, ...] = (0.8, 1.0, 1.2)
    """Per-level depth: how far the reference reasoning goes beyond a student at ``c = 0``."""
    init_ability_low: float = -1.3
    """Lower end of the uniform draw of the student's initial ability (logit)."""
    init_ability_high: float = 0.2
    """Upper end of the uniform draw of the student's initial ability (logit)."""
    init_jitter: float = 0.25
    """Std of the per-level Gaussian jitter of the initial logits."""
    level_steps: tuple[float, ...] = ()
    """Reasoning steps ``m_d`` of each level's reference solutions. When given, exposure is
    quantized as the real backend quantizes it: level ``d``'s teacher sees ``floor(alpha m_d) / m_d``
    of the reasoning (the ``k = floor(alpha m)`` rule), in the gap, the transient and the teacher's
    reference log-prob. Empty (the hand-set default): every level sees ``alpha`` itself."""
    # --- learning dynamics -------------------------------------------------------------------
    answer_gap: float = 0.05
    """Gap that showing the final answer alone opens (alpha = 0)."""
    learning_rate: float = 0.08
    """eta: logit gain per update per unit of absorbed gap."""
    absorb_width: float = 0.28
    """w: the gap at which the teacher signal is absorbed best."""
    harm_rate: float = 0.5
    """Logit loss per update per unit of gap beyond ``harm_gap``, scaled by the competence at stake."""
    harm_gap: float = 0.7
    """Gap beyond which targets are too strong and do harm."""
    learning_noise: float = 0.01
    """Std of the per-update random change of each level's logit (SGD noise)."""
    shallow_gain: float = 0.1
    """Steady-state probe-NLL drop (nats) of the transient component at alpha = 1."""
    shallow_persistence: float = 0.85
    """rho: per-update persistence of the transient component."""
    collapse_score: float = 0.02
    """Expected accuracy below which the run counts as collapsed (diverged); 0 disables."""
    initial_reveal_ratio: float = INITIAL_REVEAL_RATIO
    """Reveal ratio the statistics at reset are measured at (no update has been applied yet); the
    shared neutral default of every backend (:data:`exposure_env.types.INITIAL_REVEAL_RATIO`)."""
    # --- observation model -------------------------------------------------------------------
    loss_floor: float = 0.02
    """Distillation loss (nats/token) at zero gap."""
    loss_per_gap: float = 0.8
    """Increase of the loss per unit of mean gap G."""
    tail_floor: float = 0.1
    """90th-percentile per-token loss at zero gap."""
    tail_per_gap: float = 2.5
    """Increase of the loss tail per unit of mean gap."""
    mismatch_floor: float = 0.02
    """Top-1 disagreement at zero gap."""
    mismatch_range: float = 0.6
    """Disagreement added as the gap grows large (floor + range <= 1)."""
    mismatch_scale: float = 0.4
    """Gap over which the disagreement saturates (``1 - exp(-G / scale)``)."""
    nll_floor: float = 0.4
    """Probe NLL (nats/token) of a student with expected accuracy 1 and no transient."""
    nll_range: float = 2.0
    """Probe NLL added per unit of missing accuracy (1 - S)."""
    confidence_low: float = 0.35
    """Mean top-1 probability of a student with expected accuracy 0."""
    confidence_range: float = 0.6
    """Confidence added per unit of expected accuracy (low + range <= 1)."""
    ref_logprob_hidden: float = -0.3
    """Teacher mean log-prob per token of the reference solution at alpha = 0 (answer shown, no reasoning)."""
    ref_logprob_shown: float = -0.1
    """Teacher mean log-prob per token of the reference solution at alpha = 1."""
    grad_floor: float = 0.3
    """Gradient norm at zero gap."""
    grad_per_gap: float = 3.0
    """Increase of the gradient norm per unit of mean gap."""
    length_at_zero: float = 40.0
    """Mean rollout length (tokens) of a student with expected accuracy 0."""
    length_at_one: float = 26.0
    """Mean rollout length (tokens) of a student with expected accuracy 1."""
    observation_noise: tuple[float, ...] = (0.01, 0.03, 0.01, 0.01, 0.01, 0.01, 0.1, 1.0)
    """Std of the observation noise of each statistic, in ``TRACE_FIELDS`` order."""

    def __post_init__(self) -> None:
        for name in ("difficulty_mix", "level_offset", "level_depth", "observation_noise", "level_steps"):
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)) or not all(_is_number(v) for v in value):
                raise ConfigError(name, "a tuple of numbers", value)
            object.__setattr__(self, name, tuple(float(v) for v in value))
        levels = len(self.difficulty_mix)
        if levels < 1 or any(v <= 0 for v in self.difficulty_mix) or abs(sum(self.difficulty_mix) - 1) > 1e-6:
            raise ConfigError("difficulty_mix", "a non-empty tuple of positive shares summing to 1",
                              self.difficulty_mix)
        for name in ("level_offset", "level_depth"):
            if len(getattr(self, name)) != levels:
                raise ConfigError(name, f"a tuple of {levels} numbers (one per difficulty level)",
                                  getattr(self, name))
        if self.level_steps and (len(self.level_steps) != levels or any(v < 1 or v != int(v) for v in self.level_steps)):
            raise ConfigError("level_steps", f"empty or a tuple of {levels} integers >= 1 (one per difficulty level)",
                              self.level_steps)
        if any(v < 0 for v in self.level_depth):
            raise ConfigError("level_depth", "a tuple of numbers >= 0", self.level_depth)
        if len(self.observation_noise) != len(TRACE_FIELDS) or any(v < 0 for v in self.observation_noise):
            raise ConfigError("observation_noise", f"a tuple of {len(TRACE_FIELDS)} numbers >= 0 "
                              f"(one per field of {TRACE_FIELDS})", self.observation_noise)
        for f in dataclasses.fields(self):
            if not isinstance(f.default, tuple):
                check_range(f.name, getattr(self, f.name))
        check_range("init_ability_high", self.init_ability_high, self.init_ability_low, None)
        for name in ("init_jitter", "answer_gap", "learning_rate", "harm_rate", "harm_gap", "learning_noise",
                     "shallow_gain", "loss_floor", "loss_per_gap", "tail_floor", "tail_per_gap",
                     "mismatch_floor", "mismatch_range", "nll_floor", "nll_range", "confidence_low",
                     "confidence_range", "grad_floor", "grad_per_gap"):
            check_range(name, getattr(self, name), 0.0, None)
        check_range("absorb_width", self.absorb_width, 0.0, None, low_inclusive=False)
        check_range("mismatch_scale", self.mismatch_scale, 0.0, None, low_inclusive=False)
        check_range("shallow_persistence", self.shallow_persistence, 0.0, 1.0, high_inclusive=False)
        check_range("collapse_score", self.collapse_score, 0.0, 1.0, high_inclusive=False)
        check_range("initial_reveal_ratio", self.initial_reveal_ratio, 0.0, 1.0)
        check_range("mismatch_range", self.mismatch_range, 0.0, 1.0 - self.mismatch_floor)
        check_range("confidence_range", self.confidence_range, 0.0, 1.0 - self.confidence_low)
        check_range("ref_logprob_hidden", self.ref_logprob_hidden, -100.0, 0.0)
        check_range("ref_logprob_shown", self.ref_logprob_shown, self.ref_logprob_hidden, 0.0)
        check_range("length_at_zero", self.length_at_zero, 1.0, None)
        check_range("length_at_one", self.length_at_one, 1.0, None)

    @property
    def num_levels(self) -> int:
        return len(self.difficulty_mix)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "SurrogateParams":
        """Build from plain data (e.g. a JSON file of fitted values); unknown keys raise."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError("params", f"a mapping with keys among SurrogateParams fields ({', '.join(sorted(names))})",
                              unknown, hint="unknown keys")
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (floats and lists), round-trips through :meth:`from_dict` and JSON."""
        return {f.name: (list(v) if isinstance(v, tuple) else v)
                for f in dataclasses.fields(self) for v in (getattr(self, f.name),)}

    def replace(self, **changes: Any) -> "SurrogateParams":
        return dataclasses.replace(self, **changes)

    @cached_property
    def arrays(self) -> "_Arrays":
        """Constants derived once per params object (not dataclass fields: excluded from eq/hash)."""
        return _Arrays.build(self)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)


class _Arrays(NamedTuple):
    """Numpy constants of one :class:`SurrogateParams`, in the shapes the hot path wants."""

    mix: np.ndarray  # (D,)
    depth: np.ndarray  # (D, 1)
    offset: np.ndarray  # (D,)
    score_gap_rows: np.ndarray  # (2, D): [mix, mix * depth], one matmul gives S and sum mix*depth*c
    mix_depth_sum: float
    steps: np.ndarray  # (D, 1) level_steps (empty when not given)
    readout: np.ndarray  # (F, K + F): observation model, then the per-field noise widths
    window: dict  # num_updates -> _WindowConstants, filled lazily

    @classmethod
    def build(cls, p: SurrogateParams) -> "_Arrays":
        mix = np.array(p.difficulty_mix)
        depth = np.array(p.level_depth)
        fields = len(TRACE_FIELDS)
        readout = np.zeros((fields, NUM_FEATURES + fields))
        # columns: 0 const, 1 S, 2 G, 3 exp(-G / mm_scale), 4 s, 5 revealed share (alpha), then one uniform
        # per field
        row = TRACE_INDEX
        readout[row["loss"], [0, 2]] = p.loss_floor, p.loss_per_gap
        readout[row["loss_tail"], [0, 2]] = p.tail_floor, p.tail_per_gap
        readout[row["mismatch"], [0, 3]] = p.mismatch_floor + p.mismatch_range, -p.mismatch_range
        readout[row["probe_nll"], [0, 1, 4]] = p.nll_floor + p.nll_range, -p.nll_range, -1.0
        readout[row["confidence"], [0, 1]] = p.confidence_low, p.confidence_range
        readout[row["teacher_ref_logprob"], [0, 5]] = p.ref_logprob_hidden, p.ref_logprob_shown - p.ref_logprob_hidden
        readout[row["grad_norm"], [0, 2]] = p.grad_floor, p.grad_per_gap
        readout[row["rollout_length"], [0, 1]] = p.length_at_zero, p.length_at_one - p.length_at_zero
        # Noise is span * U[0, 1) added by the same matmul; centre it through the constant column.
        span = np.array(p.observation_noise) * _UNIFORM_STD
        readout[:, NUM_FEATURES:] = np.diag(span)
        readout[:, 0] -= span * 0.5
        return cls(mix=mix, depth=depth[:, None], offset=np.array(p.level_offset),
                   score_gap_rows=np.stack([mix, mix * depth]), mix_depth_sum=float(mix @ depth),
                   steps=np.array(p.level_steps, dtype=np.float64)[:, None],
                   readout=readout, window={})

    def window_constants(self, p: SurrogateParams, num_updates: int) -> "_WindowConstants":
        constants = self.window.get(num_updates)
        if constants is None:
            ramp = np.arange(1, num_updates + 1, dtype=np.float64)
            # walk = uniforms @ cumulative: the running sum of the learning noise over the window
            cumulative = np.triu(np.ones((num_updates, num_updates))) * (p.learning_noise * _UNIFORM_STD)
            constants = self.window[num_updates] = _WindowConstants(ramp, p.shallow_persistence**ramp, cumulative)
        return constants


class _WindowConstants(NamedTuple):
    ramp: np.ndarray  # (n,) 1..n
    rho_powers: np.ndarray  # (n,) rho**1 .. rho**n
    cumulative: np.ndarray  # (n, n) upper-triangular, scaled by the learning-noise width


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # scipy's expit is one call (fastest for the single env) but not vectorised well for big
    # batches, where three SIMD numpy calls win.
    return expit(x) if x.size < 512 else 1.0 / (1.0 + np.exp(-x))


class Workspace:
    """Scratch memory that :func:`transition` and :func:`observe` may reuse between calls.

    Optional: without one every call allocates its scratch afresh. Big batches run markedly faster
    with one (less memory churn). A workspace belongs to one caller (one env); never share it
    between threads. Outputs never alias it.
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer: np.ndarray | None = None

    def array(self, shape: tuple[int, ...]) -> np.ndarray:
        buffer = self._buffer
        if buffer is None or buffer.shape != shape:
            buffer = self._buffer = np.empty(shape)
        return buffer


class SurrogateState(NamedTuple):
    """Latent state of a batch of ``B`` runs."""

    logit: np.ndarray
    """(D, B) competence logits per difficulty level (levels first: one matmul reads them all)."""
    shallow: np.ndarray
    """(B,) transient probe-NLL drop ``s`` (nats)."""


class SurrogateWindow(NamedTuple):
    """What :func:`transition` returns."""

    state: SurrogateState
    traces: np.ndarray
    """(F, B, n): ``traces[i]`` is the per-update (B, n) array of ``TRACE_FIELDS[i]``."""
    score: np.ndarray
    """(B, n) expected accuracy after each update (noise-free)."""
    features: np.ndarray
    """(K, B, n) the observation model's inputs per update: 1, S, G, exp(-G / mismatch_scale), the
    transient s, the revealed share. A view of scratch memory: valid until the next call that
    reuses the same :class:`Workspace` (copy it to keep it)."""


class SurrogateObservation(NamedTuple):
    """What :func:`observe` returns: the statistics of a state, without any update."""

    stats: np.ndarray
    """(F, B): ``stats[i]`` is ``TRACE_FIELDS[i]`` of each run."""
    score: np.ndarray
    """(B,) expected accuracy."""


def initial(params: SurrogateParams, rng: np.random.Generator, batch_size: int) -> SurrogateState:
    """Draw ``batch_size`` fresh students (ability uniform, per-level Gaussian jitter)."""
    ability = rng.uniform(params.init_ability_low, params.init_ability_high, size=batch_size)
    jitter = rng.standard_normal((params.num_levels, batch_size)) * params.init_jitter
    logit = ability - params.arrays.offset[:, None] + jitter
    return SurrogateState(logit, np.zeros(batch_size))


def initial_for_seeds(params: SurrogateParams, seeds) -> SurrogateState:
    """The students ``reset(seed=s)`` of the single env draws, one column per seed, as one batch."""
    return stack_states([initial(params, np.random.default_rng(seed), 1) for seed in seeds])


def stack_states(states) -> SurrogateState:
    """Concatenate states along the batch axis."""
    return SurrogateState(np.concatenate([s.logit for s in states], axis=1),
                          np.concatenate([s.shallow for s in states]))


def tile_state(state: SurrogateState, copies: int) -> SurrogateState:
    """``copies`` copies of a batch, one after the other (e.g. one per candidate alpha)."""
    return SurrogateState(np.tile(state.logit, (1, copies)), np.tile(state.shallow, copies))


def competence(state: SurrogateState) -> np.ndarray:
    """(D, B) competence per difficulty level."""
    return _sigmoid(state.logit)


def expected_accuracy(params: SurrogateParams, state: SurrogateState) -> np.ndarray:
    """(B,) difficulty-mix-weighted competence: the surrogate's ``score``."""
    return params.arrays.mix @ competence(state)


def transition(
    params: SurrogateParams,
    state: SurrogateState,
    alpha: np.ndarray,
    num_updates: int,
    rng: np.random.Generator,
    workspace: Workspace | None = None,
) -> SurrogateWindow:
    """Apply ``num_updates`` student updates at reveal ratios ``alpha`` (shape (B,), in [0, 1])."""
    a = params.arrays
    w = a.window_constants(params, num_updates)
    levels, batch = state.logit.shape
    buffer = _draw_buffer(rng, levels, batch, num_updates, workspace)

    comp = _sigmoid(state.logit)
    shown = revealed_share(params, alpha)  # (D, B), or alpha (B,) itself without level_steps
    gap = (1.0 - comp) * a.depth * shown + params.answer_gap  # (D, B)
    absorbed = np.exp(gap * gap * (-0.5 / params.absorb_width**2)) * (gap * params.learning_rate)
    harmed = np.maximum(gap - params.harm_gap, 0.0) * (comp * params.harm_rate)
    # the uniform learning noise has mean learning_noise * sqrt(12) * 0.5 per update: removed here
    drift = absorbed - harmed - params.learning_noise * (_UNIFORM_STD * 0.5)
    # one 2-D matmul (a 3-D one would loop over the D * B rows in numpy)
    walk = buffer[NUM_FEATURES + len(TRACE_FIELDS):].reshape(levels * batch, num_updates) @ w.cumulative
    logit = drift[:, :, None] * w.ramp + walk.reshape(levels, batch, num_updates)
    logit += state.logit[:, :, None]

    target = params.shallow_gain * (shown if shown.ndim == 1 else a.mix @ shown)
    shallow = buffer[4]  # the transient is itself a feature of the observation model
    np.multiply((state.shallow - target)[:, None], w.rho_powers, out=shallow)
    shallow += target[:, None]
    traces, score = _emit(params, _sigmoid(logit), shown, buffer)
    return SurrogateWindow(SurrogateState(logit[:, :, -1], shallow[:, -1].copy()), traces, score,
                           buffer[:NUM_FEATURES])


def collapsed(params: SurrogateParams, score: np.ndarray) -> np.ndarray:
    """Which runs with this (end-of-window) expected accuracy have collapsed (count as diverged)."""
    return score < params.collapse_score


def collapse_reason(params: SurrogateParams) -> str:
    """The divergence reason of a collapsed run."""
    return f"collapse: expected accuracy below collapse_score {params.collapse_score}"


def observe(
    params: SurrogateParams,
    state: SurrogateState,
    alpha: np.ndarray,
    rng: np.random.Generator | None = None,
    workspace: Workspace | None = None,
) -> SurrogateObservation:
    """Statistics of ``state`` as measured with the teacher at ``alpha`` (B,); noise-free without ``rng``."""
    levels, batch = state.logit.shape
    if rng is None:
        buffer = np.full((NUM_FEATURES + len(TRACE_FIELDS), batch, 1), 0.5)  # uniforms at their mean
    else:
        buffer = _draw_buffer(rng, 0, batch, 1, workspace)
    buffer[4, :, 0] = state.shallow
    traces, score = _emit(params, competence(state)[:, :, None], revealed_share(params, alpha), buffer)
    return SurrogateObservation(traces[:, :, 0], score[:, 0])


def _draw_buffer(rng: np.random.Generator, levels: int, batch: int, n: int,
                 workspace: Workspace | None) -> np.ndarray:
    """(K + F + levels, B, n): K feature rows (filled later), then F observation-noise and
    ``levels`` learning-noise uniforms on (0, 1) with mean 0.5, drawn in one call."""
    fields = len(TRACE_FIELDS)
    shape = (NUM_FEATURES + fields + levels, batch, n)
    buffer = np.empty(shape) if workspace is None else workspace.array(shape)
    count = (fields + levels) * batch * n
    if count < _RAW_DRAW_MIN:  # one call is cheapest for a single run
        rng.random(out=buffer[NUM_FEATURES:])
        return buffer
    bits = rng.bit_generator.random_raw(-(-count // 4)).view(np.uint16)[:count]
    np.multiply(bits.reshape(fields + levels, batch, n), 1.0 / _UNIFORM_LEVELS, out=buffer[NUM_FEATURES:])
    buffer[NUM_FEATURES:] += 0.5 / _UNIFORM_LEVELS
    return buffer


def revealed_share(params: SurrogateParams, alpha: np.ndarray) -> np.ndarray:
    """The share of each level's reference reasoning the teacher sees at ``alpha`` (B,): ``alpha``
    itself without ``level_steps``, else the (D, B) quantized shares ``floor(alpha m_d) / m_d``."""
    if not params.level_steps:
        return alpha
    steps = params.arrays.steps
    return np.minimum(np.floor(alpha * steps + 1e-9), steps) / steps  # the backend's k = floor(alpha m) rule


def _emit(
    params: SurrogateParams, comp: np.ndarray, shown: np.ndarray, buffer: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Reported statistics (F, B, n) and score (B, n) from competences (D, B, n) and the revealed
    share (``alpha`` (B,), or per level (D, B), see :func:`revealed_share`).

    ``buffer`` holds the transient in row 4 and the observation-noise uniforms after the feature
    rows; the remaining feature rows are filled here and one matmul reads everything out.
    """
    a = params.arrays
    levels, batch, n = comp.shape
    np.matmul(a.score_gap_rows, comp.reshape(levels, batch * n), out=buffer[1:3].reshape(2, batch * n))
    score, gap = buffer[1], buffer[2]
    if shown.ndim == 1:
        np.subtract(a.mix_depth_sum, gap, out=gap)  # sum_d mix_d depth_d (1 - c_d)
        gap *= shown[:, None]
        alpha_feature = shown[:, None]
    else:  # sum_d mix_d depth_d r_d (1 - c_d) with a per-level revealed share r_d
        weights = a.score_gap_rows[1][:, None] * shown  # (D, B): mix_d depth_d r_d
        np.subtract(weights.sum(axis=0)[:, None], np.einsum("db,dbn->bn", weights, comp), out=gap)
        alpha_feature = (a.mix @ shown)[:, None]
    gap += params.answer_gap
    np.multiply(gap, -1.0 / params.mismatch_scale, out=buffer[3])
    np.exp(buffer[3], out=buffer[3])
    buffer[0] = 1.0
    buffer[5] = alpha_feature
    inputs = a.readout.shape[1]
    traces = (a.readout @ buffer[:inputs].reshape(inputs, batch * n)).reshape(-1, batch, n)
    np.minimum(np.maximum(traces, _TRACE_LOW, out=traces), _TRACE_HIGH, out=traces)  # np.clip's wrapper is slow
    return traces, score.copy()


# ----------------------------------------------------------------------------------------------
# kwargs -> params (shared by the single env and the native vector env)
# ----------------------------------------------------------------------------------------------
SURROGATE_KWARGS: tuple[str, ...] = ("params", "difficulty_mix")


def params_from_kwargs(kwargs: Mapping[str, Any]) -> SurrogateParams:
    """Surrogate parameters from ``gym.make`` kwargs: ``params`` (a dict of overrides or a
    :class:`SurrogateParams`) and the shortcut ``difficulty_mix``. Unknown kwargs raise."""
    unknown = sorted(set(kwargs) - set(SURROGATE_KWARGS))
    if unknown:
        raise ConfigError(unknown[0], "an ExposureEnvConfig field or one of " + ", ".join(SURROGATE_KWARGS),
                          kwargs[unknown[0]], hint="unknown keyword argument of ATESD-Surrogate-v0")
    params = kwargs.get("params")
    if params is None:
        params = SurrogateParams()
    elif isinstance(params, str):
        params = named_params(params)
    elif isinstance(params, Mapping):
        params = SurrogateParams.from_dict(params)
    elif not isinstance(params, SurrogateParams):
        raise ConfigError("params", "a shipped params name, a dict of SurrogateParams overrides or a SurrogateParams",
                          params)
    if kwargs.get("difficulty_mix") is not None:
        params = params.replace(difficulty_mix=tuple(kwargs["difficulty_mix"]))
    return params


PARAMS_DIR = Path(__file__).resolve().parent / "params"
"""Shipped parameter sets: ``<name>.json`` holds ``{"params": {...}, ...}`` (fit report beside it)."""


def shipped_params() -> tuple[str, ...]:
    """Names of the shipped parameter sets (``params="<name>"`` in ``gym.make``)."""
    return tuple(sorted(p.stem for p in PARAMS_DIR.glob("*.json")))


def named_params(name: str) -> SurrogateParams:
    """A shipped parameter set, e.g. ``tiny-qwen3`` (the surrogate fitted to the tiny default)."""
    path = PARAMS_DIR / f"{name}.json"
    if not path.is_file():
        names = ", ".join(repr(n) for n in shipped_params()) or "(none shipped)"
        raise ConfigError("params", f"a dict of SurrogateParams overrides or a shipped name: {names}", name)
    data = json.loads(path.read_text())
    return SurrogateParams.from_dict(data["params"])


def split_surrogate_kwargs(kwargs: Mapping[str, Any]) -> tuple[ExposureEnvConfig, SurrogateParams]:
    env_config, rest = split_env_kwargs(kwargs)
    return env_config, params_from_kwargs(rest)


# ----------------------------------------------------------------------------------------------
# the single-run backend
# ----------------------------------------------------------------------------------------------
class SurrogateBackend:
    """:class:`~exposure_env.types.TrainingBackend` over the surrogate at batch size 1."""

    def __init__(self, params: SurrogateParams | None = None) -> None:
        self.params = params if params is not None else SurrogateParams()
        self._rng: np.random.Generator | None = None
        self._state: SurrogateState | None = None
        self._updates_done = 0
        self._alpha = np.empty(1)

    @property
    def state(self) -> SurrogateState:
        """The latent state (batch of one); read-only use, e.g. for analysis."""
        if self._state is None:
            raise ResetNeededError("call reset() before reading the state")
        return self._state

    def reset(self, seed: int | None = None) -> TrainingStats:
        self._rng = np.random.default_rng(seed)
        self._state = initial(self.params, self._rng, 1)
        self._updates_done = 0
        alpha = self.params.initial_reveal_ratio
        observed = observe(self.params, self._state, np.array([alpha]), self._rng)
        return stats_from_values(0, alpha, observed.stats[:, 0].tolist(), float(observed.score[0]))

    def run_window(self, reveal_ratio: float, num_updates: int) -> WindowResult:
        if self._state is None:
            raise ResetNeededError("call reset() before run_window()")
        if not 0.0 <= reveal_ratio <= 1.0:  # also False for NaN
            raise ConfigError("reveal_ratio", "a number in [0, 1]", reveal_ratio)
        if type(num_updates) is not int or num_updates < 1:
            check_range("num_updates", num_updates, 1, None, integer=True)
            num_updates = int(num_updates)
        alpha = self._alpha
        alpha[0] = reveal_ratio
        window = transition(self.params, self._state, alpha, num_updates, self._rng)
        self._state = window.state
        self._updates_done += num_updates
        traces = window.traces[:, 0]  # (F, n)
        score = float(window.score[0, -1])
        stats = stats_from_values(self._updates_done, float(reveal_ratio), traces[:, -1].tolist(), score)
        if collapsed(self.params, score):
            return WindowResult(stats, UpdateTrace(traces), True, collapse_reason(self.params))
        return WindowResult(stats, UpdateTrace(traces))

    def state_dict(self) -> dict[str, Any]:
        if self._state is None:
            raise ResetNeededError("call reset() before state_dict()")
        return {
            "logit": self._state.logit.copy(),
            "shallow": self._state.shallow.copy(),
            "updates_done": self._updates_done,
            "rng_state": self._rng.bit_generator.state,
            "params": self.params.to_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        keys = ("logit", "shallow", "updates_done", "rng_state", "params")
        if not isinstance(state, Mapping) or any(k not in state for k in keys) or not isinstance(state["params"], Mapping):
            raise ConfigError("state", "a SurrogateBackend.state_dict() (keys " + ", ".join(keys) + ")",
                              sorted(state) if isinstance(state, Mapping) else state)
        params = SurrogateParams.from_dict(state["params"])
        if params != self.params:
            raise ConfigError("params", "the parameters this backend was built with", state["params"],
                              hint="the checkpoint comes from a surrogate with other parameters")
        self._state = SurrogateState(np.array(state["logit"], dtype=np.float64),
                                     np.array(state["shallow"], dtype=np.float64))
        self._updates_done = int(state["updates_done"])
        self._rng = np.random.default_rng()
        self._rng.bit_generator.state = state["rng_state"]

    def close(self) -> None:
        pass


def make_surrogate_env(**kwargs: Any):
    """Factory of ``ATESD-Surrogate-v0``: ``ExposureEnvConfig`` fields plus ``params`` /
    ``difficulty_mix`` as plain keyword arguments."""
    from exposure_env.env import ExposureEnv

    env_config, params = split_surrogate_kwargs(kwargs)
    return ExposureEnv(SurrogateBackend(params), env_config)
