"""What does the surrogate say about fixed and adaptive exposure?

    python -m benchmarks.surrogate_sweep --out benchmarks/results/surrogate_sweep.json

Runs the default ``ATESD-Surrogate-v0`` (default params, ``total_updates=200``, ``hold_window=4``)
on the students of seeds ``0..seeds-1`` (the ones ``env.reset(seed=s)`` draws) under:

- every fixed reveal ratio of ``alphas``: final score (expected accuracy) mean with a 95%
  t-interval over seeds, mismatch (mean of the reported per-update mismatch over the run, and the
  noise-free mismatch of the final student at that alpha), final competence per difficulty level;
- adaptive schedules: linear ramps 0.2 -> 1.0 and 0.25 -> 0.75, a competence-driven rule
  ``alpha = clip(1.5 * score - 0.3, 0, 1)`` and a greedy controller that maximizes the immediate
  reward of the next window on a noise-free copy of the state;
- an alternating 0 / 1 schedule, which probes whether the positive-part discounted reward can be
  gamed by the transient probe-NLL component (it rewards the rises of the transient and ignores
  its falls).

For every schedule it also reports the episode return in each reward mode. Every run is stepped by
the episode kernel :mod:`exposure_env.episode`, the code ``ExposureEnv`` runs, on the surrogate's
batched windows: rewards, the collapse check and episode ends are the env's. A run that diverges
(collapses) ends there, with the env's penalty, and keeps its last good student. Adaptive schedules
are compared with the best fixed alpha by the paired difference over the same students and the same
noise draws (common random numbers; 95% t-interval).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from agents.plots import pyplot, save_figure
from exposure_env import episode
from exposure_env.commandline import parse_dataclass
from exposure_env.config import ExposureEnvConfig
from exposure_env.io import write_json
from exposure_env.rewards import REWARD_MODES, combine_reward, window_reward
from exposure_env.stats import t_interval
from exposure_env.surrogate import (
    SurrogateParams,
    SurrogateState,
    collapse_reason,
    collapsed,
    competence,
    expected_accuracy,
    initial_for_seeds,
    observe,
    tile_state,
    transition,
)
from exposure_env.types import TRACE_INDEX, UpdateTrace

PROBE_NLL = TRACE_INDEX["probe_nll"]
MISMATCH = TRACE_INDEX["mismatch"]
REF_LOGPROB = TRACE_INDEX["teacher_ref_logprob"]

Schedule = Callable[[int, SurrogateState], np.ndarray]


@dataclass(frozen=True)
class Args:
    """Command-line arguments (each field is a ``--flag``)."""

    out: str = "benchmarks/results/surrogate_sweep.json"
    """Result JSON (written atomically); a PNG with the same stem is written next to it."""
    seeds: int = 50
    """Students (seeds 0..seeds-1) per schedule."""
    noise_seed: int = 1
    """Seed of the learning and observation noise of the runs."""
    alphas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    """Fixed reveal ratios of the sweep (also the greedy controller's grid)."""


class RunResult(NamedTuple):
    final: SurrogateState
    returns: dict[str, np.ndarray]  # reward mode -> (B,) episode return
    mean_mismatch: np.ndarray  # (B,) mean reported mismatch over the updates of the run
    diverged: np.ndarray  # (B,) bool: the run collapsed (and ended early)


def simulate(params: SurrogateParams, config: ExposureEnvConfig, start: SurrogateState, schedule: Schedule,
             seed: int) -> RunResult:
    """One run per column of ``start``, stepped by the env's episode kernel (see the module docstring).

    Ended runs stay in the batch (frozen), so every run draws the same noise whatever the others do.
    """
    rng = np.random.default_rng(seed)
    batch = start.shallow.size
    alpha0 = np.full(batch, params.initial_reveal_ratio)
    observed = observe(params, start, alpha0, rng)
    state, latent = episode.start(observed.stats, observed.score, alpha0, config), start
    returns = {mode: np.zeros(batch) for mode in REWARD_MODES}
    mismatch_sum = np.zeros(batch)
    running, diverged = np.ones(batch, dtype=bool), np.zeros(batch, dtype=bool)
    reason = np.array(collapse_reason(params), dtype=object)
    for w in range(config.num_decisions):
        length = int(episode.window_lengths(state, config).max())
        alpha = schedule(w, latent)
        window = transition(params, latent, alpha, length, rng)
        down = collapsed(params, window.score[:, -1])
        step = episode.advance(state, episode.Action(alpha, np.zeros(batch, dtype=bool)),
                               episode.Window(UpdateTrace(window.traces), window.score[:, -1], down,
                                              np.where(down, reason, "").astype(object)), config)
        for mode in REWARD_MODES:
            reward = np.where(step.diverged, step.reward, combine_reward(mode, step.components, config.lambda_gt))
            returns[mode] += np.where(running, reward, 0.0)
        mismatch_sum += np.where(running & ~step.diverged, window.traces[MISMATCH].sum(axis=1), 0.0)
        diverged |= running & step.diverged
        keep = running & ~step.diverged  # runs that go on with the window's outcome
        state = state.replace_rows(keep, step.state.rows(keep))
        latent = SurrogateState(np.where(keep, window.state.logit, latent.logit),
                                np.where(keep, window.state.shallow, latent.shallow))
        running &= ~step.terminated
    return RunResult(latent, returns, mismatch_sum / state.updates_done, diverged)


def greedy_schedule(params: SurrogateParams, config: ExposureEnvConfig, grid: np.ndarray) -> Schedule:
    """Pick, each window, the grid alpha with the best immediate reward on a noise-free copy."""
    quiet = params.replace(observation_noise=(0.0,) * len(params.observation_noise), learning_noise=0.0)

    def choose(w: int, state: SurrogateState) -> np.ndarray:
        batch = state.shallow.size
        before = np.tile(observe(quiet, state, np.full(batch, params.initial_reveal_ratio)).stats[PROBE_NLL],
                         grid.size)
        look = transition(quiet, tile_state(state, grid.size), np.repeat(grid, batch), config.hold_window,
                          np.random.default_rng(w))
        reward = window_reward("immediate", before, look.traces[PROBE_NLL], look.traces[REF_LOGPROB],
                               config.gamma, config.lambda_gt)
        return grid[reward.reshape(grid.size, batch).argmax(axis=0)]

    return choose


def interval(x: np.ndarray) -> dict[str, float]:
    """Mean and 95% t-interval over seeds, as the result file stores it."""
    mean = t_interval(x)
    return {"mean": mean.mean, "ci95": mean.half_width, "low": mean.low, "high": mean.high}


def run_sweep(args: Args) -> dict[str, Any]:
    params, config = SurrogateParams(), ExposureEnvConfig()
    start = initial_for_seeds(params, range(args.seeds))
    alphas = np.array(args.alphas)
    batch = args.seeds
    windows = config.num_decisions

    def summarize(result: RunResult) -> dict[str, Any]:
        return {
            "final_score": interval(expected_accuracy(params, result.final)),
            "mean_mismatch": float(result.mean_mismatch.mean()),
            "returns": {mode: interval(value) for mode, value in result.returns.items()},
            "diverged_runs": int(result.diverged.sum()),
        }

    # Every schedule runs as its own batch of the same students with the same noise seed, so run
    # i of every schedule sees the same learning noise (common random numbers, paired differences).
    fixed_runs = [simulate(params, config, start, lambda w, s, a=alpha: np.full(batch, a), args.noise_seed)
                  for alpha in alphas]
    scores = np.stack([expected_accuracy(params, r.final) for r in fixed_runs])
    levels = np.stack([competence(r.final).mean(axis=1) for r in fixed_runs], axis=1)  # (D, alphas)
    rows = []
    for alpha, result, score in zip(alphas, fixed_runs, scores):
        rows.append({
            "alpha": float(alpha),
            "final_score": interval(score),
            "mean_mismatch": float(result.mean_mismatch.mean()),
            "final_mismatch": float(observe(params, result.final, np.full(batch, alpha)).stats[MISMATCH].mean()),
            "final_competence_per_level": competence(result.final).mean(axis=1).tolist(),
            "returns": {mode: interval(value) for mode, value in result.returns.items()},
            "diverged_runs": int(result.diverged.sum()),
        })
    best = int(scores.mean(axis=1).argmax())

    schedules: dict[str, Schedule] = {
        "ramp_0.2_to_1.0": lambda w, s: np.full(s.shallow.size, 0.2 + 0.8 * w / (windows - 1)),
        "ramp_0.25_to_0.75": lambda w, s: np.full(s.shallow.size, 0.25 + 0.5 * w / (windows - 1)),
        "competence_driven": lambda w, s: np.clip(1.5 * expected_accuracy(params, s) - 0.3, 0.0, 1.0),
        "greedy_immediate": greedy_schedule(params, config, alphas),
        "alternate_0_1": lambda w, s: np.full(s.shallow.size, float(w % 2)),
    }
    adaptive = {}
    for name, schedule in schedules.items():
        result = simulate(params, config, start, schedule, args.noise_seed)
        summary = summarize(result)
        summary["minus_best_fixed"] = interval(expected_accuracy(params, result.final) - scores[best])
        adaptive[name] = summary

    return {
        "config": {"env": dataclasses.asdict(config), "params": params.to_dict(), "seeds": args.seeds,
                   "noise_seed": args.noise_seed},
        "fixed": rows,
        "best_fixed_alpha": float(alphas[best]),
        "best_alpha_per_level": [float(alphas[j]) for j in levels.argmax(axis=1)],
        "adaptive": adaptive,
    }


def table(result: dict[str, Any]) -> str:
    lines = ["| schedule | final score (95% CI) | mean mismatch | return (discounted) |", "|---|---|---|---|"]
    for row in result["fixed"]:
        s = row["final_score"]
        lines.append(f"| fixed {row['alpha']:.2f} | {s['mean']:.3f} ± {s['ci95']:.3f} | {row['mean_mismatch']:.3f} "
                     f"| {row['returns']['discounted']['mean']:.3f} |")
    for name, row in result["adaptive"].items():
        s = row["final_score"]
        lines.append(f"| {name} | {s['mean']:.3f} ± {s['ci95']:.3f} | {row['mean_mismatch']:.3f} "
                     f"| {row['returns']['discounted']['mean']:.3f} |")
    return "\n".join(lines)


def plot(path: Path, result: dict[str, Any]) -> None:
    plt = pyplot()
    alphas = [r["alpha"] for r in result["fixed"]]
    means = [r["final_score"]["mean"] for r in result["fixed"]]
    errors = [r["final_score"]["ci95"] for r in result["fixed"]]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.errorbar(alphas, means, yerr=errors, marker="o", capsize=3, label="fixed alpha: final score")
    for name, row in result["adaptive"].items():
        if name != "alternate_0_1":
            ax.axhline(row["final_score"]["mean"], linestyle="--", linewidth=1, label=name,
                       color={"ramp_0.2_to_1.0": "tab:green", "ramp_0.25_to_0.75": "tab:olive",
                              "competence_driven": "tab:purple"}.get(name, "tab:red"))
    ax.set_xlabel("reveal ratio alpha (fraction of the reference shown)")
    ax.set_ylabel("final expected accuracy (0-1)")
    twin = ax.twinx()
    twin.plot(alphas, [r["mean_mismatch"] for r in result["fixed"]], color="grey", marker="s", label="mismatch")
    twin.set_ylabel("mean top-1 mismatch (fraction of tokens)", color="grey")
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title(f"ATESD-Surrogate-v0, {result['config']['seeds']} seeds (95% CI)")
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_dataclass(Args, argv, __doc__)
    result = run_sweep(args)
    result["table_markdown"] = table(result)
    out = Path(args.out)
    write_json(out, result)
    try:
        plot(out.with_suffix(".png"), result)
    except ImportError:
        pass
    print(result["table_markdown"])
    return result


if __name__ == "__main__":
    main()
