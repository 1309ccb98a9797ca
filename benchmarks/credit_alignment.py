"""Does the reward rank reveal ratios the way they change the final score? Credit alignment.

    python -m benchmarks.credit_alignment --params tiny-qwen3 --out benchmarks/results/credit_alignment.json

A controller learns from the credit its decisions get, so the credit must rank reveal ratios the
way they change what we care about: the score at the end of the run. On the surrogate this can be
checked exactly with counterfactuals. For every decision point ``t`` (a window index), every
candidate ``alpha_c`` and every seed, the script runs the episode under a base policy, except that
window ``t`` uses ``alpha_c``; every random draw is shared across the candidates of a seed (common
random numbers), so the difference between candidates is the decision's own effect. It then
compares, per decision point and reward mode:

- the *effect*: the final score (noise-free expected accuracy) under each candidate;
- the *credit* each reward mode gives the decision, computed by :mod:`exposure_env.rewards` from
  the noisy per-update statistics an agent would see: the discounted lookahead over ``lookahead``
  updates (``discounted``, ``discounted+gt``) or the decision's own window (``immediate``, the
  paper's one-step ablation).

Reported: Spearman's rank correlation between credit and effect over the candidates, per seed
(mean and 95% t-interval) and for the seed-averaged credit and effect (the ranking an agent would
learn from many decisions), and the candidate each ranks first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from exposure_env.calibration import load_params
from exposure_env.commandline import parse_dataclass
from exposure_env.io import write_json
from exposure_env.rewards import REWARD_MODES, combine_reward, reward_components
from exposure_env.stats import t_interval
from exposure_env.surrogate import SurrogateParams, initial, observe, transition
from exposure_env.types import TRACE_FIELDS

PROBE_NLL = TRACE_FIELDS.index("probe_nll")
REF_LOGPROB = TRACE_FIELDS.index("teacher_ref_logprob")


@dataclass(frozen=True)
class Args:
    """Command-line arguments (each field is a ``--flag``)."""

    params: str = "tiny-qwen3"
    """Surrogate parameters: a shipped name (e.g. ``tiny-qwen3``), a JSON file, or ``default``."""
    alphas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    """Candidate reveal ratios of the counterfactual decision."""
    base_alpha: float = 0.5
    """Reveal ratio of every other decision (the base policy); negative: uniform random per window."""
    decision_points: tuple[int, ...] = (2, 12, 25, 37)
    """Window indices of the counterfactual decision (early to late in a 50-window run)."""
    seeds: int = 200
    """Counterfactual episodes per decision point and candidate."""
    total_updates: int = 200
    """Updates per run."""
    hold_window: int = 4
    """Updates per decision."""
    lookahead: int = 16
    """L: updates the discounted credit spans (the agent's default)."""
    gamma: float = 0.9
    """Per-update discount of the credit."""
    lambda_gt: float = 0.005
    """Weight of G_gt in ``discounted+gt`` (the agent's default)."""
    seed: int = 0
    """Seed of the shared random draws."""
    out: str = "benchmarks/results/credit_alignment.json"
    """Result JSON."""


def counterfactuals(params: SurrogateParams, args: Args, point: int, candidates: np.ndarray):
    """Per candidate: (seeds,) final expected accuracy, and (seeds,) credit of the decision at window
    ``point`` in every reward mode."""
    windows = -(-args.total_updates // args.hold_window)
    finals, credits = [], {mode: [] for mode in REWARD_MODES}
    for alpha_c in candidates:
        rng = np.random.default_rng(args.seed)  # the same draws for every candidate: common random numbers
        policy_rng = np.random.default_rng(args.seed + 1)
        state = initial(params, rng, args.seeds)
        before = observe(params, state, np.full(args.seeds, args.base_alpha if args.base_alpha >= 0 else 0.5),
                         rng).stats[PROBE_NLL]
        l_trace, g_trace, l_before = [], [], None
        done = 0
        for w in range(windows):
            base = np.full(args.seeds, args.base_alpha) if args.base_alpha >= 0 else policy_rng.uniform(size=args.seeds)
            alpha = np.full(args.seeds, float(alpha_c)) if w == point else base
            length = min(args.hold_window, args.total_updates - done)
            window = transition(params, state, alpha, length, rng)
            state, done = window.state, done + length
            if w == point:
                l_before = before
            if w >= point:
                l_trace.append(window.traces[PROBE_NLL])
                g_trace.append(window.traces[REF_LOGPROB])
            before = window.traces[PROBE_NLL][:, -1]
            final = window.score[:, -1]
        finals.append(final)
        l_all, g_all = np.concatenate(l_trace, axis=1), np.concatenate(g_trace, axis=1)
        for mode in REWARD_MODES:
            span = args.hold_window if mode == "immediate" else args.lookahead
            parts = reward_components(l_before, l_all[:, :span], g_all[:, :span], args.gamma)
            credits[mode].append(combine_reward(mode, parts, args.lambda_gt))
    return np.array(finals), {mode: np.array(v) for mode, v in credits.items()}


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman correlation of every column pair x[:, i], y[:, i] (candidates on axis 0)."""
    rx = scipy_stats.rankdata(x, axis=0)
    ry = scipy_stats.rankdata(y, axis=0)
    rx, ry = rx - rx.mean(axis=0), ry - ry.mean(axis=0)
    denom = np.sqrt((rx**2).sum(axis=0) * (ry**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (rx * ry).sum(axis=0) / denom, np.nan)


def _interval(values: np.ndarray) -> dict[str, float]:
    """Mean and 95% t-interval of the finite per-seed correlations (a seed with constant credit has none)."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    interval = t_interval(finite)
    return {"mean": interval.mean, "low": interval.low, "high": interval.high, "n": int(finite.size)}


def run(args: Args) -> dict[str, Any]:
    params = load_params(args.params)
    candidates = np.array([float(a) for a in args.alphas])
    out: dict[str, Any] = {"args": asdict(args), "candidates": candidates.tolist(), "points": {}}
    summary = {mode: [] for mode in REWARD_MODES}
    for point in (int(p) for p in args.decision_points):
        finals, credits = counterfactuals(params, args, point, candidates)
        effect = finals - finals.mean(axis=0)
        entry: dict[str, Any] = {"effect_mean": effect.mean(axis=1).tolist(),
                                 "best_by_effect": float(candidates[int(np.argmax(effect.mean(axis=1)))]),
                                 "modes": {}}
        for mode, credit in credits.items():
            per_seed = _spearman_rows(credit, finals)
            averaged = float(scipy_stats.spearmanr(credit.mean(axis=1), finals.mean(axis=1)).statistic)
            summary[mode].append(averaged)
            entry["modes"][mode] = {"credit_mean": credit.mean(axis=1).tolist(),
                                    "best_by_credit": float(candidates[int(np.argmax(credit.mean(axis=1)))]),
                                    "spearman_per_seed": _interval(per_seed),
                                    "spearman_of_means": averaged}
        out["points"][str(point)] = entry
    out["spearman_of_means_by_mode"] = {mode: float(np.mean(v)) for mode, v in summary.items()}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_dataclass(Args, argv, __doc__.split("\n\n")[0])
    result = run(args)
    write_json(args.out, result)
    for point, entry in result["points"].items():
        cells = ", ".join(f"{m} {v['spearman_of_means']:+.2f} (best {v['best_by_credit']:g})"
                          for m, v in entry["modes"].items())
        print(f"window {point}: best by effect {entry['best_by_effect']:g}; Spearman of means: {cells}")
    return result


if __name__ == "__main__":
    main()
