"""Synthetic task: determinism, disjoint splits, correct arithmetic; the local dataset loader."""

from __future__ import annotations

import json

import pytest

from distill_backend.task import Problem, TaskConfig, load_dataset, make_problem, make_splits, split_dataset
from exposure_env.errors import ConfigError, DatasetError

SMALL = TaskConfig(train_size=500, probe_size=50, test_size=80, seed=3)


def test_splits_are_deterministic_and_seed_dependent():
    assert make_splits(SMALL) == make_splits(SMALL)
    other = make_splits(TaskConfig(train_size=500, probe_size=50, test_size=80, seed=4))
    assert other.test != make_splits(SMALL).test


def test_splits_are_disjoint_and_sized():
    splits = make_splits(SMALL)
    train, probe, test = ({p.problem for p in s} for s in splits)
    assert not train & probe and not train & test and not probe & test
    assert (len(splits.train), len(splits.probe), len(splits.test)) == (500, 50, 80)
    assert len(test) == 80 and len(probe) == 50  # held-out splits have no duplicates


def test_every_level_appears_and_matches_its_step_count():
    splits = make_splits(SMALL)
    steps = dict(zip(SMALL.levels, SMALL.num_steps))
    assert {p.difficulty for p in splits.test} == set(SMALL.levels)
    for p in splits.train[:200]:
        assert len(p.solution.split("\n")) == steps[p.difficulty] + 1


def test_solutions_are_correct_step_by_step():
    for p in make_splits(SMALL).test:
        value = None
        for line in p.solution.split("\n")[:-1]:
            lhs, rhs = line.split("=")
            assert int(rhs) == eval(lhs) % 10  # noqa: S307 - digits and +/- only
            assert value is None or lhs.startswith(str(value))
            value = int(rhs)
        assert p.solution.split("\n")[-1] == f"\\boxed{{{p.answer}}}" and int(p.answer) == value
        assert int(p.answer) == eval(p.problem) % 10  # noqa: S307


def test_make_problem_wraps_negative_results():
    p = make_problem([2, 5], ["-"], 10, "easy")
    assert p == Problem("2-5", "2-5=7\n\\boxed{7}", "7", "easy")


@pytest.mark.parametrize("bad", [dict(num_steps=(2, 4)), dict(modulus=11), dict(level_weights=(0.0, 0.0, 0.0)),
                                 dict(train_size=0)])
def test_bad_task_config_raises(bad):
    with pytest.raises(ConfigError):
        TaskConfig(**bad)


def _write_jsonl(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_load_jsonl_accepts_good_rows_and_appends_missing_boxed(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", [
        {"problem": "1+1", "solution": "1+1=2\n\\boxed{2}", "answer": "2", "difficulty": "easy"},
        {"problem": "2+2", "solution": "2+2=4", "answer": 4},
    ])
    rows = load_dataset(path)
    assert rows[0] == Problem("1+1", "1+1=2\n\\boxed{2}", "2", "easy")
    assert rows[1].solution.endswith("\\boxed{4}") and rows[1].answer == "4"


@pytest.mark.parametrize("row, needle", [
    ({"problem": "1+1", "answer": "2"}, "missing field 'solution'"),
    ({"problem": "", "solution": "x", "answer": "2"}, "field 'problem'"),
    ({"problem": "1+1", "solution": "x", "answer": None}, "field 'answer'"),
    ("[1, 2]", "expected an object"),
    ("{not json", "not valid JSON"),
])
def test_malformed_rows_name_file_row_and_field(tmp_path, row, needle):
    good = {"problem": "1+1", "solution": "1+1=2\n\\boxed{2}", "answer": "2"}
    path = _write_jsonl(tmp_path / "bad.jsonl", [good, row])
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    assert "bad.jsonl" in str(info.value) and "row 2" in str(info.value) and needle in str(info.value)


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "nope.jsonl")
    (tmp_path / "d.csv").write_text("problem,solution,answer\n")
    with pytest.raises(DatasetError, match="unsupported"):
        load_dataset(tmp_path / "d.csv")


def test_parquet_round_trip_and_disjoint_dataset_split(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    problems = make_splits(SMALL).test
    table = pa.Table.from_pylist([p._asdict() for p in problems])
    pq.write_table(table, tmp_path / "d.parquet")
    loaded = load_dataset(tmp_path / "d.parquet")
    assert loaded == problems
    splits = split_dataset(loaded, probe_size=10, test_size=20, seed=0)
    sets = [{p.problem for p in s} for s in splits]
    assert sum(len(s) for s in sets) == len(problems) and not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    with pytest.raises(ConfigError):
        split_dataset(loaded, probe_size=50, test_size=50, seed=0)
