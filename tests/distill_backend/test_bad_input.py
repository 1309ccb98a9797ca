"""Bad input and silent failures of the real backend, made loud: dataset rows the tokenizer or the
model's context cannot take (named by row, or skipped on request), configs that cannot train,
training that stopped learning, corrupt model directories and a corrupt cached warm start.
Every error names the field or path."""

from __future__ import annotations

import json
import logging
import shutil

import gymnasium as gym
import numpy as np
import pytest

from distill_backend.config import backend_config_from_kwargs
from distill_backend.task import TaskConfig, make_splits
from exposure_env.errors import ConfigError, DatasetError
from tests.distill_backend.conftest import TINY_KWARGS, TINY_TASK


def _rows(count=100):
    splits = make_splits(TaskConfig(**TINY_TASK))
    problems = list(dict.fromkeys(splits.test + splits.probe + splits.train))[:count]
    return [{"problem": p.problem, "solution": p.solution, "answer": p.answer} for p in problems]


def _write(path, rows, blank_after=1):
    """JSONL with a blank line after row ``blank_after`` (rows are named by their line)."""
    lines = [json.dumps(r) for r in rows]
    lines.insert(blank_after, "")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _backend(**kwargs):
    from distill_backend.backend import Qwen3DistillBackend

    return Qwen3DistillBackend(backend_config_from_kwargs({**TINY_KWARGS, **kwargs}))


def _bad_dataset(tmp_path):
    rows = _rows()
    rows[1]["solution"] = rows[1]["solution"].replace("=", "×", 1)  # line 3 (after the blank line 2)
    rows[3]["problem"] = "+".join(["1"] * 100)  # line 5: longer than the tiny model's 128 positions
    return _write(tmp_path / "data.jsonl", rows)


@pytest.mark.parametrize("case, edit, texts", [
    ("unknown-character", lambda rows: rows[1].update(solution=rows[1]["solution"].replace("=", "×", 1)),
     ["row 3", "'solution'", "×", "<unk>", "skip_bad_rows"]),
    ("longer-than-context", lambda rows: rows[3].update(problem="+".join(["1"] * 100)),
     ["row 5", "context of 128", "max_position_embeddings"]),
])
def test_dataset_rows_the_model_cannot_take_are_named(case, edit, texts, tiny_checkpoint, tmp_path):
    rows = _rows()
    edit(rows)
    path = _write(tmp_path / "data.jsonl", rows)
    with pytest.raises(DatasetError) as excinfo:
        _backend(dataset_path=str(path))
    assert str(path) in str(excinfo.value)
    assert all(text in str(excinfo.value) for text in texts), str(excinfo.value)


def test_skip_bad_rows_leaves_them_out_and_says_how_many(tiny_checkpoint, tmp_path, caplog):
    path = _bad_dataset(tmp_path)
    with caplog.at_level(logging.WARNING, logger="distill_backend.backend"):
        backend = _backend(dataset_path=str(path), skip_bad_rows=True)
    assert backend.skipped_rows == (3, 5)
    assert "skipped 2 of 100 rows" in caplog.text and "rows 3, 5" in caplog.text
    kept = {p.problem for split in backend.splits for p in split}
    assert "+".join(["1"] * 100) not in kept and len(kept) == 98
    backend.close()


@pytest.mark.parametrize("case, content, texts", [
    ("not-utf8", b'{"problem": "1+1", "solution": "2", "answer": "2"}\n\xff\xfe\n', ["row 2", "UTF-8"]),
    ("missing", None, ["not found", "dataset_path"]),
])
def test_unreadable_dataset_files_name_the_file(case, content, texts, tmp_path):
    from distill_backend.task import read_dataset

    path = tmp_path / "data.jsonl"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DatasetError) as excinfo:
        read_dataset(path)
    assert str(path) in str(excinfo.value) and all(t in str(excinfo.value) for t in texts)


def test_a_corrupt_parquet_file_is_a_dataset_error(tmp_path):
    pytest.importorskip("pyarrow")
    from distill_backend.task import read_dataset

    path = tmp_path / "data.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DatasetError, match="not a readable Parquet file") as excinfo:
        read_dataset(path)
    assert str(path) in str(excinfo.value)


@pytest.mark.parametrize("field, value, text", [
    ("lora_alpha", 0.0, "(0, inf]"), ("lora_alpha", -16.0, "(0, inf]"),
    ("max_weight_growth", 0.5, "above 1"), ("stall_patience", 2.5, "integer"),
    ("uniform_confidence", -1.0, "[0, inf]"), ("vanishing_grad_norm", float("nan"), "[0, inf]"),
])
def test_configs_that_cannot_train_or_check_are_refused(field, value, text):
    with pytest.raises(ConfigError) as excinfo:
        backend_config_from_kwargs({**TINY_KWARGS, "lora_rank": 4, field: value})
    assert field in str(excinfo.value) and text in str(excinfo.value)


def test_cuda_without_cuda_is_refused_before_any_work():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="device") as excinfo:
        gym.make("ATESD-Qwen3-v0", **{**TINY_KWARGS, "device": "cuda"})
    assert "'cuda'" in str(excinfo.value)


# -- training that stopped learning ends the episode, with a reason ---------------------------------
def test_the_checks_never_fire_on_a_healthy_tiny_run(tiny_checkpoint):
    backend = _backend()
    backend.reset(seed=0)
    for alpha in (0.0, 0.5, 1.0, 0.25):
        result = backend.run_window(alpha, 4)
        assert not result.diverged, result.divergence_reason
    # the checks ran: the weights moved and the student is far from uniform
    assert backend._stall_count == 0 and backend._uniform_count == 0
    assert backend._weights.norm != backend._initial_norm
    backend.close()


@pytest.mark.parametrize("case, kwargs, reason", [
    ("runaway-weights", {"lr": 1e4}, "runaway weights"),
    ("stalled", {"lr": 1e-30, "stall_patience": 2}, "stalled: 2 optimizer steps"),
    ("near-uniform", {"lr": 1e4, "max_weight_growth": 0.0, "collapse_patience": 2}, "near-uniform student"),
])
def test_training_that_stopped_learning_diverges_with_a_reason(case, kwargs, reason, tiny_checkpoint):
    env = gym.make("ATESD-Qwen3-v0", **{**TINY_KWARGS, **kwargs, "total_updates": 12, "hold_window": 4})
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(np.array([0.5], dtype=np.float32))
    assert terminated and info["diverged"] and reason in info["divergence_reason"], info["divergence_reason"]
    assert reward == -env.unwrapped.config.divergence_penalty
    env.close()


# -- files the backend loads ------------------------------------------------------------------------
def test_a_corrupt_model_directory_names_the_path(tiny_checkpoint, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, model)
    (model / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="model") as excinfo:
        _backend(model=str(model))
    assert str(model) in str(excinfo.value) and "loading it failed" in str(excinfo.value)


def test_a_corrupt_cached_warm_start_is_rebuilt(tiny_config, tiny_checkpoint, tmp_path, caplog):
    from distill_backend.warmstart import cache_problem, ensure_warmstart, warmstart_dir

    recipe = tiny_config.warmstart
    cached = warmstart_dir(recipe, tmp_path)
    shutil.copytree(tiny_checkpoint, cached)
    weights = cached / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10:] = b"\x00" * 10  # a few flipped bytes: the file still parses
    weights.write_bytes(bytes(data))
    assert "model.safetensors" in cache_problem(cached)
    with caplog.at_level(logging.WARNING, logger="distill_backend.warmstart"):
        path = ensure_warmstart(recipe, tmp_path)
    assert path == cached and cache_problem(path) == "" and "rebuilding" in caplog.text
    assert weights.read_bytes() == (tiny_checkpoint / "model.safetensors").read_bytes()  # deterministic build


def test_a_cache_without_checksums_is_still_checked(tiny_checkpoint, tmp_path):
    from distill_backend.warmstart import CHECKSUM_FILE, cache_problem

    cached = tmp_path / "old"
    shutil.copytree(tiny_checkpoint, cached)
    (cached / CHECKSUM_FILE).unlink()
    assert cache_problem(cached) == ""
    weights = cached / "model.safetensors"
    intact = weights.read_bytes()
    weights.write_bytes(intact[:-100])  # truncated: the weights no longer read back
    assert cache_problem(cached) != ""
    weights.write_bytes(intact)
    (cached / "config.json").write_text("{")
    assert cache_problem(cached) != ""


def test_cli_reports_a_missing_dataset_in_one_line(tiny_checkpoint, tmp_path, capsys):
    from agents.cli import main

    missing = tmp_path / "nope.jsonl"
    kwargs = {**TINY_KWARGS, "total_updates": 2, "hold_window": 2, "dataset_path": str(missing)}
    code = main(["run", "--env", "ATESD-Qwen3-v0", "--env-kwargs", json.dumps(kwargs), "--out", str(tmp_path / "o"),
                 "--no-progress", "--no-plot"])
    last = capsys.readouterr().err.strip().splitlines()[-1]  # (transformers prints its loading bar before)
    assert code == 2 and last.startswith("atesd run: error: ") and str(missing) in last
