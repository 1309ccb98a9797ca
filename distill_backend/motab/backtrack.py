"""MOTAB backtracking: blame the step with the largest oracle-value drop and rewind before it.

Pure functions on the numbers of :mod:`distill_backend.motab.monitor`. The rewind point is a
count of *completion* tokens, so the prompt (the question, and for ATESD the exposed reference)
can never be cut: the earliest possible safe context is the bare prompt.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

from distill_backend.motab.config import MotabConfig
from distill_backend.motab.monitor import StepSpan


class Backtrack(NamedTuple):
    """Where one strayed trajectory is rewound to."""

    breach_step: int
    """First step with ``V < eps`` (0-based)."""
    root_cause: int
    """``t*``: the step with the largest single-step drop of V among steps ``0..breach_step``."""
    safe_length: int
    """Completion tokens kept as the safe context (all tokens before step ``t*``)."""

    @property
    def distance(self) -> int:
        """Steps between the breaching step and the root cause (0: the breaching step is blamed)."""
        return self.breach_step - self.root_cause


def value_drops(values: Sequence[float], cfg: MotabConfig) -> list[float]:
    """``V_k - V_{k-1}`` for every step, with ``V_{-1}`` set by ``cfg.root_cause_v0``.

    ``"one"``: ``V_{-1} = 1`` (the bare question is fully safe). ``"first"``: ``V_{-1} = V_0``, so
    the first step's drop is 0.
    """
    if not values:
        return []
    previous = 1.0 if cfg.root_cause_v0 == "one" else float(values[0])
    drops = []
    for value in values:
        drops.append(float(value) - previous)
        previous = float(value)
    return drops


def find_root_cause(values: Sequence[float], breach_step: int, cfg: MotabConfig) -> int:
    """``t* = argmin_{k <= breach_step} (V_k - V_{k-1})``; ties go to the earliest step.

    Rewinding to the earliest of equally large drops keeps the safe context the one the teacher
    trusted most.
    """
    if not 0 <= breach_step < len(values):
        raise ValueError(f"breach_step must be in [0, {len(values) - 1}]; received {breach_step}")
    drops = value_drops(values[: breach_step + 1], cfg)
    return min(range(len(drops)), key=lambda k: (drops[k], k))


def backtrack(
    spans: Sequence[StepSpan], values: Sequence[float], breach_step: int, cfg: MotabConfig
) -> Backtrack:
    """Root cause and safe context of a trajectory whose first breach is ``breach_step``."""
    root = find_root_cause(values, breach_step, cfg)
    return Backtrack(breach_step, root, spans[root].start)
