"""``atesd compare``: agents x seeds in parallel processes, summarized with honest statistics.

Every (agent, seed) pair is one :func:`agents.runner.run_controlled` in a worker of a
``ProcessPoolExecutor`` (``spawn`` context: workers start clean, without the parent's threads).
Per agent the final scores over seeds are summarized by their IQM with a 95% bootstrap CI, and by
the probability of improvement over the reference agent (default ``fixed:1.0``, i.e. OPSD) with a
bootstrap CI (:mod:`exposure_env.stats`). Outputs in ``out_dir``: ``compare.json``, ``compare.md``,
``compare.png`` and one run directory per pair under ``runs/``.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from agents.plots import plot_compare
from agents.records import AgentStats, CompareResult, RunSummary, display_name
from agents.registry import check_spec
from agents.runner import RunConfig, run_controlled
from exposure_env.errors import ConfigError, check_range
from exposure_env.io import atomic_write_text, write_json
from exposure_env.registration import SURROGATE_ID
from exposure_env.stats import improvement_interval, iqm_interval

OPSD = "fixed:1.0"


@dataclass(frozen=True)
class CompareConfig:
    """One ``atesd compare``."""

    env_id: str = SURROGATE_ID
    """Registered env id."""
    agents: tuple[str, ...] = ("beta", OPSD, "fixed:0.5", "random")
    """Agent specs to compare (the reference must be one of them)."""
    seeds: int = 10
    """Evaluated runs per agent, seeds ``seed_offset .. seed_offset + seeds - 1`` (shared by all
    agents, so every agent faces the same runs)."""
    seed_offset: int = 0
    """First seed."""
    out_dir: str = "runs/compare"
    """Directory of the outputs."""
    runs_dir: str | None = None
    """Directory of the per-run logs (default ``out_dir/runs``)."""
    stem: str = "compare"
    """File stem of the outputs: ``<stem>.json``, ``<stem>.md``, ``<stem>.png``."""
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Plain-data kwargs for ``gym.make``."""
    train_episodes: int = 20
    """Training runs before each evaluated run, for agents that train first (SB3)."""
    workers: int = 2
    """Worker processes (1 runs in this process)."""
    reference: str = OPSD
    """Agent the probability of improvement is measured against."""
    n_resamples: int = 2000
    """Bootstrap resamples per interval."""
    stats_seed: int = 0
    """Seed of the bootstrap resampling."""
    torch_threads: int = 1
    """Torch threads per worker process (workers run side by side on few cores)."""

    def __post_init__(self) -> None:
        check_range("seeds", self.seeds, 1, None, integer=True)
        check_range("seed_offset", self.seed_offset, 0, None, integer=True)
        check_range("workers", self.workers, 1, None, integer=True)
        check_range("train_episodes", self.train_episodes, 0, None, integer=True)
        check_range("n_resamples", self.n_resamples, 100, None, integer=True)
        if not self.agents or len(set(self.agents)) != len(self.agents):
            raise ConfigError("agents", "a non-empty list of distinct agent specs", self.agents)
        if self.reference not in self.agents:
            raise ConfigError("reference", "one of the compared agents " + ", ".join(self.agents), self.reference)
        for spec in self.agents:  # fail before any process starts
            check_spec(spec)


def _run_job(run_config: RunConfig, torch_threads: int) -> RunSummary:
    try:
        import torch

        torch.set_num_threads(torch_threads)
    except ImportError:  # pragma: no cover - torch is part of the agents extra
        pass
    return run_controlled(run_config)


def run_compare(config: CompareConfig) -> CompareResult:
    """Run every agent on every seed and summarize (see the module docstring)."""
    start = time.perf_counter()
    out = Path(config.out_dir)
    seeds = list(range(config.seed_offset, config.seed_offset + config.seeds))
    runs_dir = Path(config.runs_dir) if config.runs_dir else out / "runs"
    jobs = [RunConfig(env_id=config.env_id, agent=agent, seed=seed, out_dir=str(runs_dir),
                      env_kwargs=dict(config.env_kwargs), train_episodes=config.train_episodes,
                      progress_bar=False, plot=False)
            for agent in config.agents for seed in seeds]
    if config.workers == 1:
        summaries = [run_controlled(job) for job in jobs]  # in this process: leave its torch threads alone
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=config.workers, mp_context=context) as pool:
            futures = [pool.submit(_run_job, job, config.torch_threads) for job in jobs]
            _wait_with_progress(futures)
            summaries = [f.result() for f in futures]
    by_agent: dict[str, list[RunSummary]] = {agent: [] for agent in config.agents}
    for summary in summaries:
        by_agent[summary.agent].append(summary)
    result = summarize(by_agent, config, seeds, time.perf_counter() - start)
    write_outputs(result, by_agent, out, config.stem)
    return result


def _wait_with_progress(futures: list) -> None:
    """Block until every run is done, with a tqdm bar over completed runs."""
    from tqdm.auto import tqdm

    with tqdm(total=len(futures), desc="compare runs", unit="run") as bar:
        for _ in as_completed(futures):
            bar.update(1)


def summarize(by_agent: Mapping[str, Sequence[RunSummary]], config: CompareConfig, seeds: list[int],
              wall_time: float) -> CompareResult:
    rng = np.random.default_rng(config.stats_seed)
    reference = np.array([s.final_score for s in sorted(by_agent[config.reference], key=lambda s: s.seed)])
    rows = []
    for agent, runs in by_agent.items():
        runs = sorted(runs, key=lambda s: s.seed)
        scores = np.array([s.final_score for s in runs], dtype=np.float64)
        iqm = iqm_interval(scores, rng, config.n_resamples)
        pi = improvement_interval(scores, reference, rng, config.n_resamples)
        rows.append(AgentStats(
            agent=agent, n=len(scores), iqm=iqm.value, ci_low=iqm.low, ci_high=iqm.high,
            mean=float(scores.mean()), std=float(scores.std(ddof=1)) if len(scores) > 1 else 0.0,
            prob_improvement_vs_opsd=pi.value, pi_ci_low=pi.low, pi_ci_high=pi.high,
            mean_alpha=float(np.mean([s.mean_alpha for s in runs])), final_scores=scores.tolist(),
            seeds=[s.seed for s in runs],
            controller_share=float(np.median([s.controller_share for s in runs])),
        ))
    plain_config = dataclasses.asdict(config) | {"agents": list(config.agents), "env_kwargs": dict(config.env_kwargs)}
    return CompareResult(config.env_id, config.reference, seeds, rows, wall_time, plain_config)


def markdown_table(result: CompareResult) -> str:
    """The comparison as a Markdown table, best IQM first."""
    lines = [
        f"Final score on `{result.env_id}` over seeds {result.seeds[0]}..{result.seeds[-1]} "
        f"(n={len(result.seeds)}); IQM with 95% percentile-bootstrap CI; P(improvement) over "
        f"`{result.reference}` with 95% bootstrap CI.",
        "",
        f"| agent | IQM | 95% CI | mean ± sd | P(> {result.reference}) | 95% CI | mean alpha |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in sorted(result.agents, key=lambda r: -r.iqm):
        lines.append(
            f"| `{display_name(row.agent)}` | {row.iqm:.4f} | [{row.ci_low:.4f}, {row.ci_high:.4f}] | "
            f"{row.mean:.4f} ± {row.std:.4f} | {row.prob_improvement_vs_opsd:.2f} | "
            f"[{row.pi_ci_low:.2f}, {row.pi_ci_high:.2f}] | {row.mean_alpha:.2f} |"
        )
    return "\n".join(lines) + "\n"


def mean_alpha_curves(by_agent: Mapping[str, Sequence[RunSummary]]) -> dict[str, list[float]]:
    """Per agent, the alpha of each decision averaged over seeds (runs of equal length)."""
    curves = {}
    for agent, runs in by_agent.items():
        length = min(len(s.alphas) for s in runs)
        curves[agent] = np.mean([s.alphas[:length] for s in runs], axis=0).tolist()
    return curves


def load_result(path: str | Path) -> tuple[CompareResult, dict[str, list[float]]]:
    """A ``compare.json`` read back: the result and the mean alpha curves."""
    payload = json.loads(Path(path).read_text())
    names = {f.name for f in dataclasses.fields(AgentStats)}
    rows = [AgentStats(**{k: v for k, v in row.items() if k in names}) for row in payload["agents"].values()]
    result = CompareResult(payload["env_id"], payload["reference"], payload["seeds"], rows, payload["wall_time_s"],
                           payload["config"])
    return result, payload.get("mean_alpha_curves", {})


def redraw(path: str | Path) -> None:
    """Rewrite the Markdown table and the plot next to a saved ``<stem>.json`` (no run)."""
    path = Path(path)
    result, curves = load_result(path)
    atomic_write_text(path.with_suffix(".md"), markdown_table(result))
    plot_compare(result.agents, curves, result.reference, path.with_suffix(".png"))


def write_outputs(result: CompareResult, by_agent: Mapping[str, Sequence[RunSummary]], out: Path,
                  stem: str = "compare") -> dict[str, Path]:
    """Write ``<stem>.json``, ``<stem>.md`` and ``<stem>.png`` atomically into ``out``."""
    curves = mean_alpha_curves(by_agent)
    paths = {"json": out / f"{stem}.json", "md": out / f"{stem}.md", "png": out / f"{stem}.png"}
    payload = dataclasses.asdict(result)
    payload["agents"] = {row["agent"]: row for row in payload["agents"]}
    payload["mean_alpha_curves"] = curves
    write_json(paths["json"], payload)
    atomic_write_text(paths["md"], markdown_table(result))
    plot_compare(result.agents, curves, result.reference, paths["png"])
    return paths

