"""Fit the surrogate to traces of real runs (``atesd calibrate``).

A trace is the decision log one controlled run writes (``decisions.jsonl`` of ``atesd run``, or the
``.jsonl.gz`` files a benchmark keeps): one JSON object per decision with the reveal ratio applied,
the in-run ``score`` after the window, the observation, and ``trace``, one list per statistic
with a value per student update. :func:`load_traces` reads them, checking every line.

:func:`fit` finds :class:`~exposure_env.surrogate.SurrogateParams` that reproduce the traces:

- The dynamics (initial competence per level, the gap model, absorption, harm, the transient) are
  nonlinear: they are fitted by ``scipy.optimize.least_squares`` on the noise-free surrogate, run
  with every trace's own reveal ratios from a common start (all runs of one model start from the
  same checkpoint, so the fitted surrogate starts every run in the same state).
- Given the latent trajectory, the observation model is linear in its features
  ``(1, S, G, exp(-G / scale), s, revealed share)``, so its coefficients are solved by bounded
  linear least squares inside every residual evaluation (variable projection).
- The residuals are standardized per statistic, so every statistic counts alike; ``score`` and the
  probe NLL, which decide what a controller is rewarded for, count ``focus_weight`` times.
- Noise: the observation noise of each statistic is the residual spread of the fit; the learning
  noise is chosen so that the surrogate's spread of final scores across seeds matches the real
  one within each schedule.

:func:`evaluate_fit` scores a fit on held-out runs: R^2 and RMSE per statistic over all updates,
and R^2 of the final score across runs. :func:`calibration_report` runs both held-out splits a fit
should pass: by seed (fit on some seeds, test on the others) and by schedule (fit on the
fixed-alpha runs, test on the schedules the fit never saw).

This module knows the decision-log format and the surrogate; it knows nothing about the backend
that produced the traces.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence

import numpy as np
from scipy import optimize

from exposure_env.errors import AtesdError, ConfigError, check_range
from exposure_env.surrogate import (
    TRACE_HIGH,
    TRACE_LOW,
    SurrogateParams,
    SurrogateState,
    named_params,
    transition,
)
from exposure_env.types import TRACE_FIELDS

SCORE = "score"
TARGETS: tuple[str, ...] = TRACE_FIELDS + (SCORE,)
"""What a fit is scored on: every per-update statistic, and the score after each window."""
_FIELD = {name: i for i, name in enumerate(TRACE_FIELDS)}


class TraceError(AtesdError, ValueError):
    """A trace file or line does not have the expected shape."""


class RunTrace(NamedTuple):
    """One run's decisions and per-update statistics."""

    source: str
    """The file it was read from."""
    label: str
    """The controller spec (e.g. ``fixed:0.5``, ``random``): what split-by-schedule groups by."""
    seed: int
    """The run seed (-1 when unknown)."""
    window_alpha: np.ndarray
    """(W,) reveal ratio of each window."""
    window_length: np.ndarray
    """(W,) updates of each window."""
    stats: np.ndarray
    """(F, U) every ``TRACE_FIELDS`` statistic after each of the U updates."""
    score: np.ndarray
    """(W + 1,) in-run score at reset and after each window; NaN where it was not refreshed."""

    @property
    def num_updates(self) -> int:
        return int(self.window_length.sum())

    @property
    def final_score(self) -> float:
        return float(self.score[-1])


# ----------------------------------------------------------------------------------------------
# reading traces
# ----------------------------------------------------------------------------------------------
_LABEL = re.compile(r"^(?P<label>.+)_seed(?P<seed>\d+)$")


def _trace_files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.name.endswith((".jsonl", ".jsonl.gz")))
            if not found:
                raise TraceError(f"{path}: no *.jsonl or *.jsonl.gz trace files in this directory")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise TraceError(f"{path}: no such trace file or directory")
    return files


def _identity(path: Path) -> tuple[str, int]:
    """Label and seed: from ``summary.json`` beside a ``decisions.jsonl`` (what ``atesd run``
    writes), else from a file name ``<spec>_seed<N>.jsonl[.gz]`` whose spec has ``:`` written as
    ``_`` (what the benchmarks write)."""
    summary = path.with_name("summary.json")
    if path.name == "decisions.jsonl" and summary.is_file():
        data = json.loads(summary.read_text())
        return str(data.get("agent", path.parent.name)), int(data.get("seed", -1))
    stem = path.name.removesuffix(".gz").removesuffix(".jsonl")
    if path.name == "decisions.jsonl":
        stem = path.parent.name
    match = _LABEL.match(stem)
    if match:
        return match["label"].replace("_", ":"), int(match["seed"])
    return stem, -1


def read_trace(path: str | Path) -> RunTrace:
    """One run's trace; raises :class:`TraceError` naming the file and line of anything malformed."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            lines = [(number, line) for number, line in enumerate(handle, start=1) if line.strip()]
    except OSError as exc:
        raise TraceError(f"{path}: cannot be read ({exc})") from exc
    alphas, lengths, scores, columns = [], [], [], []
    initial_score = math.nan
    for number, line in lines:
        where = f"{path}: line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TraceError(f"{where}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise TraceError(f"{where}: expected a JSON object (one decision)")
        for key in ("alpha", "score", "trace"):
            if key not in row:
                raise TraceError(f"{where}: missing field {key!r} (is this a decision log of atesd run?)")
        if row.get("diverged"):
            break  # a diverged window has no trace; the run ends there
        trace = row["trace"]
        missing = [f for f in TRACE_FIELDS if f not in trace]
        if missing:
            raise TraceError(f"{where}: trace lacks {', '.join(missing)} (logs written before per-update traces "
                             "were recorded cannot be fitted)")
        block = np.array([trace[f] for f in TRACE_FIELDS], dtype=np.float64)
        if block.ndim != 2 or block.shape[1] == 0:
            raise TraceError(f"{where}: trace lists must be non-empty and of equal length")
        if not np.isfinite(block).all():
            bad = [f for f, values in zip(TRACE_FIELDS, block) if not np.isfinite(values).all()]
            raise TraceError(f"{where}: non-finite values in {', '.join(bad)}")
        values = [row["alpha"], row["score"]]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            raise TraceError(f"{where}: alpha and score must be finite numbers; received {values}")
        if not alphas:
            initial_score = float(row.get("obs", {}).get("score", math.nan))
        alphas.append(float(row["alpha"]))
        lengths.append(block.shape[1])
        scores.append(float(row["score"]))
        columns.append(block)
    if not alphas:
        raise TraceError(f"{path}: the run has no completed update (no decision with a trace)")
    score = np.array([initial_score] + scores)
    if np.allclose(score[1:], score[0]):  # never refreshed (eval_every = 0): only the reset value is real
        score[1:] = math.nan
    label, seed = _identity(path)
    return RunTrace(path.as_posix(), label, seed, np.array(alphas), np.array(lengths, dtype=np.int64),
                    np.concatenate(columns, axis=1), score)


def load_traces(paths: Iterable[str | Path]) -> list[RunTrace]:
    """Every run trace under ``paths`` (files, or directories searched for trace files)."""
    return [read_trace(path) for path in _trace_files(paths)]


# ----------------------------------------------------------------------------------------------
# the noise-free surrogate along given schedules
# ----------------------------------------------------------------------------------------------
class Simulation(NamedTuple):
    """The noise-free surrogate along a list of runs, concatenated in run order."""

    features: np.ndarray
    """(K, U_total) observation-model inputs after every update of every run."""
    window_score: np.ndarray
    """(sum of W + 1,) expected accuracy at reset and after every window of every run."""


def simulate(params: SurrogateParams, runs: Sequence[RunTrace]) -> Simulation:
    """Expected trajectories (no learning or observation noise) of ``params`` under each run's own
    reveal ratios, every run starting from the params' mean initial ability without jitter (runs
    of one real model all start from the same checkpoint)."""
    quiet = params.replace(learning_noise=0.0, observation_noise=(0.0,) * len(TRACE_FIELDS))
    rng = np.random.default_rng(0)  # every draw is multiplied by a zero noise width
    features: dict[int, np.ndarray] = {}
    scores: dict[int, np.ndarray] = {}
    for layout, members in _group_by_layout(runs).items():
        alphas = np.stack([runs[i].window_alpha for i in members], axis=1)  # (W, B)
        state = _start(quiet, len(members))
        blocks = []
        at_windows = [quiet.arrays.mix @ (1.0 / (1.0 + np.exp(-state.logit)))]
        for w, length in enumerate(layout):
            window = transition(quiet, state, alphas[w], int(length), rng)
            state = window.state
            blocks.append(window.features.copy())
            at_windows.append(window.score[:, -1])
        block = np.concatenate(blocks, axis=2)  # (K, B, U)
        windows = np.stack(at_windows, axis=1)  # (B, W + 1)
        for slot, i in enumerate(members):
            features[i], scores[i] = block[:, slot], windows[slot]
    order = range(len(runs))
    return Simulation(np.concatenate([features[i] for i in order], axis=1),
                      np.concatenate([scores[i] for i in order]))


def _group_by_layout(runs: Sequence[RunTrace]) -> dict[tuple[int, ...], list[int]]:
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, run in enumerate(runs):
        groups.setdefault(tuple(run.window_length.tolist()), []).append(i)
    return groups


def _start(params: SurrogateParams, batch: int) -> SurrogateState:
    ability = 0.5 * (params.init_ability_low + params.init_ability_high)
    logit = np.repeat((ability - params.arrays.offset)[:, None], batch, axis=1)
    return SurrogateState(logit, np.zeros(batch))


# ----------------------------------------------------------------------------------------------
# the observation model: linear in the features, solved by bounded least squares
# ----------------------------------------------------------------------------------------------
class Readout(NamedTuple):
    """How one statistic is read off the features: ``value = sum_j coef_j * feature_j`` over
    ``columns`` (indices into the K feature rows), each coefficient in its bounds, and how the
    coefficients map to :class:`SurrogateParams` fields."""

    field: str
    columns: tuple[int, ...]
    bounds: tuple[tuple[float, float], ...]
    offset_column: int | None = None
    """A feature added with coefficient -1 before the fit (the transient in the probe NLL)."""


# Rows of the extended features: the surrogate's K rows (0 const, 1 S, 2 G, 3 e = exp(-G / scale),
# 4 transient s, 5 revealed share r), then 6: 1 - S, 7: 1 - e, 8: 1 - r. Written this way every
# readout is a combination with box bounds (e.g. the mismatch as floor + range (1 - e)).
READOUTS: tuple[Readout, ...] = (
    Readout("loss", (0, 2), ((0.0, 100.0), (0.0, 1e3))),
    Readout("loss_tail", (0, 2), ((0.0, 100.0), (0.0, 1e3))),
    Readout("mismatch", (0, 7), ((0.0, 1.0), (0.0, 1.0))),
    Readout("probe_nll", (0, 6), ((0.0, 100.0), (0.0, 100.0)), offset_column=4),
    Readout("confidence", (0, 1), ((0.0, 1.0), (0.0, 1.0))),
    Readout("teacher_ref_logprob", (8, 5), ((-100.0, 0.0), (-100.0, 0.0))),
    Readout("grad_norm", (0, 2), ((0.0, 1e6), (0.0, 1e6))),
    Readout("rollout_length", (6, 1), ((1.0, 1e6), (1.0, 1e6))),
)


def extend(features: np.ndarray) -> np.ndarray:
    """The K feature rows plus 1 - S, 1 - e, 1 - r (see :data:`READOUTS`)."""
    return np.concatenate([features, 1.0 - features[[1, 3, 5]]])


def solve_readouts(features: np.ndarray, stats: np.ndarray) -> dict[str, np.ndarray]:
    """Bounded least-squares coefficients of every statistic's readout (``features``: the K rows,
    ``stats``: (F, U))."""
    rows = extend(features)
    out = {}
    for readout in READOUTS:
        target = stats[_FIELD[readout.field]]
        if readout.offset_column is not None:
            target = target + rows[readout.offset_column]
        out[readout.field] = _bounded_lstsq_2(rows[list(readout.columns)], target, readout.bounds)
    return out


def _bounded_lstsq_2(design: np.ndarray, target: np.ndarray, bounds) -> np.ndarray:
    """Least squares of ``target`` on the two rows of ``design`` with box bounds, exactly: the
    unconstrained optimum when it is inside the box, else the best of the optima on the box's
    edges (each a one-dimensional problem) and corners. Far cheaper than a general solver, which
    matters because every residual evaluation of the fit solves eight of these."""
    gram = design @ design.T
    moment = design @ target
    (lo0, hi0), (lo1, hi1) = bounds

    def sse(c: np.ndarray) -> float:
        return float(c @ gram @ c - 2 * c @ moment)

    candidates = []
    det = gram[0, 0] * gram[1, 1] - gram[0, 1] ** 2
    if det > 1e-12 * max(gram[0, 0] * gram[1, 1], 1e-300):
        free = np.linalg.solve(gram, moment)
        if lo0 <= free[0] <= hi0 and lo1 <= free[1] <= hi1:
            return free
    for fixed, value in ((0, lo0), (0, hi0), (1, lo1), (1, hi1)):
        other = 1 - fixed
        lo, hi = (lo1, hi1) if other == 1 else (lo0, hi0)
        if not np.isfinite(value):
            continue
        denom = gram[other, other]
        best = (moment[other] - gram[other, fixed] * value) / denom if denom > 0 else 0.0
        c = np.empty(2)
        c[fixed], c[other] = value, min(max(best, lo), hi)
        candidates.append(c)
    return min(candidates, key=sse)


def predict(features: np.ndarray, coefficients: dict[str, np.ndarray]) -> np.ndarray:
    """(F, U) statistics the readouts predict, clipped to each statistic's valid range."""
    rows = extend(features)
    out = []
    for readout in READOUTS:
        value = coefficients[readout.field] @ rows[list(readout.columns)]
        if readout.offset_column is not None:
            value = value - rows[readout.offset_column]
        out.append(value)
    return np.clip(np.array(out), TRACE_LOW[:, None], TRACE_HIGH[:, None])


def readout_params(coefficients: dict[str, np.ndarray]) -> dict[str, float]:
    """The :class:`SurrogateParams` fields the readout coefficients stand for (clipped into the
    params' joint constraints: floor + range <= 1, shown >= hidden)."""
    c = {k: [float(x) for x in v] for k, v in coefficients.items()}
    mm_floor = c["mismatch"][0]
    conf_low = c["confidence"][0]
    hidden = c["teacher_ref_logprob"][0]
    return {
        "loss_floor": c["loss"][0], "loss_per_gap": c["loss"][1],
        "tail_floor": c["loss_tail"][0], "tail_per_gap": c["loss_tail"][1],
        "mismatch_floor": mm_floor, "mismatch_range": min(c["mismatch"][1], 1.0 - mm_floor),
        "nll_floor": c["probe_nll"][0], "nll_range": c["probe_nll"][1],
        "confidence_low": conf_low, "confidence_range": min(c["confidence"][1], 1.0 - conf_low),
        "ref_logprob_hidden": hidden, "ref_logprob_shown": max(c["teacher_ref_logprob"][1], hidden),
        "grad_floor": c["grad_norm"][0], "grad_per_gap": c["grad_norm"][1],
        "length_at_zero": c["rollout_length"][0], "length_at_one": c["rollout_length"][1],
    }


def readout_coefficients(params: SurrogateParams) -> dict[str, np.ndarray]:
    """The inverse of :func:`readout_params`: the coefficients a params object reads out with."""
    p = params
    return {
        "loss": np.array([p.loss_floor, p.loss_per_gap]),
        "loss_tail": np.array([p.tail_floor, p.tail_per_gap]),
        "mismatch": np.array([p.mismatch_floor, p.mismatch_range]),
        "probe_nll": np.array([p.nll_floor, p.nll_range]),
        "confidence": np.array([p.confidence_low, p.confidence_range]),
        "teacher_ref_logprob": np.array([p.ref_logprob_hidden, p.ref_logprob_shown]),
        "grad_norm": np.array([p.grad_floor, p.grad_per_gap]),
        "rollout_length": np.array([p.length_at_zero, p.length_at_one]),
    }


# ----------------------------------------------------------------------------------------------
# the dynamics: nonlinear least squares over transformed parameters
# ----------------------------------------------------------------------------------------------
class Free(NamedTuple):
    """One fitted dynamics parameter: a params field (or an element of a tuple field) and its
    transform to an unbounded value."""

    name: str
    index: int | None
    transform: str  # "identity", "log" (> 0), "logit" (in (0, 1))


DYNAMICS: tuple[Free, ...] = (
    Free("level_offset", 0, "identity"), Free("level_offset", 1, "identity"), Free("level_offset", 2, "identity"),
    Free("level_depth", 0, "log"), Free("level_depth", 1, "log"), Free("level_depth", 2, "log"),
    Free("answer_gap", None, "log"), Free("learning_rate", None, "log"), Free("absorb_width", None, "log"),
    Free("harm_rate", None, "log"), Free("harm_gap", None, "log"), Free("shallow_gain", None, "log"),
    Free("shallow_persistence", None, "logit"), Free("mismatch_scale", None, "log"),
)
_EPS = 1e-6


def _encode(params: SurrogateParams, free: Sequence[Free]) -> np.ndarray:
    values = []
    for f in free:
        raw = getattr(params, f.name)
        x = float(raw[f.index] if f.index is not None else raw)
        if f.transform == "log":
            x = math.log(max(x, _EPS))
        elif f.transform == "logit":
            x = min(max(x, _EPS), 1 - _EPS)
            x = math.log(x / (1 - x))
        values.append(x)
    return np.array(values)


def _decode(base: SurrogateParams, free: Sequence[Free], theta: np.ndarray) -> SurrogateParams:
    changes: dict[str, Any] = {}
    for f, x in zip(free, theta):
        value = math.exp(x) if f.transform == "log" else 1 / (1 + math.exp(-x)) if f.transform == "logit" else x
        if f.index is None:
            changes[f.name] = value
        else:
            current = list(changes.get(f.name, getattr(base, f.name)))
            current[f.index] = value
            changes[f.name] = tuple(current)
    return base.replace(**changes)


class FitConfig(NamedTuple):
    """Knobs of :func:`fit`."""

    focus_weight: float = 3.0
    """Weight of the score and the probe NLL in the objective, relative to the other statistics."""
    restarts: int = 2
    """Extra starts from perturbed parameters (the first start is ``base``)."""
    max_nfev: int = 300
    """Residual evaluations per start."""
    seed: int = 0
    """Seeds the perturbed starts and the learning-noise matching."""


class Fit(NamedTuple):
    params: SurrogateParams
    """The fitted parameters, noise included."""
    cost: float
    """Final objective (half the sum of squared standardized residuals)."""
    starts: list[float]
    """The objective each start ended at."""


def _standardizers(runs: Sequence[RunTrace]) -> np.ndarray:
    stats = np.concatenate([r.stats for r in runs], axis=1)
    scale = stats.std(axis=1)
    scores = np.concatenate([r.score for r in runs])
    scores = scores[np.isfinite(scores)]
    score_scale = scores.std() if scores.size > 1 else 1.0
    return np.maximum(np.append(scale, score_scale), 1e-6)


def _residuals(params: SurrogateParams, runs: Sequence[RunTrace], scale: np.ndarray, weights: np.ndarray,
               stats: np.ndarray, scores: np.ndarray, score_mask: np.ndarray) -> np.ndarray:
    sim = simulate(params, runs)
    coefficients = solve_readouts(sim.features, stats)
    predicted = predict(sim.features, coefficients)
    per_update = (predicted - stats) * (weights[:-1] / scale[:-1])[:, None]
    per_window = (sim.window_score[score_mask] - scores[score_mask]) * (weights[-1] / scale[-1])
    # Scores are few (one per window): weight them as if they were as many as the updates.
    repeat = max(1.0, stats.shape[1] / max(per_window.size, 1))
    return np.concatenate([per_update.ravel(), per_window * math.sqrt(repeat)])


def fit(runs: Sequence[RunTrace], base: SurrogateParams | None = None, config: FitConfig | None = None) -> Fit:
    """Fit surrogate parameters to ``runs`` (see the module docstring)."""
    if not runs:
        raise TraceError("calibration needs at least one run trace")
    config = config or FitConfig()
    base = base or SurrogateParams()
    base = base.replace(init_ability_low=0.0, init_ability_high=0.0, init_jitter=0.0)
    scale = _standardizers(runs)
    weights = np.ones(len(TARGETS))
    weights[_FIELD["probe_nll"]] = weights[-1] = config.focus_weight
    stats = np.concatenate([r.stats for r in runs], axis=1)
    scores = np.concatenate([r.score for r in runs])
    mask = np.isfinite(scores)

    def residuals(theta: np.ndarray) -> np.ndarray:
        try:
            params = _decode(base, DYNAMICS, theta)
        except AtesdError:  # outside the params' valid ranges
            return np.full(stats.size + int(mask.sum()), 1e3)
        return _residuals(params, runs, scale, weights, stats, scores, mask)

    rng = np.random.default_rng(config.seed)
    theta0 = _encode(base, DYNAMICS)
    best, costs = None, []
    for start in range(config.restarts + 1):
        guess = theta0 if start == 0 else theta0 + rng.normal(0.0, 0.5, size=theta0.shape)
        result = optimize.least_squares(residuals, guess, method="trf", x_scale=1.0, diff_step=1e-3,
                                        max_nfev=config.max_nfev)
        costs.append(float(result.cost))
        if best is None or result.cost < best.cost:
            best = result
    params = _decode(base, DYNAMICS, best.x)
    sim = simulate(params, runs)
    coefficients = solve_readouts(sim.features, stats)
    noise = np.std(predict(sim.features, coefficients) - stats, axis=1)
    params = params.replace(**readout_params(coefficients), observation_noise=tuple(float(x) for x in noise))
    params = params.replace(learning_noise=_match_learning_noise(params, runs, config.seed))
    return Fit(params, float(best.cost), costs)


def _match_learning_noise(params: SurrogateParams, runs: Sequence[RunTrace], seed: int,
                          grid: Sequence[float] = (0.0, 0.005, 0.01, 0.02, 0.04, 0.08)) -> float:
    """The learning noise whose spread of final scores across seeds best matches the real spread
    within each group of runs with the same schedule label (groups of at least two runs)."""
    groups: dict[str, list[RunTrace]] = {}
    for run in runs:
        if np.isfinite(run.final_score):
            groups.setdefault(run.label, []).append(run)
    groups = {k: v for k, v in groups.items() if len(v) >= 2}
    if not groups:
        return params.learning_noise
    real = np.mean([np.std([r.final_score for r in v], ddof=1) for v in groups.values()])
    best_noise, best_gap = params.learning_noise, math.inf
    for noise in grid:
        spreads = []
        for members in groups.values():
            finals = [_noisy_final(params.replace(learning_noise=noise), members[0], seed + k) for k in range(16)]
            spreads.append(np.std(finals, ddof=1))
        gap = abs(float(np.mean(spreads)) - real)
        if gap < best_gap:
            best_noise, best_gap = noise, gap
    return best_noise


def _noisy_final(params: SurrogateParams, run: RunTrace, seed: int) -> float:
    rng = np.random.default_rng(seed)
    state = _start(params, 1)
    score = math.nan
    for alpha, length in zip(run.window_alpha, run.window_length):
        window = transition(params, state, np.array([alpha]), int(length), rng)
        state, score = window.state, float(window.score[0, -1])
    return score


# ----------------------------------------------------------------------------------------------
# scoring a fit
# ----------------------------------------------------------------------------------------------
def r_squared(real: np.ndarray, predicted: np.ndarray) -> float:
    real, predicted = np.asarray(real, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    total = float(((real - real.mean()) ** 2).sum())
    if total <= 0:
        return math.nan
    return 1.0 - float(((real - predicted) ** 2).sum()) / total


class FitScore(NamedTuple):
    r2: dict[str, float]
    """R^2 per target over all updates (windows, for ``score``) of the runs."""
    rmse: dict[str, float]
    final_score_r2: float
    """R^2 of each run's final score across the runs."""
    final_score_rmse: float
    runs: int


def evaluate_fit(params: SurrogateParams, runs: Sequence[RunTrace]) -> FitScore:
    """How well the noise-free ``params`` predict ``runs`` (which the fit may not have seen)."""
    sim = simulate(params, runs)
    stats = np.concatenate([r.stats for r in runs], axis=1)
    predicted = predict(sim.features, readout_coefficients(params))
    r2 = {f: r_squared(stats[i], predicted[i]) for i, f in enumerate(TRACE_FIELDS)}
    rmse = {f: float(np.sqrt(np.mean((stats[i] - predicted[i]) ** 2))) for i, f in enumerate(TRACE_FIELDS)}
    scores = np.concatenate([r.score for r in runs])
    mask = np.isfinite(scores)
    r2[SCORE] = r_squared(scores[mask], sim.window_score[mask])
    rmse[SCORE] = float(np.sqrt(np.mean((scores[mask] - sim.window_score[mask]) ** 2)))
    ends = np.cumsum([len(r.score) for r in runs]) - 1
    final_real = np.array([r.final_score for r in runs])
    final_pred = sim.window_score[ends]
    ok = np.isfinite(final_real)
    return FitScore(r2, rmse, r_squared(final_real[ok], final_pred[ok]),
                    float(np.sqrt(np.mean((final_real[ok] - final_pred[ok]) ** 2))) if ok.any() else math.nan,
                    len(runs))


# ----------------------------------------------------------------------------------------------
# the report: splits by seed and by schedule
# ----------------------------------------------------------------------------------------------
def is_fixed(run: RunTrace) -> bool:
    return run.label.startswith("fixed:") or np.ptp(run.window_alpha) == 0


def split_by_schedule(runs: Sequence[RunTrace]) -> tuple[list[RunTrace], list[RunTrace]]:
    """Fit on the fixed-alpha runs, test on every other schedule."""
    return [r for r in runs if is_fixed(r)], [r for r in runs if not is_fixed(r)]


def split_by_seed(runs: Sequence[RunTrace], test_share: float = 0.4) -> tuple[list[RunTrace], list[RunTrace]]:
    """Fit on the lower seeds, test on the highest ``test_share`` of the distinct seeds."""
    seeds = sorted({r.seed for r in runs})
    held = set(seeds[len(seeds) - max(1, round(test_share * len(seeds))):]) if len(seeds) > 1 else set()
    return [r for r in runs if r.seed not in held], [r for r in runs if r.seed in held]


def calibration_report(runs: Sequence[RunTrace], base: SurrogateParams | None = None,
                       config: FitConfig | None = None, test_share: float = 0.4) -> dict[str, Any]:
    """Fit on all runs (the shipped params) and on both splits; R^2 and RMSE of every fit."""
    config = config or FitConfig()
    report: dict[str, Any] = {"runs": len(runs), "labels": sorted({r.label for r in runs}),
                              "seeds": sorted({r.seed for r in runs}), "splits": {}}
    for name, (train, test) in (("by_schedule", split_by_schedule(runs)),
                                ("by_seed", split_by_seed(runs, test_share))):
        if not train or not test:
            report["splits"][name] = {"skipped": "needs runs on both sides of the split"}
            continue
        result = fit(train, base, config)
        report["splits"][name] = {
            "fit_runs": len(train), "test_runs": len(test),
            "fit_labels": sorted({r.label for r in train}), "test_labels": sorted({r.label for r in test}),
            "train": evaluate_fit(result.params, train)._asdict(),
            "test": evaluate_fit(result.params, test)._asdict(),
        }
    final = fit(runs, base, config)
    report["all"] = {"fit": evaluate_fit(final.params, runs)._asdict(), "cost": final.cost, "starts": final.starts}
    report["params"] = final.params.to_dict()
    return report


def trajectories(params: SurrogateParams, runs: Sequence[RunTrace]) -> list[dict[str, Any]]:
    """Per run: the real and the predicted probe NLL (per update) and score (per window)."""
    sim = simulate(params, runs)
    predicted = predict(sim.features, readout_coefficients(params))
    out, u, w = [], 0, 0
    for run in runs:
        n, m = run.num_updates, len(run.score)
        out.append({"label": run.label, "seed": run.seed,
                    "probe_nll": run.stats[_FIELD["probe_nll"]].tolist(),
                    "probe_nll_predicted": predicted[_FIELD["probe_nll"], u:u + n].tolist(),
                    "window_ends": np.concatenate([[0], np.cumsum(run.window_length)]).tolist(),
                    "score": [None if not math.isfinite(x) else float(x) for x in run.score],
                    "score_predicted": sim.window_score[w:w + m].tolist()})
        u, w = u + n, w + m
    return out


@dataclass(frozen=True)
class CalibrateCommand:
    """One ``atesd calibrate``: fit surrogate parameters to traces of real runs."""

    traces: tuple[str, ...] = ()
    """Trace files or folders: the ``decisions.jsonl`` of ``atesd run`` runs, or ``*.jsonl[.gz]``
    decision logs a benchmark kept (folders are searched recursively)."""
    out: str = "surrogate_params.json"
    """The fit: ``{"params": ..., "report": ...}``, loadable with
    ``gym.make("ATESD-Surrogate-v0", params=json.load(open(out))["params"])``; a PNG of predicted
    against real trajectories is written beside it."""
    base: str = "default"
    """Parameters the fit starts from and keeps where it fits nothing: ``default``, a shipped
    name, or a JSON file of parameters."""
    level_steps: tuple[int, ...] = ()
    """Reasoning steps per difficulty level of the traced task (the tiny default: 2 3 4), so the
    surrogate quantizes exposure as the real prompts do; empty: the base's."""
    difficulty_mix: tuple[float, ...] = ()
    """Share of each difficulty level in the traced runs' test set (the tiny default: equal
    thirds); empty: the base's."""
    restarts: int = 2
    """Extra starts of the nonlinear fit from perturbed parameters."""
    max_nfev: int = 300
    """Residual evaluations per start."""
    test_share: float = 0.4
    """Share of the seeds held out by the split by seed."""
    evaluate: str = ""
    """Fit nothing: score these parameters (a shipped name or a JSON file, e.g. an earlier ``out``)
    on the traces and report R^2 and RMSE per statistic and for the final score. A held-out check
    needs runs outside the fit set: a longer run whose start was fitted shares that start."""

    def __post_init__(self) -> None:
        if not self.traces:
            raise ConfigError("traces", "one or more trace files or folders", self.traces)
        check_range("restarts", self.restarts, 0, None, integer=True)
        check_range("max_nfev", self.max_nfev, 10, None, integer=True)
        check_range("test_share", self.test_share, 0.0, 1.0, low_inclusive=False, high_inclusive=False)

    def base_params(self) -> SurrogateParams:
        params = load_params(self.base)
        changes: dict[str, Any] = {}
        if self.level_steps:
            changes["level_steps"] = tuple(float(x) for x in self.level_steps)
        if self.difficulty_mix:
            changes["difficulty_mix"] = tuple(self.difficulty_mix)
        return params.replace(**changes) if changes else params


def load_params(spec: str) -> SurrogateParams:
    """``default``, a JSON file (parameters, or a fit result with a ``params`` entry) or a shipped name."""
    if spec == "default":
        return SurrogateParams()
    if Path(spec).is_file():
        data = json.loads(Path(spec).read_text())
        return SurrogateParams.from_dict(data.get("params", data))
    return named_params(spec)


def evaluate(command: CalibrateCommand) -> dict[str, Any]:
    """Score ``command.evaluate``'s parameters on the traces: ``{"params", "evaluated", "trajectories"}``."""
    runs = load_traces(command.traces)
    params = load_params(command.evaluate)
    score = evaluate_fit(params, runs)._asdict()
    return {"params": params.to_dict(), "evaluated": {"params_from": command.evaluate, **score,
                                                      "labels": sorted({r.label for r in runs}),
                                                      "seeds": sorted({r.seed for r in runs})},
            "traces": sorted({r.source for r in runs}), "trajectories": trajectories(params, one_run_per_label(runs))}


def format_evaluation(evaluated: dict[str, Any]) -> str:
    """R^2 and RMSE per statistic and for the final score, of parameters scored on given runs."""
    lines = [f"{evaluated['runs']} runs ({', '.join(evaluated['labels'])}), seeds {evaluated['seeds']}, "
             f"parameters {evaluated['params_from']}", f"{'':22s}{'R^2':>10s}{'RMSE':>10s}"]
    for target in list(TARGETS) + ["final score"]:
        r2 = evaluated["final_score_r2"] if target == "final score" else evaluated["r2"][target]
        rmse = evaluated["final_score_rmse"] if target == "final score" else evaluated["rmse"][target]
        lines.append(f"{target:22s}{r2:10.3f}{rmse:10.4f}")
    return "\n".join(lines)


def calibrate(command: CalibrateCommand) -> dict[str, Any]:
    """Read the traces, fit, score both splits, and return ``{"params", "report", "trajectories"}``
    (the trajectories of the fit on all runs, one run per label)."""
    runs = load_traces(command.traces)
    config = FitConfig(restarts=command.restarts, max_nfev=command.max_nfev)
    report = calibration_report(runs, command.base_params(), config, test_share=command.test_share)
    params = SurrogateParams.from_dict(report.pop("params"))
    return {"params": params.to_dict(), "report": report, "traces": sorted({r.source for r in runs}),
            "trajectories": trajectories(params, one_run_per_label(runs))}


def one_run_per_label(runs: Sequence[RunTrace]) -> list[RunTrace]:
    """The longest run of every label (lowest seed on a tie), labels in order: what the plot shows."""
    chosen: dict[str, RunTrace] = {}
    for run in sorted(runs, key=lambda r: (r.label, -r.num_updates, r.seed)):
        chosen.setdefault(run.label, run)
    return list(chosen.values())


def format_report(report: dict[str, Any]) -> str:
    """The fit report as a table: R^2 per target on the held-out runs of each split."""
    lines = [f"{report['runs']} runs ({', '.join(report['labels'])}), seeds {report['seeds']}"]
    targets = list(TARGETS) + ["final score"]
    header = f"{'R^2 (held-out)':22s}" + "".join(f"{name:>14s}" for name in report["splits"])
    lines.append(header)
    for target in targets:
        cells = []
        for split in report["splits"].values():
            if "test" not in split:
                cells.append(f"{'n/a':>14s}")
                continue
            value = split["test"]["final_score_r2"] if target == "final score" else split["test"]["r2"][target]
            cells.append(f"{value:14.3f}" if value is not None and math.isfinite(value) else f"{'n/a':>14s}")
        lines.append(f"{target:22s}" + "".join(cells))
    return "\n".join(lines)
