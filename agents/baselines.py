"""Reference controllers: constant, linear schedule, one step, random, and best-fixed-from-a-sweep.

``FixedController(1.0)`` is plain on-policy self-distillation (OPSD). None of these learn; they know
nothing about the backend, and read the run's progress from observation feature 0 (``t / T``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from agents.base import RunContext, StatelessController, as_action
from exposure_env.errors import ConfigError, check_range
from exposure_env.schema import OBSERVATION_NAMES

_PROGRESS = OBSERVATION_NAMES.index("progress")


class FixedController(StatelessController):
    """Hold one reveal ratio for the whole run (alpha = 1 is OPSD)."""

    def __init__(self, alpha: float) -> None:
        check_range("fixed alpha", alpha, 0.0, 1.0)
        self.alpha = float(alpha)
        self.name = f"fixed:{self.alpha:g}"

    def act(self, obs: np.ndarray) -> np.ndarray:
        return as_action(self.alpha)


class LinearController(StatelessController):
    """``alpha = start + (end - start) * t / T``: a schedule over the run's progress."""

    def __init__(self, start: float, end: float) -> None:
        check_range("linear start", start, 0.0, 1.0)
        check_range("linear end", end, 0.0, 1.0)
        self.start, self.end = float(start), float(end)
        self.name = f"linear:{self.start:g}:{self.end:g}"

    def act(self, obs: np.ndarray) -> np.ndarray:
        progress = float(np.clip(obs[_PROGRESS], 0.0, 1.0))
        return as_action(self.start + (self.end - self.start) * progress)


class StepController(StatelessController):
    """``alpha = before`` until progress ``t / T`` reaches ``at``, then ``after``: one switch."""

    def __init__(self, before: float, after: float, at: float = 0.5) -> None:
        check_range("step before", before, 0.0, 1.0)
        check_range("step after", after, 0.0, 1.0)
        check_range("step at", at, 0.0, 1.0)
        self.before, self.after, self.at = float(before), float(after), float(at)
        self.name = f"step:{self.before:g}:{self.after:g}:{self.at:g}"

    def act(self, obs: np.ndarray) -> np.ndarray:
        return as_action(self.before if float(obs[_PROGRESS]) < self.at else self.after)


class RandomController(StatelessController):
    """A fresh uniform reveal ratio every decision, seeded per run."""

    name = "random"

    def __init__(self, low: float = 0.0, high: float = 1.0) -> None:
        check_range("random low", low, 0.0, 1.0)
        check_range("random high", high, low, 1.0)
        self.low, self.high = float(low), float(high)
        self.rng = np.random.default_rng(0)

    def begin_run(self, context: RunContext) -> None:
        super().begin_run(context)
        self.rng = np.random.default_rng(context.seed)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return as_action(self.rng.uniform(self.low, self.high))

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]


def best_fixed_alpha(path: str | Path) -> float:
    """The reveal ratio with the highest ``final_score_mean`` in a fixed-exposure sweep file.

    The file is JSON with two parallel lists, ``alphas`` and ``final_score_mean``, either at the
    top level or under one nested key (sweeps that report several envs / models).
    """
    file = Path(path)
    try:
        data = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError("best-fixed sweep file", "a readable JSON file", str(path), str(exc)) from exc
    table = _find_sweep_table(data)
    if table is None:
        raise ConfigError(
            "best-fixed sweep file", "JSON with lists 'alphas' and 'final_score_mean'", str(path),
            f"top-level keys: {sorted(data) if isinstance(data, dict) else type(data).__name__}",
        )
    alphas, scores = table
    usable = [(s, a) for a, s in zip(alphas, scores) if s is not None and math.isfinite(float(s))]
    if not usable:
        raise ConfigError("best-fixed sweep file", "at least one finite final_score_mean", str(path))
    return float(max(usable)[1])


def _find_sweep_table(data: object) -> tuple[list, list] | None:
    if isinstance(data, dict):
        if "alphas" in data and "final_score_mean" in data:
            alphas, scores = data["alphas"], data["final_score_mean"]
            if isinstance(alphas, list) and isinstance(scores, list) and len(alphas) == len(scores):
                return alphas, scores
        for value in data.values():
            found = _find_sweep_table(value)
            if found is not None:
                return found
    return None


class BestFixedController(FixedController):
    """The constant reveal ratio that scored best in a fixed-exposure sweep file."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(best_fixed_alpha(path))
        self.source = str(path)
        self.name = f"best-fixed={self.alpha:g}"
