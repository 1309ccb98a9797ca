"""The synthetic reasoning task and the local dataset loader.

The default task is a chain of ``K`` additions/subtractions modulo 10, e.g. problem ``7+3-5+2``,
solved one step per line and closed by the final answer in ``\\boxed{}``::

    7+3=0
    0-5=5
    5+2=7
    \\boxed{7}

Why this task: a from-scratch 130k-parameter Qwen3 learns it in seconds on a CPU (mod 100 was far
too hard at that scale, see TINY-SETUP-NOTES), every step is verifiable, and the number of steps is
a clean difficulty knob (errors compound along the chain). The mixed default has three levels.

Splits (train / probe / test) are drawn from one seeded generator and made disjoint by rejecting
duplicates, so they are a pure function of :class:`TaskConfig`. The warm start selects its
checkpoint on the probe split and the benchmarks evaluate on the test split.

Local datasets (:func:`read_dataset`) keep the row number of each problem, so the backend's checks
against its tokenizer and context (:func:`screen_rows`) name the row that fails.

This module knows nothing about prompts, tokenizers or models: it produces text records only.
"""

from __future__ import annotations

import json
import pathlib
import re
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import numpy as np

from exposure_env.errors import ConfigError, DatasetError, check_range, store_integers


class Problem(NamedTuple):
    """One question with its reference solution (final line ``\\boxed{answer}``)."""

    problem: str
    solution: str
    answer: str
    difficulty: str = "unknown"


class Splits(NamedTuple):
    train: tuple[Problem, ...]
    probe: tuple[Problem, ...]
    test: tuple[Problem, ...]


@dataclass(frozen=True)
class TaskConfig:
    """The synthetic task family and its splits."""

    levels: tuple[str, ...] = ("easy", "medium", "hard")
    """Difficulty level names, in increasing difficulty."""
    num_steps: tuple[int, ...] = (2, 3, 4)
    """Number of add/sub steps of each level (same order as ``levels``). (2, 4, 6) was tried first with a
    64-wide model and stayed at chance for 740 SFT steps (measured); short chains also keep
    rollouts short on a 2-core CPU."""
    level_weights: tuple[float, ...] = (1.0, 1.0, 1.0)
    """Relative frequency of each level in every split (the mixed-difficulty default: equal)."""
    modulus: int = 10
    """Arithmetic modulus; operands are drawn from ``0..modulus-1``."""
    train_size: int = 20000
    probe_size: int = 300
    test_size: int = 600
    seed: int = 0
    """Data seed: fixes the splits (independent of the run seed, so every run sees the same test set)."""

    def __post_init__(self) -> None:
        store_integers(self)
        if not self.levels or len(self.levels) != len(self.num_steps) or len(self.levels) != len(self.level_weights):
            raise ConfigError(
                "levels/num_steps/level_weights", "non-empty tuples of equal length",
                (self.levels, self.num_steps, self.level_weights),
            )
        for steps in self.num_steps:
            check_range("num_steps", steps, 1, 64, integer=True)
        for weight in self.level_weights:
            check_range("level_weights", weight, 0.0, None)
        if sum(self.level_weights) <= 0:
            raise ConfigError("level_weights", "weights with a positive sum", self.level_weights)
        check_range("modulus", self.modulus, 2, 10, integer=True)  # single-digit operands keep 1 char/number
        check_range("train_size", self.train_size, 1, None, integer=True)
        check_range("probe_size", self.probe_size, 1, None, integer=True)
        check_range("test_size", self.test_size, 1, None, integer=True)
        check_range("seed", self.seed, 0, None, integer=True)


def make_problem(operands: Sequence[int], signs: Sequence[str], modulus: int, difficulty: str) -> Problem:
    """Build the problem text, the step-by-step solution and the answer from operands and signs."""
    value = operands[0] % modulus
    text = str(value)
    lines = []
    for sign, operand in zip(signs, operands[1:]):
        new = (value + operand) % modulus if sign == "+" else (value - operand) % modulus
        lines.append(f"{value}{sign}{operand}={new}")
        text += f"{sign}{operand}"
        value = new
    answer = str(value)
    lines.append(f"\\boxed{{{answer}}}")
    return Problem(text, "\n".join(lines), answer, difficulty)


def sample_problem(config: TaskConfig, rng: np.random.Generator) -> Problem:
    weights = np.asarray(config.level_weights, dtype=np.float64)
    level = int(rng.choice(len(config.levels), p=weights / weights.sum()))
    steps = config.num_steps[level]
    operands = rng.integers(0, config.modulus, size=steps + 1).tolist()
    signs = ["+" if s else "-" for s in rng.integers(0, 2, size=steps).tolist()]
    return make_problem(operands, signs, config.modulus, config.levels[level])


def make_splits(config: TaskConfig) -> Splits:
    """Disjoint train/probe/test splits, a pure function of ``config``.

    Test and probe are drawn first (they matter most for comparisons); a duplicate of any problem
    already drawn is rejected. Levels with few distinct problems (2 steps mod 10 has 4,000) may
    repeat inside train, never across splits.
    """
    rng = np.random.default_rng([config.seed, 0xA7E5])
    seen: set[str] = set()

    def draw(size: int, unique: bool) -> tuple[Problem, ...]:
        out: list[Problem] = []
        attempts = 0
        while len(out) < size:
            attempts += 1
            if attempts > 50 * size + 1000:
                raise ConfigError("test_size/probe_size", "small enough for the task's number of distinct problems",
                                  (config.test_size, config.probe_size))
            p = sample_problem(config, rng)
            if p.problem in seen:
                continue
            if unique:
                seen.add(p.problem)
            out.append(p)
        return tuple(out)

    test = draw(config.test_size, unique=True)
    probe = draw(config.probe_size, unique=True)
    train = draw(config.train_size, unique=False)
    return Splits(train, probe, test)


# -- local datasets ------------------------------------------------------------------------------

_BOXED = re.compile(r"\\boxed\{")
REQUIRED_FIELDS = ("problem", "solution", "answer")


def _read_rows(path: pathlib.Path) -> list[tuple[int, object]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        rows = []
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DatasetError(f"{path}: row {number}: not UTF-8 text ({exc.reason}); save the file as "
                                       "UTF-8") from exc
                if not line.strip():
                    continue
                try:
                    rows.append((number, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path}: row {number}: not valid JSON ({exc.msg})") from exc
        return rows
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise DatasetError(f"{path}: reading Parquet needs pyarrow: pip install -e '.[data]'") from exc
        try:
            table = pq.read_table(path)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
            raise DatasetError(f"{path}: not a readable Parquet file ({' '.join(str(exc).split())})") from exc
        return list(enumerate(table.to_pylist(), start=1))
    raise DatasetError(f"{path}: unsupported file type {suffix!r}; expected .jsonl, .json or .parquet")


class Dataset(NamedTuple):
    """A local dataset as loaded: its problems and where each came from."""

    path: str
    problems: tuple[Problem, ...]
    rows: tuple[int, ...]
    """The 1-based row of each problem (the line for JSONL), for messages that point at it."""


def read_dataset(path: str | pathlib.Path, difficulty_field: str = "difficulty") -> Dataset:
    """Load ``problem``/``solution``/``answer`` rows from a local JSONL or Parquet file.

    Every row is validated: the three fields must be non-empty strings (an integer answer is
    accepted and converted). A solution that lacks ``\\boxed{}`` gets ``\\boxed{answer}`` appended
    as its final line, so exposure always has a final answer to keep. Errors name the file, the row
    (1-based line for JSONL) and the field.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: dataset file not found; check dataset_path")
    problems, numbers = [], []
    for number, row in _read_rows(path):
        if not isinstance(row, dict):
            raise DatasetError(f"{path}: row {number}: expected an object with fields {REQUIRED_FIELDS}, got {type(row).__name__}")
        values = {}
        for field in REQUIRED_FIELDS:
            if field not in row:
                raise DatasetError(f"{path}: row {number}: missing field {field!r}")
            value = row[field]
            if field == "answer" and isinstance(value, (int, float)) and not isinstance(value, bool):
                value = str(int(value)) if float(value).is_integer() else str(value)
            if not isinstance(value, str) or not value.strip():
                raise DatasetError(f"{path}: row {number}: field {field!r} must be a non-empty string, got {value!r}")
            values[field] = value.strip()
        solution = values["solution"]
        if not _BOXED.search(solution):
            solution = f"{solution}\n\\boxed{{{values['answer']}}}"
        difficulty = row.get(difficulty_field, "unknown")
        problems.append(Problem(values["problem"], solution, values["answer"], str(difficulty)))
        numbers.append(number)
    if not problems:
        raise DatasetError(f"{path}: no rows")
    return Dataset(str(path), tuple(problems), tuple(numbers))


def load_dataset(path: str | pathlib.Path, difficulty_field: str = "difficulty") -> tuple[Problem, ...]:
    """The problems of :func:`read_dataset`."""
    return read_dataset(path, difficulty_field).problems


class ScreenedRows(NamedTuple):
    """What :func:`screen_rows` kept and the rows it skipped."""

    problems: tuple[Problem, ...]
    skipped_rows: tuple[int, ...]


def screen_rows(dataset: Dataset, row_issue: Callable[[Problem], str], skip: bool = False) -> ScreenedRows:
    """Check every problem with ``row_issue`` (the reason a row cannot be used, '' when it can; the
    caller knows the tokenizer and the model). A bad row raises :class:`DatasetError` naming the
    file, the row and the reason, unless ``skip``: then bad rows are left out and listed."""
    kept, skipped = [], []
    for problem, number in zip(dataset.problems, dataset.rows):
        issue = row_issue(problem)
        if not issue:
            kept.append(problem)
        elif skip:
            skipped.append(number)
        else:
            raise DatasetError(f"{dataset.path}: row {number}: {issue}; fix the row, or set skip_bad_rows=True to "
                               "leave such rows out")
    if not kept:
        raise DatasetError(f"{dataset.path}: every one of its {len(skipped)} rows was skipped as unusable")
    return ScreenedRows(tuple(kept), tuple(skipped))


def split_dataset(problems: Sequence[Problem], probe_size: int, test_size: int, seed: int) -> Splits:
    """Disjoint splits of a loaded dataset (by problem text), shuffled by ``seed``."""
    unique: dict[str, Problem] = {}
    for p in problems:
        unique.setdefault(p.problem, p)
    items = list(unique.values())
    order = np.random.default_rng(seed).permutation(len(items))
    items = [items[i] for i in order]
    if probe_size + test_size >= len(items):
        raise ConfigError("probe_size + test_size", f"less than the {len(items)} distinct problems", probe_size + test_size)
    test, probe, train = items[:test_size], items[test_size:test_size + probe_size], items[test_size + probe_size:]
    return Splits(tuple(train), tuple(probe), tuple(test))


def difficulty_levels(problems: Sequence[Problem]) -> tuple[str, ...]:
    """Levels present in ``problems``, in order of first appearance."""
    return tuple(dict.fromkeys(p.difficulty for p in problems))

