"""Our calls into torch and transformers raise no deprecation warnings (they are errors here)."""

from __future__ import annotations

import warnings

import torch

from distill_backend.losses import LossConfig
from distill_backend.models import TinyModelConfig, init_tiny_qwen3
from distill_backend.opsd_step import StepBatch, opsd_step, teacher_of
from distill_backend.rollout import (
    completion_logprobs,
    encode_prompts,
    sample_completions,
)
from distill_backend.tokenizer import build_char_tokenizer


def test_decode_score_and_update_under_warnings_as_errors():
    tokenizer = build_char_tokenizer()
    sizes = TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64)
    student = init_tiny_qwen3(sizes, tokenizer, seed=0)
    teacher = init_tiny_qwen3(sizes, tokenizer, seed=1).eval()
    cpu = torch.device("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        prompts = encode_prompts(tokenizer, ["Q:1+2\nA:\n", "Q:3-4+5\nA:\n"], cpu)
        rollouts = sample_completions(student, prompts, max_new_tokens=8, eos_id=tokenizer.eos_token_id,
                                      pad_id=tokenizer.pad_token_id, top_k=10, generator=torch.Generator().manual_seed(0),
                                      repeats=2)
        ids, mask = rollouts.completion_ids, rollouts.completion_mask
        scores = completion_logprobs(teacher, prompts, ids, mask, repeats=2)
        batch = StepBatch(prompts, prompts, ids, mask, mask, None, 2)
        optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3)
        step = opsd_step(student, teacher_of(teacher), batch, LossConfig(kind="reverse_kl"), optimizer=optimizer)
    assert step.grad_norm > 0 and not step.reason and bool((scores.logprobs[mask] < 0).all())


def test_backend_window_under_warnings_as_errors(backend):
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        backend.reset(seed=0)
        result = backend.run_window(0.5, 1)
    assert result.stats.updates_done == 1
