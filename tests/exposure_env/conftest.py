"""Env ids for tests that apply to every registered env, with the kwargs that make each one cheap.

``ATESD-Qwen3-v0`` runs with the tiny model of ``tests/distill_backend/conftest.py`` (the same
kwargs, imported from there), its warm start built once per test session in a temporary cache; it is
skipped when torch or transformers are not installed.
"""

from __future__ import annotations

import os

import pytest

import exposure_env


@pytest.fixture(scope="session")
def _tiny_qwen3_kwargs(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests.distill_backend.conftest import TINY_KWARGS

    previous = os.environ.get("ATESD_CACHE_DIR")
    os.environ["ATESD_CACHE_DIR"] = str(tmp_path_factory.mktemp("atesd_cache"))
    yield dict(TINY_KWARGS)
    if previous is None:
        os.environ.pop("ATESD_CACHE_DIR", None)
    else:
        os.environ["ATESD_CACHE_DIR"] = previous


@pytest.fixture(params=exposure_env.REGISTERED_IDS)
def env_id_and_kwargs(request):
    """``(env_id, kwargs)`` for every registered id: a short episode (12 updates, windows of 4)."""
    short = {"total_updates": 12, "hold_window": 4}
    if request.param == exposure_env.QWEN3_ID:
        import torch

        torch.set_num_threads(1)
        return request.param, {**request.getfixturevalue("_tiny_qwen3_kwargs"), **short}
    return request.param, short
