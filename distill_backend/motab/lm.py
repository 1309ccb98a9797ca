"""MOTAB's view of a causal LM: token-list wrappers around the one decoder and the one scorer.

MOTAB and its baselines work with plain ``list[int]`` token ids (rows have different lengths, and
the pipeline cuts and stitches them). This module converts at that boundary and adds what only
MOTAB needs on top of :mod:`distill_backend.rollout`: sampling that stops a row at a step delimiter
(:class:`distill_backend.rollout.TextStop`), two models decoding in lock-step (token-level SKD,
built from the same :class:`~distill_backend.rollout.Decoder` and
:func:`~distill_backend.rollout.sample_next`), and per-token teacher statistics (log-probability of
each completion token and the entropy of the renormalized top-k distribution, computed by the
chunked scorer :func:`~distill_backend.rollout.completion_logprobs`).

Randomness comes only from the ``torch.Generator`` passed in. This module knows nothing about
prompts, tasks or MOTAB's rules.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

from distill_backend.motab.monitor import topk_entropy
from distill_backend.rollout import (
    Decoder,
    TextStop,
    completion_logits,
    completion_logprobs,
    eval_mode,
    pad_left,
    pad_right,
    sample_completions,
    sample_next,
)

__all__ = ["CompletionScores", "Samples", "completion_batch", "eval_mode", "model_device", "sample",
           "sample_token_skd", "score_completions", "token_text_table"]


class CompletionScores(NamedTuple):
    """Per-example statistics of a model on given completion tokens."""

    logprobs: list[torch.Tensor]
    """``log p(y_i | prompt, y_<i)`` for every completion token (fp32, CPU)."""
    entropies: list[torch.Tensor]
    """Entropy of the renormalized top-k next-token distribution predicting ``y_i`` (empty when
    ``top_k`` was None)."""


class Samples(NamedTuple):
    """Sampled continuations, one row per context."""

    tokens: list[list[int]]
    """New tokens, EOS included when sampled; nothing after EOS or the stop text."""
    logprobs: list[torch.Tensor]
    """The sampling model's untempered log-probability of each new token."""
    finished: list[bool]
    """True when the row ended with EOS (False: stop text or token budget)."""


def token_text_table(tokenizer) -> list[str]:
    """Decoded text of every vocabulary id (special tokens decode to ""), for stop detection."""
    special = set(tokenizer.all_special_ids)
    return ["" if i in special else tokenizer.decode([i]) for i in range(len(tokenizer))]


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def completion_batch(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    completions: Sequence[Sequence[int]],
    pad_id: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(logits [B, T, V], completion ids [B, T], mask [B, T])``: position n predicts token n.

    Full logits at once (:func:`distill_backend.rollout.completion_logits`): for inspection and
    tests; training goes through :func:`distill_backend.opsd_step.opsd_step`.
    """
    if any(len(c) == 0 for c in completions):
        raise ValueError("every completion needs at least one token")
    device = model_device(model)
    prompt = pad_left(prompts, pad_id, device)
    ids, mask = pad_right(completions, pad_id, device)
    return completion_logits(model, prompt, ids, mask), ids, mask


@torch.no_grad()
def score_completions(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    completions: Sequence[Sequence[int]],
    pad_id: int,
    top_k: int | None = None,
) -> CompletionScores:
    """Per-token log-probabilities (and top-k entropies) of ``completions`` under ``model``."""
    if any(len(c) == 0 for c in completions):
        raise ValueError("every completion needs at least one token")
    device = model_device(model)
    ids, mask = pad_right(completions, pad_id, device)
    entropy = (lambda logits: topk_entropy(logits, top_k)) if top_k is not None else None
    scores = completion_logprobs(model, pad_left(prompts, pad_id, device), ids, mask, per_position=entropy)
    lengths = mask.sum(-1).tolist()
    logprobs = [scores.logprobs[i, :n].float().cpu() for i, n in enumerate(lengths)]
    extra = scores.extra
    entropies = [extra[i, :n].float().cpu() if extra is not None else torch.empty(0) for i, n in enumerate(lengths)]
    return CompletionScores(logprobs, entropies)


def _rows(ids: torch.Tensor, mask: torch.Tensor, logprobs: torch.Tensor, eos_id: int) -> Samples:
    tokens, scores, finished = [], [], []
    for row_ids, row_mask, row_lp in zip(ids.tolist(), mask.tolist(), logprobs.cpu()):
        n = sum(row_mask)
        tokens.append(row_ids[:n])
        scores.append(row_lp[:n].clone())
        finished.append(n > 0 and row_ids[n - 1] == eos_id)
    return Samples(tokens, scores, finished)


@torch.no_grad()
def sample(
    model: torch.nn.Module,
    contexts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    eos_id: int,
    pad_id: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    stop_text: str | None = None,
    token_texts: list[str] | None = None,
) -> Samples:
    """Sample a continuation of every context, stopping a row at EOS, at ``stop_text`` or the budget."""
    if not contexts:
        return Samples([], [], [])
    if stop_text is not None and token_texts is None:
        raise ValueError("stop_text needs the token text table")
    stop = TextStop(stop_text, token_texts, len(contexts)) if stop_text is not None else None
    rollouts = sample_completions(
        model, pad_left(contexts, pad_id, model_device(model)), max_new_tokens=max_new_tokens, eos_id=eos_id,
        pad_id=pad_id, temperature=temperature, generator=generator, stop=stop, return_logprobs=True,
    )
    return _rows(rollouts.completion_ids, rollouts.completion_mask, rollouts.logprobs, eos_id)


@torch.no_grad()
def sample_token_skd(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    student_contexts: Sequence[Sequence[int]],
    teacher_contexts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    top_k: int,
    eos_id: int,
    pad_id: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[Samples, list[list[bool]]]:
    """Token-level speculative KD: the student proposes each token; a proposal outside the
    teacher's top-K is replaced by a token sampled from the teacher. Both models then read the
    chosen token. Returns the samples (student log-probs of the chosen tokens) and, per row, which
    tokens the teacher replaced.
    """
    with eval_mode(student, teacher):
        s_dec = Decoder(student, pad_left(student_contexts, pad_id, model_device(student)))
        t_dec = Decoder(teacher, pad_left(teacher_contexts, pad_id, model_device(teacher)))
        s_logits, t_logits = s_dec.logits.float(), t_dec.logits.float()
        finished = torch.zeros(s_logits.shape[0], dtype=torch.bool, device=s_logits.device)
        tokens, valid, logprobs, replaced = [], [], [], []
        for _ in range(max_new_tokens):
            proposal = sample_next(s_logits, temperature, generator=generator)
            t_logits = t_logits.to(proposal.device)
            k = min(top_k, t_logits.shape[-1])
            in_top = (t_logits.topk(k, dim=-1).indices == proposal[:, None]).any(-1)
            fallback = sample_next(t_logits, temperature, generator=generator)
            chosen = torch.where(in_top, proposal, fallback)
            logprobs.append(torch.log_softmax(s_logits, -1).gather(-1, chosen[:, None]).squeeze(-1))
            chosen = torch.where(finished, torch.full_like(chosen, pad_id), chosen)
            tokens.append(chosen)
            valid.append(~finished)
            replaced.append(~in_top)
            finished = finished | (chosen == eos_id)
            if bool(finished.all()):
                break
            s_logits, t_logits = s_dec.advance(chosen).float(), t_dec.advance(chosen).float()
    mask = torch.stack(valid, dim=1)
    samples = _rows(torch.stack(tokens, dim=1), mask, torch.stack(logprobs, dim=1), eos_id)
    flags = torch.stack(replaced, dim=1)
    return samples, [row[: len(t)] for row, t in zip(flags.tolist(), samples.tokens)]
