"""MOTAB's teacher–student pair: derived from the current warm-start recipe, cached, both accuracies
reported."""

import dataclasses
from pathlib import Path

from distill_backend.motab.pair import (
    TEACHER_STEPS_FACTOR,
    PairConfig,
    checkpoint_recipe,
    default_student_recipe,
    default_teacher_recipe,
    format_pair_report,
    measure_pair,
    resolve_paths,
)
from distill_backend.warmstart import WarmStartConfig, warmstart_dir


def test_default_pair_follows_the_warmstart_recipe():
    student = default_student_recipe()
    assert student == WarmStartConfig()  # the testbed's warm start, whatever its recipe is today
    teacher = default_teacher_recipe(student)
    assert (teacher.task, teacher.model, teacher.prompts) == (student.task, student.model, student.prompts)
    assert teacher.seed == student.seed + 1 and teacher.max_steps == TEACHER_STEPS_FACTOR * student.max_steps
    assert teacher.target_accuracy == 0.95 and teacher.target_accuracy > student.target_accuracy
    assert teacher.cache_key() != student.cache_key()
    assert PairConfig().resolved_teacher_recipe == teacher
    other = dataclasses.replace(student, lr=1e-3)  # a recipe change reaches the teacher
    assert default_teacher_recipe(other).lr == 1e-3


def test_pair_is_built_cached_and_measured(tiny_config, tiny_cache):
    recipe = tiny_config.warmstart
    cfg = PairConfig(student_recipe=recipe, device="cpu", dtype="float32")
    report = measure_pair(cfg, test_size=8)
    assert report.student_path == str(warmstart_dir(recipe))
    assert report.teacher_path == str(warmstart_dir(default_teacher_recipe(recipe)))
    assert report.test_size == 8
    assert 0.0 <= report.student_test_accuracy <= 1.0 and 0.0 <= report.teacher_test_accuracy <= 1.0
    assert report.teacher_build is not None and report.teacher_build.recipe["seed"] == recipe.seed + 1
    assert checkpoint_recipe(report.student_path) == recipe  # the recipe travels with the checkpoint
    assert checkpoint_recipe(tiny_cache) is None
    stamp = (Path(report.teacher_path) / "warmstart.json").stat().st_mtime_ns
    assert resolve_paths(cfg) == (report.student_path, report.teacher_path)  # cached: nothing rebuilt
    assert (Path(report.teacher_path) / "warmstart.json").stat().st_mtime_ns == stamp
    text = format_pair_report(report)
    assert "greedy test accuracy (8 problems)" in text and report.teacher_path in text
