"""``atesd run``: one controlled run with its decision log, plot and summary.

``run_controlled`` builds the env and the controller from strings, optionally trains the controller
first (SB3 agents and ``beta-carry``: ``train_episodes`` runs on seeds disjoint from the evaluated
one), then runs one evaluated episode (:func:`agents.episode.rollout`) with a progress bar, writing

- ``decisions.jsonl``: one line per decision with the window's full per-update trace, flushed as it
  happens (a crash loses nothing);
- ``summary.json``: final score, mean alpha, timings (written atomically at the end);
- ``alpha.png``: the reveal ratio over updates with the score curve;
- ``tensorboard/`` with ``tensorboard=True``; the controller's checkpoint with ``save_path``.

It knows env ids and the Gymnasium API, never a backend.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import gymnasium as gym
import numpy as np

import exposure_env  # noqa: F401 - registers the env ids
from agents.base import Controller, RunContext
from agents.episode import StepRecord, rollout
from agents.plots import plot_run
from agents.records import RunSummary
from agents.registry import make_controller
from exposure_env.errors import check_range
from exposure_env.io import to_plain, write_json
from exposure_env.registration import SURROGATE_ID
from exposure_env.schema import OBSERVATION_NAMES

# Training runs of controllers that train before the evaluated run use seeds from here on, so they
# never replay the evaluated run (seeds of evaluated runs are small integers).
TRAIN_SEED_OFFSET = 1_000_000

@dataclass(frozen=True)
class RunConfig:
    """One ``atesd run``."""

    env_id: str = SURROGATE_ID
    """Registered env id (``ATESD-Surrogate-v0`` or ``ATESD-Qwen3-v0``)."""
    agent: str = "beta"
    """Agent spec (see :mod:`agents.registry`)."""
    seed: int = 0
    """Seed of the evaluated run (env reset and controller exploration)."""
    out_dir: str = "runs"
    """Parent directory; the run writes into ``out_dir/run_name``."""
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Plain-data keyword arguments for ``gym.make`` (env config and backend fields)."""
    train_episodes: int = 20
    """Training runs before the evaluated one, for agents that train first (SB3); ignored by the
    ATESD agent (it learns online) and the baselines."""
    run_name: str | None = None
    """Sub-directory name; default ``<agent>_seed<seed>`` with unsafe characters replaced."""
    tensorboard: bool = False
    """Also write TensorBoard scalars to ``<run>/tensorboard``."""
    progress_bar: bool = True
    """Show a tqdm bar over decisions."""
    plot: bool = True
    """Write ``alpha.png``."""
    load_path: str | None = None
    """Controller checkpoint to load before the run (carry-over learning)."""
    save_path: str | None = None
    """Where to save the controller after the run (default: not saved)."""

    def __post_init__(self) -> None:
        check_range("seed", self.seed, 0, None, integer=True)
        check_range("train_episodes", self.train_episodes, 0, None, integer=True)

    @property
    def run_dir(self) -> Path:
        name = self.run_name or f"{self.agent}_seed{self.seed}"
        safe = "".join(c if c.isalnum() or c in "-_.=+" else "_" for c in name)
        return Path(self.out_dir) / safe


def make_env_factory(env_id: str, env_kwargs: Mapping[str, Any]) -> Callable[[], gym.Env]:
    kwargs = dict(env_kwargs)
    return lambda: gym.make(env_id, **kwargs)


def run_controlled(config: RunConfig, controller: Controller | None = None) -> RunSummary:
    """Run one controlled episode and write its log, plot and summary (see the module docstring)."""
    start = time.perf_counter()
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    controller = controller if controller is not None else make_controller(config.agent, seed=config.seed)
    if config.load_path:
        controller.load(config.load_path)
    make_env = make_env_factory(config.env_id, config.env_kwargs)
    train_time = 0.0
    if controller.trains_before_run:
        t0 = time.perf_counter()
        controller.train(make_env, config.train_episodes, seed=TRAIN_SEED_OFFSET + config.seed)
        train_time = time.perf_counter() - t0

    env = make_env()
    logger = DecisionLogger(run_dir, config)
    try:
        episode = rollout(env, controller, config.seed, on_step=logger.log, on_reset=logger.begin)
    finally:
        logger.close()
        env.close()
    if config.save_path:
        controller.save(config.save_path)

    summary = RunSummary(
        agent=config.agent, env_id=config.env_id, seed=config.seed, final_score=episode.final_score,
        initial_score=episode.initial_score, best_score=max(episode.scores, default=episode.initial_score),
        mean_alpha=float(np.mean(episode.alphas)) if episode.alphas else math.nan,
        total_reward=episode.total_reward, num_decisions=len(episode.alphas), diverged=episode.diverged,
        controller_time_s=episode.controller_time_s, env_time_s=episode.env_time_s, train_time_s=train_time,
        wall_time_s=time.perf_counter() - start, run_dir=str(run_dir), alphas=episode.alphas,
        scores=episode.scores, updates=episode.updates,
    )
    payload = dataclasses.asdict(summary) | {"controller_share": summary.controller_share,
                                             "env_kwargs": dict(config.env_kwargs),
                                             "controller_end_stats": dict(episode.end_stats)}
    write_json(run_dir / "summary.json", payload)
    if config.plot:
        plot_run(summary, run_dir / "alpha.png")
    return summary


class DecisionLogger:
    """JSONL (flushed per line), optional TensorBoard and a tqdm bar for one run."""

    def __init__(self, run_dir: Path, config: RunConfig) -> None:
        self.config = config
        self.file = open(run_dir / "decisions.jsonl", "w", encoding="utf-8")
        self.writer = None
        if config.tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # optional extra, imported on demand

            self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self.bar = None

    def begin(self, context: RunContext) -> None:
        """The episode was reset: start the progress bar over its decisions."""
        if self.config.progress_bar:
            from tqdm.auto import tqdm  # optional extra, imported on demand

            self.bar = tqdm(total=context.num_decisions, desc=f"{self.config.agent} seed {self.config.seed}",
                            unit="decision")

    def log(self, record: StepRecord) -> None:
        line = decision_line(record)
        self.file.write(json.dumps(to_plain(line), allow_nan=False) + "\n")
        self.file.flush()
        if self.writer is not None:
            step = line["updates_done"]
            for key in ("alpha", "reward", "score", "mismatch"):
                self.writer.add_scalar(f"run/{key}", line[key], step)
            for key, value in line["controller"].items():
                self.writer.add_scalar(f"controller/{key}", value, step)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(alpha=f"{record.alpha:.2f}", score=f"{line['score']:.3f}")

    def close(self) -> None:
        self.file.close()
        if self.writer is not None:
            self.writer.close()
        if self.bar is not None:
            self.bar.close()


def decision_line(record: StepRecord) -> dict[str, Any]:
    """The JSON object logged for one decision: scalars, plus the window's per-update ``trace``
    (one list per statistic) and its means (``trace_mean``)."""
    info = record.info
    line: dict[str, Any] = {
        "step": record.step, "alpha": record.alpha, "reward": record.reward,
        "terminated": record.terminated, "truncated": record.truncated,
        "obs": {name: float(v) for name, v in zip(OBSERVATION_NAMES, record.obs)},
    }
    for key in ("score", "mismatch", "updates_done", "progress_before", "action_clipped", "diverged",
                "divergence_reason"):
        if key in info:
            line[key] = info[key]
    line["reward_components"] = dict(info["reward_components"])
    trace = info["trace"]
    # Every per-update statistic of the window, so a log is a trace a surrogate can be fitted to.
    line["trace"] = {k: [float(x) for x in np.asarray(v).reshape(-1)] for k, v in trace.items()}
    line["trace_mean"] = {k: float(np.mean(v)) for k, v in trace.items() if len(v)}
    line["controller"] = {k: float(v) for k, v in record.controller_stats.items()}
    line["controller_time_s"] = record.controller_time_s
    line["env_time_s"] = record.env_time_s
    return line
