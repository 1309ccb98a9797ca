"""Batched scoring and sampling of any causal LM, as MOTAB and its baselines need them.

What is here and not in :mod:`distill_backend.rollout`: sampling that stops *per row* at a step
delimiter (MOTAB and step-level SKD write one step at a time), two models decoding in lock-step
(token-level SKD), and per-token teacher statistics (log-probability of the sampled token and the
entropy of the renormalized top-k distribution at every completion position).

Token ids are plain ``list[int]`` at this boundary: rows have different lengths, and the pipeline
cuts and stitches them. Randomness comes only from the ``torch.Generator`` passed in. This module
knows nothing about prompts, tasks or MOTAB's rules.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, NamedTuple, Sequence

import torch

from distill_backend.motab.monitor import topk_entropy
from distill_backend.rollout import completion_logits, pad_left, pad_right


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

    Uses :func:`distill_backend.rollout.completion_logits` (left-padded prompts, right-padded
    completions, logits only over completion positions). Gradients flow when the caller has them
    enabled, so this is also the training forward of SFT and on-policy distillation.
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
    logits, targets, mask = completion_batch(model, prompts, completions, pad_id)
    logits = logits.float()
    logp = torch.log_softmax(logits, dim=-1).gather(-1, targets[:, :, None]).squeeze(-1)
    ent = topk_entropy(logits, top_k) if top_k is not None else None
    lengths = mask.sum(-1).tolist()
    logprobs = [logp[i, :n].cpu() for i, n in enumerate(lengths)]
    entropies = [ent[i, :n].cpu() if ent is not None else torch.empty(0) for i, n in enumerate(lengths)]
    return CompletionScores(logprobs, entropies)


class IncrementalDecoder:
    """One model decoding a batch of left-padded contexts with its KV cache.

    ``start`` returns the next-token logits after each context; ``advance`` feeds one token per row
    and returns the next logits. Finished rows keep being fed (a pad token); their outputs are
    ignored by the caller, which keeps every row in one batched call.
    """

    def __init__(self, model: torch.nn.Module, pad_id: int) -> None:
        self.model = model
        self.pad_id = pad_id
        self.device = model_device(model)
        self._cache = None
        self._mask: torch.Tensor | None = None
        self._position: torch.Tensor | None = None

    def start(self, contexts: Sequence[Sequence[int]]) -> torch.Tensor:
        ids, mask = pad_left(contexts, self.pad_id, self.device)
        position = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=position, use_cache=True, logits_to_keep=1)
        self._cache, self._mask, self._position = out.past_key_values, mask, position[:, -1:]
        return out.logits[:, -1].float()

    def advance(self, tokens: torch.Tensor) -> torch.Tensor:
        assert self._mask is not None and self._position is not None, "start() first"
        self._mask = torch.cat([self._mask, torch.ones_like(self._mask[:, :1])], dim=1)
        self._position = self._position + 1
        out = self.model(
            input_ids=tokens.view(-1, 1).to(self.device),
            attention_mask=self._mask,
            position_ids=self._position,
            past_key_values=self._cache,
            use_cache=True,
        )
        self._cache = out.past_key_values
        return out.logits[:, -1].float()


@contextlib.contextmanager
def eval_mode(*models: torch.nn.Module) -> Iterator[None]:
    """Run with every model in eval mode, restoring each one's previous mode afterwards."""
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)


def draw(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """One token per row: greedy when ``temperature == 0``, else softmax(logits / T) sampling.

    Sampling happens on the generator's device so a CPU generator also drives CUDA models.
    """
    if temperature == 0:
        return logits.argmax(-1)
    gen_device = generator.device if generator is not None else logits.device
    probs = torch.softmax(logits.to(gen_device) / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(logits.device)


class _RowTracker:
    """Collects new tokens per row and decides when a row is done (EOS, stop text, budget)."""

    def __init__(self, rows: int, eos_id: int, stop_text: str | None, texts: list[str] | None) -> None:
        self.tokens: list[list[int]] = [[] for _ in range(rows)]
        self.logprobs: list[list[float]] = [[] for _ in range(rows)]
        self.finished = [False] * rows
        self.done = [False] * rows
        self._tails = [""] * rows
        self.eos_id, self.stop_text, self.texts = eos_id, stop_text, texts
        if stop_text is not None and texts is None:
            raise ValueError("stop_text needs the token text table")

    def add(self, chosen: list[int], logps: list[float]) -> None:
        for i, (tok, lp) in enumerate(zip(chosen, logps)):
            if self.done[i]:
                continue
            self.tokens[i].append(tok)
            self.logprobs[i].append(lp)
            if tok == self.eos_id:
                self.done[i] = self.finished[i] = True
            elif self.stop_text is not None:
                tail = self._tails[i] + self.texts[tok]  # type: ignore[index]
                if self.stop_text in tail:
                    self.done[i] = True
                self._tails[i] = tail[-len(self.stop_text):]

    def result(self) -> Samples:
        return Samples(self.tokens, [torch.tensor(lp) for lp in self.logprobs], self.finished)


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
    with eval_mode(model):
        return _sample(model, contexts, max_new_tokens, eos_id, pad_id, temperature, generator, stop_text, token_texts)


def _sample(model, contexts, max_new_tokens, eos_id, pad_id, temperature, generator, stop_text, token_texts) -> Samples:
    decoder = IncrementalDecoder(model, pad_id)
    logits = decoder.start(contexts)
    rows = _RowTracker(len(contexts), eos_id, stop_text, token_texts)
    for _ in range(max_new_tokens):
        tokens = draw(logits, temperature, generator)
        logp = torch.log_softmax(logits, -1).gather(-1, tokens[:, None]).squeeze(-1)
        rows.add(tokens.tolist(), logp.tolist())
        if all(rows.done):
            break
        feed = torch.where(torch.as_tensor(rows.done, device=tokens.device), torch.full_like(tokens, pad_id), tokens)
        logits = decoder.advance(feed)
    return rows.result()


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
        return _token_skd(student, teacher, student_contexts, teacher_contexts, max_new_tokens, top_k, eos_id,
                          pad_id, temperature, generator)


def _token_skd(student, teacher, student_contexts, teacher_contexts, max_new_tokens, top_k, eos_id, pad_id,
               temperature, generator) -> tuple[Samples, list[list[bool]]]:
    s_dec, t_dec = IncrementalDecoder(student, pad_id), IncrementalDecoder(teacher, pad_id)
    s_logits, t_logits = s_dec.start(student_contexts), t_dec.start(teacher_contexts)
    rows = _RowTracker(len(student_contexts), eos_id, None, None)
    replaced: list[list[bool]] = [[] for _ in student_contexts]
    for _ in range(max_new_tokens):
        proposal = draw(s_logits, temperature, generator)
        t_logits = t_logits.to(proposal.device)
        k = min(top_k, t_logits.shape[-1])
        in_top = (t_logits.topk(k, dim=-1).indices == proposal[:, None]).any(-1)
        fallback = draw(t_logits, temperature, generator)
        chosen = torch.where(in_top, proposal, fallback)
        logp = torch.log_softmax(s_logits, -1).gather(-1, chosen[:, None]).squeeze(-1)
        for i, ok in enumerate(in_top.tolist()):
            if not rows.done[i]:
                replaced[i].append(not ok)
        rows.add(chosen.tolist(), logp.tolist())
        if all(rows.done):
            break
        feed = torch.where(torch.as_tensor(rows.done, device=chosen.device), torch.full_like(chosen, pad_id), chosen)
        s_logits, t_logits = s_dec.advance(feed), t_dec.advance(feed)
    return rows.result(), replaced
