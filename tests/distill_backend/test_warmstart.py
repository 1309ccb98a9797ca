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


def test_default_recipe_trains_the_teacher_on_every_exposure_including_full_reveal():
    """k is uniform on 0..m: every exposure the backend can request is in the warm start's data."""
    import numpy as np

    from distill_backend.task import make_problem
    from distill_backend.tokenizer import build_char_tokenizer

    assert ws.WarmStartConfig().teacher_reveal == "segments"
    tokenizer = build_char_tokenizer()
    config = dataclasses.replace(ws.WarmStartConfig(), teacher_fraction=1.0, drill_fraction=0.0)
    problem = make_problem([1, 2, 3, 4], ["+", "+", "-"], 10, "hard")  # m = 3 segments
    rng = np.random.default_rng(0)
    counts = np.zeros(4)
    for _ in range(800):
        prompt = tokenizer.decode(ws._sft_example(problem, rng, config, tokenizer)[0])
        counts[sum(line in prompt for line in ("1+2=3", "3+3=6", "6-4=2"))] += 1
    assert counts.min() > 800 / 4 * 0.75  # each k in 0..3 about equally often, full reveal included


def _candidate(step, student, teacher_min):
    return ws._Candidate(step, student, teacher_min, {})


def test_selection_prefers_a_qualified_teacher_then_the_window_then_the_target():
    config = ws.WarmStartConfig(target_accuracy=0.4, accuracy_window=(0.25, 0.6), teacher_min_accuracy=0.95)
    outside = _candidate(1, 0.1, -1.0)
    weak_teacher = _candidate(2, 0.4, 0.80)
    weaker_teacher = _candidate(3, 0.4, 0.70)
    qualified_far = _candidate(4, 0.58, 0.97)
    qualified_near = _candidate(5, 0.42, 0.96)
    assert ws._better(weak_teacher, outside, config) and not ws._better(outside, weak_teacher, config)
    assert ws._better(weak_teacher, weaker_teacher, config)
    assert ws._better(qualified_far, weak_teacher, config)
    assert ws._better(qualified_near, qualified_far, config) and not ws._better(qualified_far, qualified_near, config)
    assert ws._better(_candidate(6, 0.3, -1.0), outside, config)  # closer to the target when nothing qualifies


def test_report_records_teacher_checks_and_prints(tmp_path):
    path = ws.ensure_warmstart(MICRO, tmp_path)
    report = ws.load_report(path)
    assert set(report.teacher_ref_nll) == set(report.teacher_accuracy) == {"0", "0.25", "0.5", "0.75", "1"}
    assert all(v > 0 for v in report.teacher_ref_nll.values()) and report.student_ref_nll > 0
    assert report.recipe["teacher_reveal"] == "segments" and isinstance(report.teacher_ok, bool)
    text = ws.format_report(report)
    assert "alpha    1" in text and report.cache_key in text and "teacher >= 0.95" in text


def test_atesd_warmstart_builds_then_inspects(tiny_cache, capsys):
    import json

    from agents.cli import main
    from tests.distill_backend.conftest import TINY_KWARGS

    kwargs = json.dumps({"warmstart": {**TINY_KWARGS["warmstart"], "seed": 3}})
    assert main(["warmstart", "--env-kwargs", kwargs, "--inspect"]) == 2
    assert "--inspect" in capsys.readouterr().err
    assert main(["warmstart", "--env-kwargs", kwargs]) == 0
    built = capsys.readouterr().out
    assert "selected SFT step" in built and "checkpoint: " + str(tiny_cache) in built
    assert main(["warmstart", "--env-kwargs", kwargs, "--inspect"]) == 0
    assert capsys.readouterr().out == built  # the cached report, unchanged
