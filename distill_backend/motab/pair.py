"""The teacher–student pair of MOTAB: two different models sharing one tokenizer.

The tiny default is built from the project's warm-start recipe (:mod:`distill_backend.warmstart`),
read from code, never pinned:

* the **student** is the testbed's warm start, ``WarmStartConfig()`` as it is defined now, so MOTAB
  is measured on the same starting point as every other experiment;
* the **teacher** is a stronger model of the same family: the same recipe with the next seed,
  trained further, its checkpoint selected at ~95% greedy accuracy instead of the student's partial
  one (:func:`default_teacher_recipe`).

Both are cached warm starts: the directory name is a hash of the recipe and the build is atomic, so
a recipe change rebuilds them and an unchanged one reuses them. One command builds (or loads) both
and reports their accuracies::

    python -m distill_backend.motab.pair

Real users pass two local checkpoint directories instead (e.g. a Qwen3-32B teacher and a Qwen3-4B
student); they must share a vocabulary, because the teacher scores the student's tokens.

This module knows how to obtain the two models and measure their accuracy; not what is done with
them.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Sequence

import torch

from distill_backend.models import load_causal_lm
from distill_backend.warmstart import (
    REPORT_FILE,
    WarmStartConfig,
    WarmStartReport,
    ensure_warmstart,
    format_report,
    load_report,
)
from exposure_env.errors import ConfigError

TEACHER_TARGET_ACCURACY = 0.95
"""Greedy student-format accuracy the default teacher's checkpoint is selected at."""
TEACHER_ACCURACY_WINDOW = (0.85, 0.99)
"""Accuracies accepted for the default teacher; its training stops once it passes 0.99."""
TEACHER_STEPS_FACTOR = 3
"""The default teacher may train this many times the student recipe's ``max_steps``."""


def default_student_recipe() -> WarmStartConfig:
    """The testbed's warm start, as :mod:`distill_backend.warmstart` defines it today."""
    return WarmStartConfig()


def default_teacher_recipe(student: WarmStartConfig | None = None) -> WarmStartConfig:
    """The student's recipe (task, prompts, model size, data mix) with the next seed, trained longer
    and selected at :data:`TEACHER_TARGET_ACCURACY`.

    Only the student-format accuracy selects it: MOTAB's teacher answers the bare question, so the
    teacher-role checks of the warm start (reading a revealed reference) are switched off
    (``teacher_min_accuracy=0``, one check problem). A different seed makes it a different model, not
    the student's own future.
    """
    student = student or default_student_recipe()
    return dataclasses.replace(
        student, seed=student.seed + 1, target_accuracy=TEACHER_TARGET_ACCURACY,
        accuracy_window=TEACHER_ACCURACY_WINDOW, teacher_min_accuracy=0.0, teacher_eval_size=1,
        max_steps=TEACHER_STEPS_FACTOR * student.max_steps,
    )


@dataclass(frozen=True)
class PairConfig:
    """Where the teacher and the student come from."""

    student_recipe: WarmStartConfig = field(default_factory=default_student_recipe)
    """Warm-start recipe of the tiny student (default: the testbed's warm start)."""
    teacher_recipe: WarmStartConfig | None = None
    """Warm-start recipe of the tiny teacher; None: :func:`default_teacher_recipe` of the student's."""
    student_path: str | None = None
    """Local checkpoint of the student; overrides ``student_recipe``."""
    teacher_path: str | None = None
    """Local checkpoint of the teacher; overrides ``teacher_recipe``."""
    device: str = "auto"
    dtype: str = "auto"

    @property
    def resolved_teacher_recipe(self) -> WarmStartConfig:
        return self.teacher_recipe or default_teacher_recipe(self.student_recipe)


class Pair(NamedTuple):
    student: torch.nn.Module
    teacher: torch.nn.Module
    tokenizer: Any
    device: torch.device
    student_path: str
    teacher_path: str
    warmstart_accuracy: dict[str, float]
    """Greedy student-format accuracy of each warm start on its selection problems (checkpoints
    with a ``warmstart.json`` only)."""


def resolve_paths(cfg: PairConfig, progress: bool = False) -> tuple[str, str]:
    """Checkpoint directories of (student, teacher), building cached warm starts when needed."""
    student = cfg.student_path or str(ensure_warmstart(cfg.student_recipe, progress=progress))
    teacher = cfg.teacher_path or str(ensure_warmstart(cfg.resolved_teacher_recipe, progress=progress))
    return student, teacher


def load_pair(cfg: PairConfig) -> Pair:
    """Load both models (teacher frozen: eval mode, no gradients)."""
    student_path, teacher_path = resolve_paths(cfg)
    student = load_causal_lm(student_path, cfg.device, cfg.dtype)
    teacher = load_causal_lm(teacher_path, cfg.device, cfg.dtype)
    if student.tokenizer.get_vocab() != teacher.tokenizer.get_vocab():
        raise ConfigError("teacher_path", "a checkpoint with the student's vocabulary", teacher_path,
                          hint="the teacher scores the student's tokens, so both must share one tokenizer")
    teacher.model.eval()
    teacher.model.requires_grad_(False)
    accuracy = {}
    for role, path in (("student", student_path), ("teacher", teacher_path)):
        if (pathlib.Path(path) / REPORT_FILE).is_file():  # a tiny warm start knows its accuracy
            accuracy[role] = load_report(pathlib.Path(path)).student_accuracy
    return Pair(student.model, teacher.model, student.tokenizer, student.device, student_path, teacher_path, accuracy)


def checkpoint_recipe(path: str | pathlib.Path) -> WarmStartConfig | None:
    """The warm-start recipe a tiny checkpoint was built with (None for other checkpoints)."""
    from distill_backend.config import backend_config_from_kwargs

    report_path = pathlib.Path(path) / REPORT_FILE
    if not report_path.is_file():
        return None
    try:
        return backend_config_from_kwargs({"warmstart": load_report(report_path.parent).recipe}).warmstart
    except ConfigError:  # built by an older recipe version with other fields
        return None


class PairReport(NamedTuple):
    """What ``python -m distill_backend.motab.pair`` measured."""

    student_path: str
    teacher_path: str
    student_test_accuracy: float
    """Greedy accuracy (student prompt) on the first ``test_size`` test problems."""
    teacher_test_accuracy: float
    """Same measurement for the teacher (it answers the same prompt)."""
    test_size: int
    student_build: WarmStartReport | None
    teacher_build: WarmStartReport | None


def measure_pair(cfg: PairConfig, test_size: int = 600) -> PairReport:
    """Build or load both models and measure their greedy test accuracy on the student's task."""
    from distill_backend.evaluation import EvalConfig, evaluate_prompts
    from distill_backend.prompts import student_prompt
    from distill_backend.task import make_splits

    resolve_paths(cfg, progress=True)
    pair = load_pair(cfg)
    recipe = checkpoint_recipe(pair.student_path) or cfg.student_recipe
    problems = list(make_splits(recipe.task).test[:test_size])
    prompts = [student_prompt(p.problem, pair.tokenizer, recipe.prompts) for p in problems]
    eval_cfg = EvalConfig(k=1, max_new_tokens=max(len(p.solution) for p in problems) + 8)

    def accuracy(model: torch.nn.Module) -> float:
        return evaluate_prompts(model, pair.tokenizer, prompts, problems, eval_cfg, None, pair.device,
                                greedy=True).average_at_k

    builds = [load_report(pathlib.Path(p)) if (pathlib.Path(p) / REPORT_FILE).is_file() else None
              for p in (pair.student_path, pair.teacher_path)]
    return PairReport(pair.student_path, pair.teacher_path, accuracy(pair.student), accuracy(pair.teacher),
                      len(problems), builds[0], builds[1])


def format_pair_report(report: PairReport) -> str:
    lines = []
    for role, path, build in (("student", report.student_path, report.student_build),
                              ("teacher", report.teacher_path, report.teacher_build)):
        lines.append(f"== {role}: {path}")
        if build is not None:
            lines.append(format_report(build))
    lines.append(f"greedy test accuracy ({report.test_size} problems): student {report.student_test_accuracy:.3f}, "
                 f"teacher {report.teacher_test_accuracy:.3f}")
    if report.teacher_test_accuracy <= report.student_test_accuracy:
        lines.append("WARNING: the teacher is not stronger than the student")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> PairReport:
    parser = argparse.ArgumentParser(description="Build (or load) MOTAB's default teacher-student pair from the "
                                                 "current warm-start recipe and report both accuracies.")
    parser.add_argument("--test-size", type=int, default=600, help="test problems of the greedy accuracy")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = measure_pair(PairConfig(device="cpu", dtype="float32"), test_size=args.test_size)
    print(format_pair_report(report), flush=True)
    return report


if __name__ == "__main__":
    main()
