"""The result records of ``atesd run`` and ``atesd compare``: what ``summary.json`` and
``compare.json`` hold, and what the plots and tables read.

Plain frozen dataclasses; the module knows nothing about how the results are produced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def display_name(spec: str) -> str:
    """Short label of an agent spec: ``best-fixed:/long/path/sweep.json`` -> ``best-fixed:sweep.json``,
    ``beta-pretrained:/long/path/beta:online`` -> ``beta-pretrained:beta:online``."""
    name, _, rest = spec.partition(":")
    if name == "best-fixed":
        return f"{name}:{Path(rest).name}"
    if name.endswith("-pretrained"):
        online = rest.endswith(":online")
        path = rest.removesuffix(":online") if online else rest
        return f"{name}:{Path(path).name}" + (":online" if online else "")
    return spec


@dataclass(frozen=True)
class RunSummary:
    """Result of one controlled run (``atesd run``); also written as ``summary.json``."""

    agent: str
    env_id: str
    seed: int
    final_score: float
    initial_score: float
    best_score: float
    mean_alpha: float
    total_reward: float
    num_decisions: int
    diverged: bool
    controller_time_s: float
    env_time_s: float
    train_time_s: float
    wall_time_s: float
    run_dir: str
    alphas: list[float]
    scores: list[float]
    updates: list[int]

    @property
    def controller_share(self) -> float:
        """Controller time over env time of the evaluated run (the overhead ratio)."""
        return self.controller_time_s / self.env_time_s if self.env_time_s > 0 else math.nan


@dataclass(frozen=True)
class AgentStats:
    """One row of the comparison table (``atesd compare``)."""

    agent: str
    n: int
    iqm: float
    ci_low: float
    ci_high: float
    mean: float
    std: float
    prob_improvement_vs_opsd: float
    """P(agent > reference) + 0.5 P(=) over seed pairs; the reference is ``CompareResult.reference``."""
    pi_ci_low: float
    pi_ci_high: float
    mean_alpha: float
    final_scores: list[float]
    seeds: list[int]
    controller_share: float
    """Median over seeds of controller time / env time in the evaluated run."""


@dataclass(frozen=True)
class CompareResult:
    """Everything ``compare.json`` holds (rows keyed by agent spec there)."""

    env_id: str
    reference: str
    seeds: list[int]
    agents: list[AgentStats]
    """One row per agent with at least one finished run."""
    wall_time_s: float
    config: dict[str, Any]
    reused_runs: int = 0
    """Runs found finished in the runs directory (an earlier call of the same sweep) and not run again."""
    failed_runs: dict[str, str] = field(default_factory=dict)
    """Run directory name -> why that run failed (its exception, or how its worker process died)."""
    unfinished_runs: list[str] = field(default_factory=list)
    """Run directory names of the runs that never finished because the sweep was interrupted."""
    interrupted: bool = False
    """Ctrl-C stopped the sweep; the rows cover the runs that had finished."""

    @property
    def complete(self) -> bool:
        """Every planned run finished."""
        return not self.failed_runs and not self.unfinished_runs
