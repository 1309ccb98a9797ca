"""Shared fixtures: a tiny task, a tiny warm start built once per session in a temporary cache."""

from __future__ import annotations

import os

import pytest

# Kwargs of a backend small enough for unit tests (hidden 32, 1 layer, a 1-2 step task).
TINY_TASK = dict(levels=["easy", "hard"], num_steps=[1, 2], level_weights=[1.0, 1.0],
                 train_size=400, probe_size=40, test_size=40, seed=0)
TINY_SIZES = dict(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64, max_positions=128)
TINY_KWARGS = dict(
    warmstart=dict(task=TINY_TASK, model=TINY_SIZES, max_steps=10, eval_every=10, eval_size=10, drill_steps=5,
                   drill_batch_size=16,
                   batch_size=16, target_accuracy=0.4),
    questions_per_update=3, rollouts_per_question=2, max_new_tokens=24, eval_size=8, eval_k=2,
    probe_batch=6, lr=1e-2, device="cpu", dtype="float32",
)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One intra-op thread per test module: the CI box has 2 shared cores, and two threads fighting
    other processes were measured several times slower than one. Restored after the module."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """A private ATESD_CACHE_DIR for the session (the tiny warm start is built there once)."""
    path = tmp_path_factory.mktemp("atesd_cache")
    previous = os.environ.get("ATESD_CACHE_DIR")
    os.environ["ATESD_CACHE_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("ATESD_CACHE_DIR", None)
    else:
        os.environ["ATESD_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def tiny_config(tiny_cache):
    from distill_backend.config import backend_config_from_kwargs

    return backend_config_from_kwargs(TINY_KWARGS)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_config):
    from distill_backend.warmstart import ensure_warmstart

    return ensure_warmstart(tiny_config.warmstart)


@pytest.fixture()
def backend(tiny_config, tiny_checkpoint):
    from distill_backend.backend import Qwen3DistillBackend

    b = Qwen3DistillBackend(tiny_config)
    yield b
    b.close()
