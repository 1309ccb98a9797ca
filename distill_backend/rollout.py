"""Batched sampling with the KV cache, and scoring of completions under a given context.

Sampling is a hand-written decode loop rather than ``model.generate`` so that every random draw
comes from a ``torch.Generator`` the caller owns (``generate`` samples from the global RNG, which
would make a run depend on whatever else ran in the process and break exact resume).

Layout used everywhere: prompts are **left**-padded, completions **right**-padded, and the two are
concatenated; position ids come from the cumulative attention mask, so padding never shifts
positions. :func:`completion_logits` returns logits aligned so that position ``n`` predicts
completion token ``n``, and only for the completion positions (``logits_to_keep``), so a real
151,936-entry vocabulary is never materialised over the prompt.

This module knows nothing about tasks, rewards or losses.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch


class PromptBatch(NamedTuple):
    ids: torch.Tensor
    """(N, P) left-padded prompt token ids."""
    mask: torch.Tensor
    """(N, P) attention mask (1 = real token)."""


class Rollouts(NamedTuple):
    prompt: PromptBatch
    completion_ids: torch.Tensor
    """(N, T) sampled tokens, right-padded with the pad id after the end-of-sequence token."""
    completion_mask: torch.Tensor
    """(N, T) bool: real completion tokens, the end-of-sequence token included."""
    lengths: torch.Tensor
    """(N,) number of real completion tokens."""


def encode_prompts(tokenizer, prompts: Sequence[str], device: torch.device) -> PromptBatch:
    """Left-padded token ids of ``prompts`` (no special tokens added: templates carry their own)."""
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    return pad_left(ids, tokenizer.pad_token_id, device)


def pad_left(sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> PromptBatch:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq):] = 1
    return PromptBatch(ids.to(device), mask.to(device))


def pad_right(sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and bool mask of ``sequences`` (every sequence must be non-empty)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.bool)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = True
    return ids.to(device), mask.to(device)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _sample_next(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> torch.Tensor:
    if temperature <= 0.0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # keep the smallest prefix whose mass reaches top_p (the top token is always kept)
        drop = sorted_probs.cumsum(-1) - sorted_probs >= top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def sample_completions(
    model: torch.nn.Module,
    prompt: PromptBatch,
    *,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> Rollouts:
    """Sample one completion per prompt row with the KV cache (``temperature <= 0``: greedy).

    Decoding stops when every row has produced ``eos_id`` or after ``max_new_tokens`` tokens.
    """
    from transformers import DynamicCache

    was_training = model.training
    model.eval()
    attention = prompt.mask.clone()
    positions = _positions(attention)
    out = model(input_ids=prompt.ids, attention_mask=attention, position_ids=positions,
                past_key_values=DynamicCache(), use_cache=True, logits_to_keep=1)
    n = prompt.ids.shape[0]
    finished = torch.zeros(n, dtype=torch.bool, device=prompt.ids.device)
    tokens, valid = [], []
    next_pos = positions[:, -1:] + 1
    for step in range(max_new_tokens):
        token = _sample_next(out.logits[:, -1, :], temperature, top_p, generator)
        token = torch.where(finished, torch.full_like(token, pad_id), token)
        valid.append(~finished)
        tokens.append(token)
        finished = finished | (token == eos_id)
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        attention = torch.cat([attention, torch.ones_like(attention[:, :1])], dim=1)
        out = model(input_ids=token[:, None], attention_mask=attention, position_ids=next_pos,
                    past_key_values=out.past_key_values, use_cache=True)
        next_pos = next_pos + 1
    model.train(was_training)
    completion_ids = torch.stack(tokens, dim=1)
    completion_mask = torch.stack(valid, dim=1)
    return Rollouts(prompt, completion_ids, completion_mask, completion_mask.sum(-1))


def completion_logits(
    model: torch.nn.Module, prompt: PromptBatch, completion_ids: torch.Tensor, completion_mask: torch.Tensor
) -> torch.Tensor:
    """Logits ``(N, T, V)`` of ``model`` on ``[prompt; completion]``; position n predicts token n.

    The last completion token is not fed (nothing is predicted from it), so the input has length
    ``P + T - 1`` and the last ``T`` positions are exactly the predicting ones.
    """
    length = completion_ids.shape[1]
    ids = torch.cat([prompt.ids, completion_ids[:, :-1]], dim=1)
    mask = torch.cat([prompt.mask, completion_mask[:, :-1].long()], dim=1)
    out = model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask), use_cache=False,
                logits_to_keep=length)
    return out.logits


def completion_logprobs(
    model: torch.nn.Module, prompt: PromptBatch, completion_ids: torch.Tensor, completion_mask: torch.Tensor
) -> torch.Tensor:
    """Per-token log-probabilities ``(N, T)`` of the completion tokens (0 at padding), in fp32."""
    logits = completion_logits(model, prompt, completion_ids, completion_mask).float()
    logp = torch.log_softmax(logits, dim=-1).gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)
    return logp * completion_mask
