"""Tiny random-init Qwen3 models (hidden 32, 1 layer) for mechanism tests of the MOTAB pipeline, and
the tiny warm-start fixtures of tests/distill_backend for the tests that need a trained checkpoint
(the backend's ``rollout="motab"``, the pair, the benchmark)."""

import pytest
import torch

# The backend fixtures (a tiny warm start built once per session in a private cache; one torch
# thread per module) are shared with tests/distill_backend.
from tests.distill_backend.conftest import _one_torch_thread, tiny_cache, tiny_checkpoint, tiny_config  # noqa: F401


@pytest.fixture(scope="session")
def tiny():
    from distill_backend.models import TinyModelConfig, init_tiny_qwen3
    from distill_backend.motab.pipeline import TokenizerInfo
    from distill_backend.tokenizer import build_char_tokenizer

    tokenizer = build_char_tokenizer()
    sizes = TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64)
    student = init_tiny_qwen3(sizes, tokenizer, seed=1).eval()
    teacher = init_tiny_qwen3(sizes, tokenizer, seed=2).eval()
    tok = TokenizerInfo.of(tokenizer)
    prompts = [tok.encode(f"Q:{p}\nA:\n") for p in ("1+2", "3-4+5", "7+7-1+2", "0-9")]
    return tok, student, teacher, prompts


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
