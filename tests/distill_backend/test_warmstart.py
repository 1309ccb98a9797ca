"""Warm-start recipe: cache key, caching, atomic writes, deterministic rebuilds, tokenizer round trip."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from distill_backend import warmstart as ws
from distill_backend.models import TinyModelConfig
from distill_backend.task import TaskConfig
from exposure_env.errors import ConfigError

MICRO = ws.WarmStartConfig(
    task=TaskConfig(levels=("easy",), num_steps=(1,), level_weights=(1.0,), train_size=100, probe_size=10, test_size=10),
    model=TinyModelConfig(hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=32),
    batch_size=8, max_steps=6, eval_every=3, eval_size=5, drill_steps=2, drill_batch_size=8,
)


def test_cache_key_depends_on_every_recipe_field():
    assert MICRO.cache_key() == dataclasses.replace(MICRO).cache_key()
    assert MICRO.cache_key() != dataclasses.replace(MICRO, lr=1e-3).cache_key()
    assert MICRO.cache_key() != dataclasses.replace(MICRO, task=dataclasses.replace(MICRO.task, seed=1)).cache_key()


def test_bad_recipe_values_raise():
    with pytest.raises(ConfigError, match="accuracy_window"):
        dataclasses.replace(MICRO, target_accuracy=0.9, accuracy_window=(0.2, 0.5))
    with pytest.raises(ConfigError, match="eval_size"):
        dataclasses.replace(MICRO, eval_size=11)


def test_build_is_cached_atomic_and_deterministic(tmp_path, monkeypatch):
    path = ws.ensure_warmstart(MICRO, tmp_path)
    assert path == ws.warmstart_dir(MICRO, tmp_path) and [p.name for p in tmp_path.iterdir()] == [path.name]
    report = ws.load_report(path)
    assert report.cache_key == MICRO.cache_key() and set(report.teacher_accuracy) == {"0", "0.25", "0.5", "0.75", "1"}
    assert [h[0] for h in report.history] == [3, 6] and report.selected_step in (3, 6)

    def no_rebuild(*_args, **_kwargs):
        raise AssertionError("a cached warm start must not be rebuilt")

    monkeypatch.setattr(ws, "build_warmstart", no_rebuild)
    assert ws.ensure_warmstart(MICRO, tmp_path) == path
    monkeypatch.undo()

    again = ws.build_warmstart(MICRO, tmp_path / "again")
    assert again.history == report.history and again.selected_step == report.selected_step
    from safetensors.torch import load_file

    first, second = load_file(path / "model.safetensors"), load_file(tmp_path / "again" / "model.safetensors")
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_tokenizer_is_saved_with_the_model(tmp_path):
    from transformers import AutoTokenizer

    path = ws.ensure_warmstart(MICRO, tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    text = "Q:1+2\nA:\n1+2=3\n\\boxed{3}"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    assert tokenizer.padding_side == "left" and tokenizer.eos_token == "<eos>" and tokenizer.pad_token == "<pad>"


@pytest.mark.parametrize("mode, full_reveal_expected", [("ratio", False), ("segments", True)])
def test_teacher_reveal_modes(mode, full_reveal_expected):
    import numpy as np

    from distill_backend.task import make_problem
    from distill_backend.tokenizer import build_char_tokenizer

    tokenizer = build_char_tokenizer()
    config = dataclasses.replace(MICRO, teacher_fraction=1.0, teacher_reveal=mode)
    problem = make_problem([1, 2, 3], ["+", "+"], 10, "easy")
    rng = np.random.default_rng(0)
    prompts = {tokenizer.decode(ws._sft_example(problem, rng, config, tokenizer)[0]) for _ in range(200)}
    revealed = {sum(line in p for line in ("1+2=3", "3+3=6")) for p in prompts}
    assert revealed == ({0, 1, 2} if full_reveal_expected else {0, 1})
    with pytest.raises(ConfigError, match="teacher_reveal"):
        dataclasses.replace(MICRO, teacher_reveal="all")
