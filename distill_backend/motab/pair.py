"""The teacher–student pair of MOTAB: two different models sharing one tokenizer.

The tiny default builds both from the warm-start recipe (:mod:`distill_backend.warmstart`): a
**stronger teacher** (same size, another seed, trained longer, to ~95% accuracy) and a **weaker
student** (selected at partial accuracy). Real users pass two local checkpoint
directories instead (e.g. a Qwen3-32B teacher and a Qwen3-4B student); they must share a
vocabulary, because the teacher scores the student's tokens.

This module knows how to obtain the two models; not what is done with them.
"""

from __future__ import annotations

import dataclasses
import pathlib
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from distill_backend.models import load_causal_lm
from distill_backend.warmstart import REPORT_FILE, WarmStartConfig, ensure_warmstart, load_report
from exposure_env.errors import ConfigError


def default_student_recipe() -> WarmStartConfig:
    """The project's warm-start recipe in the student format only (``teacher_fraction=0``).

    MOTAB's teacher answers the bare question (it is a stronger model, not a model reading the
    reference), so neither model needs the teacher format. Dropping it also puts all the SFT signal
    on the arithmetic, which emerges abruptly (a grokking-like jump) after a few hundred updates.
    """
    return WarmStartConfig(teacher_fraction=0.0)


def default_teacher_recipe(student: WarmStartConfig | None = None) -> WarmStartConfig:
    """The student's recipe (same task, prompts and size) with another seed, trained longer:
    checkpoint selection aims at ~95% greedy accuracy instead of the student's partial one."""
    student = student or default_student_recipe()
    return dataclasses.replace(student, target_accuracy=0.95, accuracy_window=(0.85, 0.98), seed=student.seed + 1)


@dataclass(frozen=True)
class PairConfig:
    """Where the teacher and the student come from."""

    student_recipe: WarmStartConfig = field(default_factory=default_student_recipe)
    """Warm-start recipe of the tiny student (default: partial accuracy ~0.4)."""
    teacher_recipe: WarmStartConfig | None = None
    """Warm-start recipe of the tiny teacher; None: :func:`default_teacher_recipe` of the student's."""
    student_path: str | None = None
    """Local checkpoint of the student; overrides ``student_recipe``."""
    teacher_path: str | None = None
    """Local checkpoint of the teacher; overrides ``teacher_recipe``."""
    device: str = "auto"
    dtype: str = "auto"


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


def resolve_paths(cfg: PairConfig) -> tuple[str, str]:
    """Checkpoint directories of (student, teacher), building cached warm starts when needed."""
    student = cfg.student_path or str(ensure_warmstart(cfg.student_recipe))
    teacher_recipe = cfg.teacher_recipe or default_teacher_recipe(cfg.student_recipe)
    teacher = cfg.teacher_path or str(ensure_warmstart(teacher_recipe))
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
