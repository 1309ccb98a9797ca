"""The dual exposure biases of reasoning distillation, measured (MOTAB paper).

* **Exposure bias** (off-policy SFT): a student trained on teacher trajectories is judged on two
  kinds of context at the same step position ``j``: the teacher's own trajectory cut after ``j``
  steps (the contexts it was trained on) and its *own* sampled trajectory cut after ``j`` steps (the
  contexts it meets at inference). At every context we measure the student's per-token NLL of the
  locally correct next step and whether its greedy next step is that step. Exposure bias shows as
  worse numbers on own contexts, growing with ``j``.
* **Reversed exposure bias** (on-policy distillation): the teacher continues (greedily) from the
  student's prefix cut after ``j`` steps, or from its own prefix; we record whether the finished
  solution is right. Student prefixes are split by whether they were already wrong. Reversed
  exposure bias shows as a teacher that cannot rescue wrong student prefixes (its guidance there
  is poor), while it succeeds from its own.

"Locally correct next step" needs a step checker: the default is the synthetic add/sub chain's
:func:`~distill_backend.motab.diagnostics.chain_next_step`, which knows that task's line format and
nothing else. Other tasks pass their own ``next_step(problem, prefix_lines)``. Steps are lines here
(the tiny task's delimiter); this module does not use :class:`MotabConfig`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch

from distill_backend.evaluation import is_correct
from distill_backend.motab.diagnostics import chain_next_step
from distill_backend.motab.lm import sample, score_completions
from distill_backend.motab.pipeline import TokenizerInfo
from distill_backend.task import Problem

NextStep = Callable[[Problem, Sequence[str]], "str | None"]


def split_lines(text: str) -> list[str]:
    """Non-empty lines of a completion (the tiny task's steps)."""
    return [line for line in text.split("\n") if line.strip()]


def prefix_is_correct(problem: Problem, prefix_lines: Sequence[str]) -> bool:
    """Whether ``prefix_lines`` equal the reference solution's first lines."""
    reference = split_lines(problem.solution)
    return list(prefix_lines) == reference[: len(prefix_lines)]


class PositionCurve(NamedTuple):
    """A statistic as a function of step position, for several context kinds."""

    positions: list[int]
    series: dict[str, list[float]]
    """Kind -> mean statistic per position (nan where no context of that kind exists)."""
    counts: dict[str, list[int]]


class ExposureBias(NamedTuple):
    nll: PositionCurve
    """Student per-token NLL of the locally correct next step (kinds ``own``, ``teacher``)."""
    step_accuracy: PositionCurve
    """Student greedy next step == locally correct step (kinds ``own``, ``teacher``)."""


def _curve(rows: list[tuple[str, int, float]], kinds: Sequence[str]) -> PositionCurve:
    positions = sorted({j for _, j, _ in rows})
    series, counts = {}, {}
    for kind in kinds:
        values = [[v for k, j, v in rows if k == kind and j == p] for p in positions]
        series[kind] = [float(np.mean(v)) if v else float("nan") for v in values]
        counts[kind] = [len(v) for v in values]
    return PositionCurve(positions, series, counts)


def _completions(model, prompts, tok: TokenizerInfo, max_new_tokens, temperature, generator) -> list[str]:
    tokens = sample(model, prompts, max_new_tokens, eos_id=tok.eos_id, pad_id=tok.pad_id,
                    temperature=temperature, generator=generator).tokens
    return [tok.decode(t) for t in tokens]


def measure_exposure_bias(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    problems: Sequence[Problem],
    student_prompts: Sequence[Sequence[int]],
    teacher_prompts: Sequence[Sequence[int]],
    tok: TokenizerInfo,
    generator: torch.Generator,
    *,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    next_step: NextStep = chain_next_step,
) -> ExposureBias:
    """Student NLL and greedy step accuracy on own vs teacher contexts, by step position."""
    own = _completions(student, student_prompts, tok, max_new_tokens, temperature, generator)
    theirs = _completions(teacher, teacher_prompts, tok, max_new_tokens, temperature, generator)
    contexts, targets, labels = [], [], []
    for i, problem in enumerate(problems):
        for kind, text in (("own", own[i]), ("teacher", theirs[i])):
            lines = split_lines(text)
            for j in range(len(lines) + 1):
                target = next_step(problem, lines[:j])
                if target is None:
                    break
                context = "".join(line + "\n" for line in lines[:j])
                contexts.append(list(student_prompts[i]) + tok.encode(context))
                # The answer line ends the solution (EOS); every other step ends with its newline.
                end = [tok.eos_id] if "\\boxed" in target else tok.encode("\n")
                targets.append(tok.encode(target) + end)
                labels.append((kind, j, target))
    nll_rows, acc_rows = [], []
    for start in range(0, len(contexts), 512):
        chunk = slice(start, start + 512)
        scores = score_completions(student, contexts[chunk], targets[chunk], tok.pad_id)
        greedy = sample(student, contexts[chunk], max(len(t) for t in targets[chunk]) + 2, eos_id=tok.eos_id,
                        pad_id=tok.pad_id, temperature=0.0, stop_text="\n", token_texts=tok.texts).tokens
        for (kind, j, target), logp, step in zip(labels[chunk], scores.logprobs, greedy):
            nll_rows.append((kind, j, float(-logp.mean())))
            acc_rows.append((kind, j, float(tok.decode(step).strip() == target)))
    return ExposureBias(_curve(nll_rows, ("own", "teacher")), _curve(acc_rows, ("own", "teacher")))


def measure_reversed_exposure_bias(
    teacher: torch.nn.Module,
    student: torch.nn.Module,
    problems: Sequence[Problem],
    student_prompts: Sequence[Sequence[int]],
    teacher_prompts: Sequence[Sequence[int]],
    tok: TokenizerInfo,
    generator: torch.Generator,
    *,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
) -> PositionCurve:
    """Teacher success (greedy continuation to a correct final answer) from prefixes cut after
    ``j`` steps, by kind: ``student_correct``, ``student_wrong`` (the student prefix already differs
    from the reference) and ``teacher_own``."""
    own = _completions(student, student_prompts, tok, max_new_tokens, temperature, generator)
    theirs = _completions(teacher, teacher_prompts, tok, max_new_tokens, temperature, generator)
    contexts, meta = [], []
    for i, problem in enumerate(problems):
        steps = len(split_lines(problem.solution)) - 1  # reasoning steps before the boxed line
        for source, text in (("student", own[i]), ("teacher", theirs[i])):
            lines = [line for line in split_lines(text) if "\\boxed" not in line]
            for j in range(1, min(len(lines), steps) + 1):
                prefix = "".join(line + "\n" for line in lines[:j])
                if source == "teacher":
                    kind = "teacher_own"
                else:
                    kind = "student_correct" if prefix_is_correct(problem, lines[:j]) else "student_wrong"
                contexts.append(list(teacher_prompts[i]) + tok.encode(prefix))
                meta.append((kind, j, prefix, problem.answer))
    rows = []
    for start in range(0, len(contexts), 512):
        tokens = sample(teacher, contexts[start:start + 512], max_new_tokens, eos_id=tok.eos_id, pad_id=tok.pad_id,
                        temperature=0.0).tokens
        for (kind, j, prefix, answer), continuation in zip(meta[start:start + 512], tokens):
            rows.append((kind, j, float(is_correct(prefix + tok.decode(continuation), answer))))
    return _curve(rows, ("student_correct", "student_wrong", "teacher_own"))
