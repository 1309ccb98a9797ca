"""How well a MOTAB monitor finds the student's real mistakes, on a task whose steps are checkable.

The synthetic add/sub chain (:mod:`distill_backend.task`) is verifiable step by step: a step is
**wrong** when its result (the number after ``=``, or the boxed answer) differs from the locally
correct one, i.e. the result of applying the question's next operation to the value the previous
line ended with (:func:`chain_next_step`). "Locally" means a step that correctly continues an
already wrong value is right: the monitor should blame where the error is made, not every step
after it. A step that cannot be parsed, or comes after the boxed answer, is wrong.

Against those labels a monitor is scored twice (:class:`MonitorQuality`):

* per step, as a classifier: a step is flagged when ``V < eps`` (every monitored step, not only the
  first breach): ``step_recall`` = P(flagged | wrong), ``step_precision`` = P(wrong | flagged);
* per trajectory, as MOTAB uses it (one intervention at the first breach): ``breach_recall`` =
  P(breach | the trajectory has a wrong step), ``breach_precision`` = P(the breach is at or after
  the first wrong step | breach), their F1, ``breach_at_error`` = P(breach exactly at the first
  wrong step | the trajectory has a wrong step) and ``root_cause_hit`` = P(root cause = first wrong
  step | breach at or after it).

Pure functions on numbers and texts; no model or tokenizer. Other verifiable tasks pass their
own per-step error labels to :func:`monitor_quality`.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple, Sequence

import numpy as np

from distill_backend.motab.backtrack import find_root_cause
from distill_backend.motab.config import MotabConfig
from distill_backend.motab.monitor import MonitorResult
from distill_backend.task import Problem

_TERM = re.compile(r"([+-])(\d+)")
_LINE = re.compile(r"^\s*(\d+)\s*([+-])\s*(\d+)\s*=\s*(\d+)\s*$")
_BOXED = re.compile(r"^\s*\\boxed\{\s*(\d+)\s*\}\s*$")


def chain_next_step(problem: Problem, prefix_lines: Sequence[str], modulus: int = 10) -> str | None:
    """The locally correct next line of the add/sub chain after ``prefix_lines``.

    "Locally": it applies the next operation to the value the prefix ended with, even when that
    value is already wrong, so it is the step a competent solver would write in that context.
    After the last operation it is ``\\boxed{value}``; after the boxed line, or when the last line
    cannot be parsed, None.
    """
    first = re.match(r"\s*(\d+)", problem.problem)
    if first is None:
        return None
    operations = _TERM.findall(problem.problem[first.end():])
    value = int(first.group(1)) % modulus
    if prefix_lines:
        parsed = _LINE.match(prefix_lines[-1])
        if parsed is None:
            return None
        value = int(parsed.group(4)) % modulus
    j = len(prefix_lines)
    if j < len(operations):
        sign, operand = operations[j]
        new = (value + int(operand)) % modulus if sign == "+" else (value - int(operand)) % modulus
        return f"{value}{sign}{operand}={new}"
    if j == len(operations):
        return f"\\boxed{{{value}}}"
    return None


def step_result(line: str) -> tuple[str, str] | None:
    """``("=", c)`` for a line ``a±b=c``, ``("boxed", v)`` for ``\\boxed{v}``, else None."""
    parsed = _LINE.match(line)
    if parsed is not None:
        return "=", parsed.group(4)
    boxed = _BOXED.match(line)
    return ("boxed", boxed.group(1)) if boxed is not None else None


def chain_step_errors(problem: Problem, step_texts: Sequence[str], modulus: int = 10) -> list[bool]:
    """Per step: True when its result is not the locally correct one (see the module docstring).

    ``step_texts`` are the steps as the monitor split them (delimiters included; surrounding
    whitespace is ignored).
    """
    lines = [text.strip() for text in step_texts]
    errors = []
    for k, line in enumerate(lines):
        expected = chain_next_step(problem, lines[:k], modulus)
        written = step_result(line)
        errors.append(expected is None or written is None or written != step_result(expected))
    return errors


class RevisionStats(NamedTuple):
    """What a student's own outputs do with the revise marker (nan where a ratio has no cases).

    A revision is a marker line; the *revised step* is the chain step written just before it, the
    *replacement* the line just after it. Both are judged at the revised step's position: against
    the locally correct step after the chain as it stood before the revised step (a replacement
    that restarts further back is judged wrong). After a revision the chain continues from the
    replacement."""

    outputs: int
    with_revision: float
    """Share of outputs with at least one revision."""
    revisions: int
    revised_wrong: float
    """P(the revised step was wrong | revision): does the student revise where it should?"""
    fixes: float
    """P(wrong step replaced by the right one | revision)."""
    breaks: float
    """P(right step replaced by a wrong one | revision)."""
    accuracy_with_revision: float
    """Share of outputs with a revision whose final answer is right."""
    accuracy_without_revision: float


def revision_stats(texts: Sequence[str], problems: Sequence[Problem], correct: Sequence[bool],
                   marker: str = "However,", modulus: int = 10) -> RevisionStats:
    """:class:`RevisionStats` of ``texts`` (output ``i`` answers ``problems[i]``; ``correct[i]``: its
    final answer is right) on the add/sub chain."""
    if not (len(texts) == len(problems) == len(correct)):
        raise ValueError(f"texts, problems and correct must have one entry per output; received "
                         f"{len(texts)}, {len(problems)}, {len(correct)}")
    revised_wrong, replacement_right, has_revision = [], [], []
    for text, problem in zip(texts, problems):
        chain: list[str] = []
        pending: tuple[bool, str | None] | None = None  # (revised step wrong, right step at its position)
        revised = False
        for line in (raw.strip() for raw in text.split("\n")):
            if not line:
                continue
            if line.startswith(marker.strip()):
                if chain:
                    expected = chain_next_step(problem, chain[:-1], modulus)
                    wrong = expected is None or step_result(chain[-1]) != step_result(expected)
                    pending, revised = (wrong, expected), True
                    chain = chain[:-1]
                continue
            if pending is not None:
                wrong, expected = pending
                revised_wrong.append(wrong)
                replacement_right.append(expected is not None and step_result(line) == step_result(expected))
                pending = None
            chain.append(line)
        if pending is not None:  # a marker with nothing after it
            revised_wrong.append(pending[0])
            replacement_right.append(False)
        has_revision.append(revised)
    flags, before, after = (np.array(x, dtype=bool) for x in (has_revision, revised_wrong, replacement_right))
    right = np.asarray(correct, dtype=bool)

    def ratio(mask: np.ndarray) -> float:
        return float(mask.mean()) if mask.size else math.nan

    return RevisionStats(
        outputs=len(texts), with_revision=ratio(flags), revisions=int(before.size),
        revised_wrong=ratio(before), fixes=ratio(before & after), breaks=ratio(~before & ~after),
        accuracy_with_revision=ratio(right[flags]), accuracy_without_revision=ratio(right[~flags]))


class MonitorQuality(NamedTuple):
    """A monitor's verdicts against verifiable step errors (nan where a ratio has no cases)."""

    steps: int
    """Monitored steps."""
    wrong_steps: int
    step_recall: float
    """P(V < eps | wrong step)."""
    step_precision: float
    """P(wrong step | V < eps)."""
    trajectories: int
    erroneous: int
    """Trajectories with at least one wrong monitored step."""
    breached: int
    breach_recall: float
    """P(breach | erroneous trajectory). A breach before the first error still removes it (the
    teacher rewrites from before the breach), so any breach counts."""
    breach_precision: float
    """P(breach at or after the first wrong step | breach)."""
    breach_f1: float
    """Harmonic mean of ``breach_recall`` and ``breach_precision``."""
    breach_at_error: float
    """P(breach exactly at the first wrong step | erroneous trajectory)."""
    root_cause_hit: float
    """P(root cause = first wrong step | breach at or after the first wrong step)."""
    value_auc: float
    """P(V of a wrong step < V of a right step), ties counted half: how well V alone separates."""
    wrong_value_mean: float
    right_value_mean: float


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def lower_auc(low: Sequence[float], high: Sequence[float]) -> float:
    """P(x < y) + P(x = y) / 2 for x drawn from ``low`` and y from ``high`` (nan if either is empty)."""
    if not len(low) or not len(high):
        return math.nan
    ys = np.sort(np.asarray(high, dtype=np.float64))
    xs = np.asarray(low, dtype=np.float64)
    below = np.searchsorted(ys, xs, side="left")  # ys < x
    at_or_below = np.searchsorted(ys, xs, side="right")  # ys <= x
    above = len(ys) - at_or_below
    ties = at_or_below - below
    return float((above + 0.5 * ties).sum() / (len(xs) * len(ys)))


def monitor_quality(
    verdicts: Sequence[MonitorResult], errors: Sequence[Sequence[bool]], cfg: MotabConfig
) -> MonitorQuality:
    """Score ``verdicts`` (one per trajectory) against per-step ``errors`` (one list per trajectory,
    at least as long as its monitored steps); ``cfg`` locates the root cause as MOTAB would."""
    if len(verdicts) != len(errors):
        raise ValueError(f"one error list per verdict: {len(verdicts)} verdicts, {len(errors)} error lists")
    wrong_values: list[float] = []
    right_values: list[float] = []
    flagged = flagged_wrong = erroneous = breached = caught = precise = at_error = hits = 0
    for verdict, labels in zip(verdicts, errors):
        steps = len(verdict.values)
        if len(labels) < steps:
            raise ValueError(f"{len(labels)} error labels for {steps} monitored steps")
        for wrong, value, eps in zip(labels, verdict.values, verdict.boundaries):
            (wrong_values if wrong else right_values).append(value)
            flagged += value < eps
            flagged_wrong += wrong and value < eps
        first_wrong = next((k for k in range(steps) if labels[k]), None)
        erroneous += first_wrong is not None
        if verdict.breach is None:
            continue
        breached += 1
        caught += first_wrong is not None
        if first_wrong is not None and first_wrong <= verdict.breach:
            precise += 1
            at_error += first_wrong == verdict.breach
            hits += find_root_cause(verdict.values, verdict.breach, cfg) == first_wrong
    recall, precision = _ratio(caught, erroneous), _ratio(precise, breached)
    f1 = 2 * recall * precision / (recall + precision) if recall + precision > 0 else math.nan
    return MonitorQuality(
        steps=len(wrong_values) + len(right_values), wrong_steps=len(wrong_values),
        step_recall=_ratio(flagged_wrong, len(wrong_values)), step_precision=_ratio(flagged_wrong, flagged),
        trajectories=len(verdicts), erroneous=erroneous, breached=breached,
        breach_recall=recall, breach_precision=precision, breach_f1=f1,
        breach_at_error=_ratio(at_error, erroneous), root_cause_hit=_ratio(hits, precise),
        value_auc=lower_auc(wrong_values, right_values),
        wrong_value_mean=float(np.mean(wrong_values)) if wrong_values else math.nan,
        right_value_mean=float(np.mean(right_values)) if right_values else math.nan,
    )

