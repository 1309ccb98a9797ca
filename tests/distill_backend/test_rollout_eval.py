"""Sampling with the KV cache, completion scoring alignment, answer extraction and metrics."""

from __future__ import annotations

import pytest
import torch

from distill_backend.evaluation import (
    EvalConfig,
    evaluate_prompts,
    extract_boxed_answer,
    is_correct,
)
from distill_backend.models import TinyModelConfig, init_tiny_qwen3
from distill_backend.rollout import (
    PromptBatch,
    TextStop,
    completion_hidden,
    completion_logprobs,
    encode_prompts,
    output_head,
    sample_completions,
    sample_next,
)
from distill_backend.task import Problem
from distill_backend.tokenizer import build_char_tokenizer
from exposure_env.errors import ConfigError

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny():
    tokenizer = build_char_tokenizer()
    sizes = TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64)
    return tokenizer, init_tiny_qwen3(sizes, tokenizer, seed=0).eval()


@pytest.mark.parametrize("text, expected", [
    ("1+2=3\n\\boxed{3}", "3"),
    ("\\boxed{1} then \\boxed{ 7 }", "7"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("no answer", None),
    ("\\boxed{4} and \\boxed{5", "4"),  # unterminated last box: fall back to the earlier one
    ("\\boxed{}", ""),
])
def test_extract_boxed_answer(text, expected):
    assert extract_boxed_answer(text) == expected


def test_is_correct_compares_the_last_box():
    assert is_correct("\\boxed{2}\n\\boxed{3}", "3") and not is_correct("\\boxed{3}\n\\boxed{2}", "3")
    assert not is_correct("3", "3")


def test_greedy_sampling_matches_generate(tiny):
    tokenizer, model = tiny
    prompts = encode_prompts(tokenizer, ["Q:1+2\nA:\n", "Q:1+2-3+4\nA:\n"], CPU)
    ours = sample_completions(model, prompts, max_new_tokens=8, eos_id=tokenizer.eos_token_id,
                              pad_id=tokenizer.pad_token_id, temperature=0.0)
    ref = model.generate(input_ids=prompts.ids, attention_mask=prompts.mask, max_new_tokens=8, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    ref = ref[:, prompts.ids.shape[1]:]
    width = ref.shape[1]
    assert torch.equal(ours.completion_ids[:, :width][ours.completion_mask[:, :width]],
                       ref[ours.completion_mask[:, :width]])


def test_sampling_is_reproducible_from_the_generator_and_masks_after_eos(tiny):
    tokenizer, model = tiny
    prompts = encode_prompts(tokenizer, ["Q:1+2\nA:\n"] * 16, CPU)
    kwargs = dict(max_new_tokens=12, eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id, temperature=1.5)
    a = sample_completions(model, prompts, generator=torch.Generator().manual_seed(1), **kwargs)
    b = sample_completions(model, prompts, generator=torch.Generator().manual_seed(1), **kwargs)
    c = sample_completions(model, prompts, generator=torch.Generator().manual_seed(2), **kwargs)
    assert torch.equal(a.completion_ids, b.completion_ids) and not torch.equal(a.completion_ids, c.completion_ids)
    for ids, mask, length in zip(a.completion_ids, a.completion_mask, a.lengths):
        valid = ids[mask].tolist()
        assert len(valid) == int(length) and mask[:length].all() and not mask[length:].any()
        assert tokenizer.eos_token_id not in valid[:-1]  # nothing is kept after the end of sequence
        assert (ids[~mask] == tokenizer.pad_token_id).all()


def test_completion_logprobs_match_unpadded_scoring(tiny):
    tokenizer, model = tiny
    prompts = encode_prompts(tokenizer, ["Q:1\nA:\n", "Q:1+2-3+4+5\nA:\n"], CPU)
    rollouts = sample_completions(model, prompts, max_new_tokens=6, eos_id=tokenizer.eos_token_id,
                                  pad_id=tokenizer.pad_token_id, temperature=1.0,
                                  generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        batched = completion_logprobs(model, prompts, rollouts.completion_ids, rollouts.completion_mask).logprobs
        for row in range(2):
            prompt = prompts.ids[row][prompts.mask[row].bool()]
            completion = rollouts.completion_ids[row][rollouts.completion_mask[row]]
            logits = model(torch.cat([prompt, completion])[None]).logits.log_softmax(-1)[0]
            ref = logits[len(prompt) - 1:-1].gather(-1, completion[:, None]).squeeze(-1)
            torch.testing.assert_close(batched[row, : len(completion)], ref, atol=1e-5, rtol=1e-5)
            assert (batched[row, len(completion):] == 0).all()


def test_evaluate_prompts_metrics_are_consistent(tiny):
    tokenizer, model = tiny
    problems = [Problem(f"{i}+1", f"{i}+1={(i + 1) % 10}\n\\boxed{{{(i + 1) % 10}}}", str((i + 1) % 10),
                        "easy" if i % 2 else "hard") for i in range(6)]
    prompts = [f"Q:{p.problem}\nA:\n" for p in problems]
    config = EvalConfig(k=3, max_new_tokens=6)
    result = evaluate_prompts(model, tokenizer, prompts, problems, config, torch.Generator().manual_seed(0), CPU)
    assert result.k == 3 and result.num_problems == 6 and 0 <= result.average_at_k <= result.pass_at_k <= 1
    assert set(result.per_level_average) == {"easy", "hard"}
    assert result.average_at_k == pytest.approx(sum(result.per_level_average.values()) / 2)
    greedy = evaluate_prompts(model, tokenizer, prompts, problems, config, None, CPU, greedy=True)
    assert greedy.k == 1 and greedy.average_at_k == greedy.pass_at_k


# ---------------------------------------------------------------- the one decoder


def _reference_sampling(model, prompts, steps, temperature, top_p, top_k, generator):
    """Sampling without a cache: the full forward over [prompt; tokens so far] at every step."""
    ids, mask, tokens = prompts.ids, prompts.mask, []
    with torch.no_grad():
        for _ in range(steps):
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1]
            token = sample_next(logits, temperature, top_p, top_k, generator)
            tokens.append(token)
            ids = torch.cat([ids, token[:, None]], 1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
    return torch.stack(tokens, 1)


@pytest.mark.parametrize("temperature, top_p, top_k", [(1.0, 1.0, 0), (1.3, 0.8, 0), (0.9, 1.0, 5), (0.0, 1.0, 0)])
def test_cached_decoding_equals_decoding_without_a_cache(tiny, temperature, top_p, top_k):
    tokenizer, model = tiny
    prompts = encode_prompts(tokenizer, ["Q:1+2\nA:\n", "Q:1+2-3+4\nA:\n", "Q:7\nA:\n"], CPU)
    out = sample_completions(model, prompts, max_new_tokens=10, eos_id=-1, pad_id=tokenizer.pad_token_id,
                             temperature=temperature, top_p=top_p, top_k=top_k,
                             generator=torch.Generator().manual_seed(3))
    reference = _reference_sampling(model, prompts, 10, temperature, top_p, top_k, torch.Generator().manual_seed(3))
    assert torch.equal(out.completion_ids, reference)


def test_repeats_run_each_prompt_once_and_equal_the_expanded_batch(tiny):
    tokenizer, model = tiny
    prompts = encode_prompts(tokenizer, ["Q:1+2\nA:\n", "Q:1+2-3+4\nA:\n"], CPU)
    expanded = PromptBatch(prompts.ids.repeat_interleave(3, 0), prompts.mask.repeat_interleave(3, 0))
    kwargs = dict(max_new_tokens=12, eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id, temperature=1.2)
    shared = sample_completions(model, prompts, repeats=3, generator=torch.Generator().manual_seed(4), **kwargs)
    plain = sample_completions(model, expanded, generator=torch.Generator().manual_seed(4), **kwargs)
    assert torch.equal(shared.completion_ids, plain.completion_ids) and shared.completion_ids.shape[0] == 6
    # The scoring forward with a shared prompt gives the same hidden states, and gradients flow through it.
    hidden = completion_hidden(model, prompts, shared.completion_ids, shared.completion_mask, repeats=3)
    reference = completion_hidden(model, expanded, shared.completion_ids, shared.completion_mask)
    valid = shared.completion_mask
    torch.testing.assert_close(hidden[valid], reference[valid], atol=1e-5, rtol=1e-4)
    model.zero_grad()
    hidden[valid].sum().backward()
    assert model.model.embed_tokens.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_top_k_samples_only_among_the_k_largest_logits():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.5, 0.0]]).repeat(400, 1)
    draws = sample_next(logits, 1.0, top_k=2, generator=torch.Generator().manual_seed(0))
    assert set(draws.tolist()) == {0, 1}
    unrestricted = sample_next(logits, 1.0, top_k=0, generator=torch.Generator().manual_seed(0))
    assert set(unrestricted.tolist()) > {0, 1}
    assert torch.equal(sample_next(logits, 1.0, top_k=5, generator=torch.Generator().manual_seed(1)),
                       sample_next(logits, 1.0, generator=torch.Generator().manual_seed(1)))


def test_text_stop_ends_each_row_on_its_own(tiny):
    tokenizer, model = tiny
    texts = ["" if i in tokenizer.all_special_ids else tokenizer.decode([i]) for i in range(len(tokenizer))]
    prompts = encode_prompts(tokenizer, ["Q:1+2\nA:\n"] * 8, CPU)
    kwargs = dict(max_new_tokens=30, eos_id=-1, pad_id=tokenizer.pad_token_id, temperature=1.5)
    free = sample_completions(model, prompts, generator=torch.Generator().manual_seed(5), **kwargs)
    stop_text = texts[int(free.completion_ids[0, 3])]
    out = sample_completions(model, prompts, generator=torch.Generator().manual_seed(5),
                             stop=TextStop(stop_text, texts, 8), **kwargs)
    for free_row, ids, mask in zip(free.completion_ids.tolist(), out.completion_ids, out.completion_mask):
        cut = next((i + 1 for i, t in enumerate(free_row) if stop_text in texts[t]), len(free_row))
        assert ids[mask].tolist() == free_row[:cut]  # the same draws, up to and including the stop text
        assert (ids[~mask] == tokenizer.pad_token_id).all()
    assert out.lengths[0] <= 4 and out.lengths.min() < out.lengths.max()  # rows stop at their own step


def test_output_head_refuses_rescaled_logits(tiny):
    import copy

    _, model = tiny
    scaled = copy.deepcopy(model)
    scaled.config.final_logit_softcapping = 30.0
    with pytest.raises(ConfigError, match="final_logit_softcapping"):
        output_head(scaled)
    weight, bias = output_head(model)
    assert weight is model.lm_head.weight and bias is None
