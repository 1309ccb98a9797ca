"""Bad input and faults a user can cause end in one of the project's errors, whose message names the
field or path; the ``atesd`` command turns each into one line and exit code 2.

The real backend's cases (datasets, failure detection, the warm-start cache, model directories) are
in ``tests/distill_backend/test_bad_input.py``; run directories and resume in
``tests/agents/test_resume.py``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import pickle

import gymnasium as gym
import numpy as np
import pytest

from agents.checkpoint import write_checkpoint
from agents.cli import build_parser, main, user_error_message
from agents.runner import RunConfig, run_controlled
from benchmarks.config_page import CONFIG_CLASSES
from exposure_env.commandline import dataclass_from_namespace
from exposure_env.errors import CheckpointError, ConfigError, OutputPathError, _integer_fields
from tests.agents.test_checkpoint import _RunsCode

TINY = {"total_updates": 16, "hold_window": 4}


# -- integer fields --------------------------------------------------------------------------------
def _config_classes(check: str):
    for _, dotted, _ in CONFIG_CLASSES:
        module, _, name = dotted.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        for field, is_tuple in _integer_fields(cls):
            yield pytest.param(cls, field, is_tuple, id=f"{name}.{field}")


def _whole_float(cls, field, is_tuple):
    default = {f.name: f for f in dataclasses.fields(cls)}[field]
    value = default.default if default.default is not dataclasses.MISSING else default.default_factory()
    if is_tuple:
        return tuple(float(v) for v in value)
    return 3.0 if value is None else float(value)


@pytest.mark.parametrize("cls, field, is_tuple", list(_config_classes("store")))
def test_integer_fields_store_whole_floats_as_int(cls, field, is_tuple):
    value = _whole_float(cls, field, is_tuple)
    stored = getattr(cls(**{field: value}), field)
    assert stored == value
    assert all(type(v) is int for v in stored) if is_tuple else type(stored) is int


@pytest.mark.parametrize("cls, field, is_tuple", list(_config_classes("reject")))
def test_integer_fields_reject_fractions_naming_the_value(cls, field, is_tuple):
    value = _whole_float(cls, field, is_tuple)
    bad = (value[0] + 0.5, *value[1:]) if is_tuple else value + 0.5
    with pytest.raises(ConfigError, match="integer") as excinfo:
        cls(**{field: bad})
    assert repr(bad[0] if is_tuple else bad) in str(excinfo.value)


def test_a_whole_float_budget_runs_a_full_episode():
    """``total_updates: 10.0`` from JSON crashed inside numpy in the last window before."""
    env = gym.make("ATESD-Surrogate-v0", total_updates=10.0, hold_window=4.0)
    env.reset(seed=0)
    steps, terminated = 0, False
    while not terminated:
        _, _, terminated, _, info = env.step(np.array([0.5], dtype=np.float32))
        steps += 1
    assert steps == 3 and info["updates_done"] == 10


# -- atesd run: errors before or instead of any work -------------------------------------------------
def _files(tmp_path):
    """Input files the cases point at."""
    marker = tmp_path / "code-ran"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"policy": _RunsCode(marker)}))
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00\x01not a checkpoint" * 10)
    write_checkpoint(tmp_path / "a-run.safetensors", "run", {"x": 1})
    (tmp_path / "a-file").write_text("")
    return marker


# (id, extra argv, error class, texts the message must contain: {tmp} is the test's directory)
RUN_CASES = [
    ("unknown-env-id", ["--env", "ATESD-Nope-v0"], ConfigError, ["env_id", "ATESD-Nope-v0"]),
    ("load-missing-file", ["--load", "{tmp}/missing.safetensors"], CheckpointError, ["{tmp}/missing.safetensors"]),
    ("load-a-pickle", ["--load", "{tmp}/evil.pkl"], CheckpointError, ["{tmp}/evil.pkl", "pickle"]),
    ("load-garbage", ["--load", "{tmp}/garbage.safetensors"], CheckpointError, ["{tmp}/garbage.safetensors"]),
    ("load-a-run-checkpoint", ["--load", "{tmp}/a-run.safetensors"], CheckpointError,
     ["{tmp}/a-run.safetensors", "'run'"]),
    ("load-on-a-baseline", ["--agent", "fixed:0.5", "--load", "{tmp}/a-run.safetensors"], ConfigError,
     ["--load", "fixed:0.5"]),
    ("save-on-a-baseline", ["--agent", "random", "--save", "{tmp}/p.safetensors"], ConfigError, ["--save", "random"]),
    ("save-to-a-directory", ["--save", "{tmp}"], OutputPathError, ["--save", "{tmp}"]),
    ("save-under-a-file", ["--save", "{tmp}/a-file/p.safetensors"], OutputPathError, ["--save", "{tmp}/a-file"]),
    ("out-under-a-file", ["--out", "{tmp}/a-file/runs"], OutputPathError, ["--out", "{tmp}/a-file/runs"]),
    ("resume-and-overwrite", ["--resume", "--overwrite"], ConfigError, ["resume/overwrite"]),
    ("fractional-budget", ["--env-kwargs", '{"total_updates": 10.5}'], ConfigError, ["total_updates", "10.5"]),
    ("unknown-env-kwarg", ["--env-kwargs", '{"totl_updates": 10}'], ConfigError, ["totl_updates"]),
    ("bad-agent-spec", ["--agent", "fixed:1.7"], ConfigError, ["fixed:1.7", "[0, 1]"]),
    ("missing-sweep-file", ["--agent", "best-fixed:{tmp}/sweep.json"], ConfigError, ["{tmp}/sweep.json"]),
    ("checkpoint-every-fraction", ["--env-kwargs", json.dumps(TINY), "--checkpoint-every", "-1"], ConfigError,
     ["checkpoint_every"]),
]


def _argv(tmp_path, extra):
    base = ["run", "--agent", "beta", "--out", str(tmp_path / "out"), "--no-progress", "--no-plot",
            "--env-kwargs", json.dumps(TINY)]
    return [*base, *(a.replace("{tmp}", str(tmp_path)) for a in extra)]


@pytest.mark.parametrize("case, extra, error, texts", RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_run_errors_name_the_field_or_path(case, extra, error, texts, tmp_path, capsys):
    marker = _files(tmp_path)
    argv = _argv(tmp_path, extra)
    texts = [t.replace("{tmp}", str(tmp_path)) for t in texts]
    with pytest.raises(error) as excinfo:
        config = dataclass_from_namespace(RunConfig, build_parser().parse_args(argv))
        run_controlled(config)
    for text in texts:
        assert text in str(excinfo.value), (text, str(excinfo.value))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("atesd run: error: ")
    assert all(text in err for text in texts), err
    assert not marker.exists()
    assert not (tmp_path / "out" / "beta_seed0").exists()  # nothing was published


def test_cuda_without_cuda_names_the_device_field():
    import torch

    from agents.registry import make_controller

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="device") as excinfo:
        make_controller("beta", device="cuda")
    assert "'cuda'" in str(excinfo.value) and "no CUDA" in str(excinfo.value)


@pytest.mark.parametrize("error, texts", [
    (PermissionError(13, "Permission denied", "/data/runs/x"), ["/data/runs/x", "Permission denied", "permissions"]),
    (FileNotFoundError(2, "No such file or directory", "/nope.json"), ["/nope.json", "No such file"]),
    (gym.error.NameNotFound("Environment `X` doesn't exist."), ["X", "--env"]),
    (CheckpointError("/c.safetensors: corrupt\ncheckpoint"), ["/c.safetensors: corrupt checkpoint"]),
])
def test_dependency_errors_become_one_line(error, texts):
    message = user_error_message(error)
    assert message is not None and "\n" not in message
    assert all(text in message for text in texts)


def test_a_bug_is_not_hidden_at_the_boundary():
    assert user_error_message(ZeroDivisionError("a bug")) is None
