"""``atesd compare``: agents x seeds in parallel, summarized with honest statistics, resumable.

Every (agent, seed) pair is one :func:`agents.runner.run_controlled`, writing its own directory
under ``runs/``. The runs execute on one of the executors of :mod:`agents.executors`: a pool of
local worker processes (default) or Ray tasks (``executor="ray"``, locally or on a cluster).
Per agent the final scores over seeds are summarized by their IQM with a 95% bootstrap CI, and by
the probability of improvement over the reference agent (default ``fixed:1.0``, i.e. OPSD) with a
bootstrap CI (:mod:`exposure_env.stats`). Outputs in ``out_dir``: ``compare.json``, ``compare.md``,
``compare.png`` and one run directory per pair under ``runs/``.

Resume, one logic for every executor (:func:`finished_run`): a run whose ``summary.json`` is in its
directory (written last and atomically by the runner) finished; repeating the command on the same
``out_dir`` reuses it instead of running it again, after checking that it was made with the same
agent, seed, env and env kwargs. So an interrupted sweep (Ctrl-C, a killed machine) resumes, and a
run that failed is tried again. A sweep that ends incomplete (interrupted, or with failed runs)
still summarizes and writes what finished (what the executor reported, plus any run whose
``summary.json`` appeared before the executor heard of it), and says which runs are missing.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from agents.executors import EXECUTORS, Outcome, execute
from agents.plots import plot_compare
from agents.records import AgentStats, CompareResult, RunSummary, display_name
from agents.registry import check_spec
from agents.runner import RunConfig, check_agent_inputs
from exposure_env.errors import ConfigError, check_choice, check_range, store_integers
from exposure_env.io import atomic_write_text, to_plain, write_json
from exposure_env.registration import SURROGATE_ID
from exposure_env.stats import Interval, improvement_interval, iqm_interval

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
    """Runs at once: local worker processes (1 runs them in this process, one after the other), or
    the CPUs of the local Ray instance with ``executor="ray"``."""
    executor: str = "process"
    """Where the runs execute: ``process`` (a pool of local worker processes) or ``ray`` (one Ray task
    per run; needs the ``ray`` extra)."""
    address: str | None = None
    """With ``executor="ray"``: the Ray cluster to run on (``auto``, ``HOST:6379`` or
    ``ray://HOST:10001``); default: a local Ray instance of ``workers`` CPUs, started and stopped by
    this sweep."""
    rerun: bool = False
    """Run every pair again. By default a pair whose finished run (``summary.json``) is already in
    the runs directory is reused, so repeating an interrupted command resumes it."""
    reference: str = OPSD
    """Agent the probability of improvement is measured against."""
    n_resamples: int = 2000
    """Bootstrap resamples per interval."""
    stats_seed: int = 0
    """Seed of the bootstrap resampling."""
    torch_threads: int = 1
    """Torch threads per worker process (workers run side by side on few cores)."""

    def __post_init__(self) -> None:
        store_integers(self)
        check_range("seeds", self.seeds, 1, None, integer=True)
        check_range("seed_offset", self.seed_offset, 0, None, integer=True)
        check_range("workers", self.workers, 1, None, integer=True)
        check_range("train_episodes", self.train_episodes, 0, None, integer=True)
        check_range("n_resamples", self.n_resamples, 100, None, integer=True)
        check_range("stats_seed", self.stats_seed, 0, None, integer=True)
        check_range("torch_threads", self.torch_threads, 1, None, integer=True)
        check_choice("executor", self.executor, EXECUTORS)
        if self.address is not None and self.executor != "ray":
            raise ConfigError("address", "only given with executor 'ray'", self.address)
        if not self.agents or len(set(self.agents)) != len(self.agents):
            raise ConfigError("agents", "a non-empty list of distinct agent specs", self.agents)
        if self.reference not in self.agents:
            raise ConfigError("reference", "one of the compared agents " + ", ".join(self.agents), self.reference)
        for spec in self.agents:  # fail before any process starts
            check_spec(spec)


def planned_runs(config: CompareConfig) -> list[RunConfig]:
    """One run per (agent, seed), agent by agent."""
    seeds = range(config.seed_offset, config.seed_offset + config.seeds)
    runs_dir = Path(config.runs_dir) if config.runs_dir else Path(config.out_dir) / "runs"
    return [RunConfig(env_id=config.env_id, agent=agent, seed=seed, out_dir=str(runs_dir),
                      env_kwargs=dict(config.env_kwargs), train_episodes=config.train_episodes,
                      progress_bar=False, plot=False, resume=not config.rerun, overwrite=config.rerun)
            for agent in config.agents for seed in seeds]


def finished_run(job: RunConfig) -> RunSummary | None:
    """The summary of ``job``'s run if it already finished (its ``summary.json`` exists and reads),
    else None. A finished run made with another agent, seed, env or env kwargs, or whose agent read
    another sweep result or checkpoint than its spec reads now, is a ConfigError: its directory
    would otherwise be silently reused or overwritten."""
    path = job.run_dir / "summary.json"
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing (not finished) or unreadable (run it again)
        return None
    expected = {"agent": job.agent, "seed": job.seed, "env_id": job.env_id, "env_kwargs": to_plain(job.env_kwargs)}
    found = {key: payload.get(key) for key in expected}
    if found != expected:
        raise ConfigError("runs directory", f"one whose finished runs match this sweep ({expected})", found,
                          hint=f"{path} was made by another sweep; use another --out (or --runs-dir)")
    check_agent_inputs(payload.get("agent_inputs"), job.agent, path)
    return _summary_from_json(payload)


def _summary_from_json(payload: dict[str, Any]) -> RunSummary:
    """A :class:`RunSummary` from ``summary.json`` (JSON ``null`` back to NaN in float fields)."""
    values = {}
    for f in dataclasses.fields(RunSummary):
        value = payload[f.name]
        values[f.name] = math.nan if value is None and f.type == "float" else value
    return RunSummary(**values)


def run_compare(config: CompareConfig) -> CompareResult:
    """Run every agent on every seed, reusing finished runs, and summarize (see the module docstring).

    Runs that fail (their exception, or their worker dying) and, after Ctrl-C, runs that did not
    finish are listed in the result; the statistics and outputs cover the runs that finished (no
    outputs are written when none did)."""
    start = time.perf_counter()
    out = Path(config.out_dir)
    seeds = list(range(config.seed_offset, config.seed_offset + config.seeds))
    jobs = planned_runs(config)
    reused = {} if config.rerun else {i: s for i, job in enumerate(jobs) if (s := finished_run(job)) is not None}
    todo = {i: job for i, job in enumerate(jobs) if i not in reused}
    outcome = _execute_with_progress(todo, config, len(jobs), len(reused))
    # The run directories are the truth: a run that finished just before Ctrl-C (or a failure after
    # its summary was written) counts, even if the executor had not heard of it yet.
    late = {i: s for i, job in todo.items() if i not in outcome.finished and (s := finished_run(job)) is not None}
    outcome = outcome._replace(finished={**outcome.finished, **late},
                               failed={i: why for i, why in outcome.failed.items() if i not in late})
    done = {**reused, **outcome.finished}
    by_agent: dict[str, list[RunSummary]] = {agent: [] for agent in config.agents}
    for index in sorted(done):
        by_agent[done[index].agent].append(done[index])
    names = {i: job.run_dir.name for i, job in enumerate(jobs)}
    status = dict(reused_runs=len(reused), failed_runs={names[i]: why for i, why in sorted(outcome.failed.items())},
                  unfinished_runs=[names[i] for i in sorted(todo) if i not in outcome.finished and i not in outcome.failed],
                  interrupted=outcome.interrupted)
    result = summarize(by_agent, config, seeds, time.perf_counter() - start, **status)
    if done:
        write_outputs(result, by_agent, out, config.stem)
    return result


def _execute_with_progress(todo: dict[int, RunConfig], config: CompareConfig, total: int, reused: int) -> Outcome:
    """:func:`agents.executors.execute` with a tqdm bar over all runs (the reused ones counted done)."""
    from tqdm.auto import tqdm

    with tqdm(total=total, initial=reused, desc="compare runs", unit="run") as bar:
        return execute(todo, config.executor, config.workers, config.torch_threads, config.address,
                       on_end=lambda index, summary, error: bar.update(1))


def summarize(by_agent: Mapping[str, Sequence[RunSummary]], config: CompareConfig, seeds: list[int],
              wall_time: float, **status: Any) -> CompareResult:
    """The comparison table over the runs in ``by_agent`` (agents without a finished run get no row;
    without a reference run the probability of improvement is NaN). ``status``: the sweep's
    completeness fields of :class:`~agents.records.CompareResult`."""
    rng = np.random.default_rng(config.stats_seed)
    reference = np.array([s.final_score for s in sorted(by_agent.get(config.reference, ()), key=lambda s: s.seed)])
    rows = []
    for agent, runs in by_agent.items():
        if not runs:
            continue
        runs = sorted(runs, key=lambda s: s.seed)
        scores = np.array([s.final_score for s in runs], dtype=np.float64)
        iqm = iqm_interval(scores, rng, config.n_resamples)
        pi = improvement_interval(scores, reference, rng, config.n_resamples) if len(reference) else _NO_INTERVAL
        rows.append(AgentStats(
            agent=agent, n=len(scores), iqm=iqm.value, ci_low=iqm.low, ci_high=iqm.high,
            mean=float(scores.mean()), std=float(scores.std(ddof=1)) if len(scores) > 1 else 0.0,
            prob_improvement_vs_opsd=pi.value, pi_ci_low=pi.low, pi_ci_high=pi.high,
            mean_alpha=float(np.mean([s.mean_alpha for s in runs])), final_scores=scores.tolist(),
            seeds=[s.seed for s in runs],
            controller_share=float(np.median([s.controller_share for s in runs])),
        ))
    plain_config = dataclasses.asdict(config) | {"agents": list(config.agents), "env_kwargs": dict(config.env_kwargs)}
    return CompareResult(config.env_id, config.reference, seeds, rows, wall_time, plain_config, **status)


_NO_INTERVAL = Interval(math.nan, math.nan, math.nan)
"""The probability of improvement when no reference run finished."""


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
    if not result.complete:
        planned = len(result.config.get("agents", [])) * len(result.seeds)
        finished = sum(row.n for row in result.agents)
        lines += ["", f"Incomplete: {finished} of {planned} runs finished"
                  + (" (interrupted)" if result.interrupted else "") + "; missing: "
                  + ", ".join(list(result.failed_runs) + result.unfinished_runs) + "."]
    return "\n".join(lines) + "\n"


def mean_alpha_curves(by_agent: Mapping[str, Sequence[RunSummary]]) -> dict[str, list[float]]:
    """Per agent, the alpha of each decision averaged over seeds (runs of equal length)."""
    curves = {}
    for agent, runs in by_agent.items():
        if not runs:
            continue
        length = min(len(s.alphas) for s in runs)
        curves[agent] = np.mean([s.alphas[:length] for s in runs], axis=0).tolist()
    return curves


def load_result(path: str | Path) -> tuple[CompareResult, dict[str, list[float]]]:
    """A ``compare.json`` read back: the result and the mean alpha curves."""
    payload = json.loads(Path(path).read_text())
    names = {f.name for f in dataclasses.fields(AgentStats)}
    rows = [AgentStats(**{k: v for k, v in row.items() if k in names}) for row in payload["agents"].values()]
    status = {f.name: payload[f.name] for f in dataclasses.fields(CompareResult)[6:] if f.name in payload}
    result = CompareResult(payload["env_id"], payload["reference"], payload["seeds"], rows, payload["wall_time_s"],
                           payload["config"], **status)
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

