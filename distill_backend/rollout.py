"""The one decoder (batched sampling with the KV cache) and the one forward that scores completions.

Every rollout, evaluation sample and MOTAB continuation is drawn by :func:`sample_completions`
(or, when two models decode in lock-step, by :class:`Decoder` + :func:`sample_next`, the same
pieces). Sampling is a hand-written loop over the model's own forward rather than ``model.generate``
so that every random draw comes from a ``torch.Generator`` the caller owns (``generate`` samples
from the global RNG, which would make a run depend on whatever else ran in the process and break
exact resume). The cache is a ``transformers`` ``DynamicCache`` passed under the forward's current
keyword (``cache`` in recent transformers, ``past_key_values`` in older ones such as 5.17), so no
deprecation path runs.

Every forward over ``[prompt; completion]`` (teacher and student scoring, the probe statistic,
MOTAB's monitor) goes through :func:`completion_hidden`: the backbone's last hidden states at the
positions that predict the completion tokens. The output projection is applied by the caller,
chunk by chunk (:mod:`distill_backend.losses`), so a 151,936-entry vocabulary is never
materialised for a whole batch. :func:`completion_logits` applies it at once, for small inputs.

Layout used everywhere: prompts are **left**-padded, completions **right**-padded, and the two are
concatenated; position ids come from the cumulative attention mask, so padding never shifts
positions. With ``repeats = k`` the prompt batch holds one row per question and the completions
``k`` consecutive rows per question: the prompt is run once and its KV cache repeated, which gives
the same values (up to floating-point summation order) for less compute.

This module knows nothing about tasks, prompts' wording or rewards.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from typing import Callable, Iterator, NamedTuple, Sequence

import torch

from distill_backend.losses import TokenScores, token_scores
from exposure_env.errors import ConfigError


class PromptBatch(NamedTuple):
    ids: torch.Tensor
    """(N, P) left-padded prompt token ids."""
    mask: torch.Tensor
    """(N, P) attention mask (1 = real token)."""


class Rollouts(NamedTuple):
    prompt: PromptBatch
    """The prompts as given (one row per question when ``repeats > 1``)."""
    completion_ids: torch.Tensor
    """(N, T) sampled tokens, right-padded with the pad id after the row stopped."""
    completion_mask: torch.Tensor
    """(N, T) bool: real completion tokens, the stopping token (end-of-sequence or stop text) included."""
    lengths: torch.Tensor
    """(N,) number of real completion tokens."""
    logprobs: torch.Tensor | None = None
    """(N, T) fp32 untempered log-probability of each sampled token under the sampling model (0 at
    padding); only with ``return_logprobs=True``."""


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


# --------------------------------------------------------------------------------------------
# The model's parts and its cache keyword
# --------------------------------------------------------------------------------------------


def causal_lm(model: torch.nn.Module) -> torch.nn.Module:
    """The ``*ForCausalLM`` module inside ``model`` (a peft wrapper is looked through; its LoRA
    layers stay injected, so ``disable_adapter()`` still applies)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def backbone(model: torch.nn.Module) -> torch.nn.Module:
    """The decoder stack (everything before the output projection), e.g. ``Qwen3Model``."""
    lm = causal_lm(model)
    body = lm.base_model
    if body is lm:
        raise ConfigError("model", "a causal LM with a separate backbone (base_model) and output head",
                          type(lm).__name__)
    return body


def output_head(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weight ``(V, H)`` and bias of the output projection. Models that rescale or soft-cap their
    logits after the projection are refused: the chunked head would silently differ from them."""
    lm = causal_lm(model)
    config = lm.config.get_text_config() if hasattr(lm.config, "get_text_config") else lm.config
    for name in ("final_logit_softcapping", "logit_scale", "output_multiplier", "logits_scaling", "lm_head_multiplier"):
        if getattr(config, name, None) not in (None, 1, 1.0):
            raise ConfigError("model", f"an output head without {name} (a plain linear projection)",
                              getattr(config, name))
    head = lm.get_output_embeddings()
    return head.weight, getattr(head, "bias", None)


@functools.cache
def _cache_keyword(cls: type) -> str:
    """``cache`` where the forward takes it (recent transformers), else ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(cls.forward).parameters else "past_key_values"


def _cache_kwargs(module: torch.nn.Module, cache) -> dict:
    return {_cache_keyword(type(module)): cache}


def _returned_cache(output):
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def new_cache(model: torch.nn.Module):
    from transformers import DynamicCache

    return DynamicCache(config=causal_lm(model).config)


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


# --------------------------------------------------------------------------------------------
# The decoder
# --------------------------------------------------------------------------------------------


class Decoder:
    """One model decoding a batch of left-padded prompts with its KV cache.

    After construction ``logits`` holds the next-token logits ``(N, V)`` after every prompt (rows
    repeated ``repeats`` times); :meth:`advance` feeds one token per row and returns the next
    logits. Rows that have stopped keep being fed (the pad token); the caller ignores their output,
    which keeps every row in one batched call. Call under ``torch.no_grad()``.
    """

    def __init__(self, model: torch.nn.Module, prompt: PromptBatch, repeats: int = 1) -> None:
        self.model = model  # a peft wrapper's own forward is what runs
        lm = causal_lm(model)
        self._keyword = _cache_keyword(type(lm))
        mask = prompt.mask
        positions = _positions(mask)
        out = model(input_ids=prompt.ids, attention_mask=mask, position_ids=positions, use_cache=True,
                    logits_to_keep=1, **{self._keyword: new_cache(model)})
        self.cache = _returned_cache(out)
        logits = out.logits[:, -1, :]
        if repeats > 1:
            self.cache.batch_repeat_interleave(repeats)
            mask, positions = mask.repeat_interleave(repeats, 0), positions.repeat_interleave(repeats, 0)
            logits = logits.repeat_interleave(repeats, 0)
        self.mask = mask
        self.next_position = positions[:, -1:] + 1
        self.logits = logits

    def advance(self, tokens: torch.Tensor) -> torch.Tensor:
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)
        out = self.model(input_ids=tokens.view(-1, 1).to(self.mask.device), attention_mask=self.mask,
                         position_ids=self.next_position, use_cache=True, **{self._keyword: self.cache})
        self.cache = _returned_cache(out)
        self.next_position = self.next_position + 1
        self.logits = out.logits[:, -1, :]
        return self.logits


def sample_next(
    logits: torch.Tensor, temperature: float, top_p: float = 1.0, top_k: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token per row: greedy when ``temperature <= 0``; else softmax(logits / T) restricted to
    the ``top_k`` largest logits (0 = all) and then to the smallest prefix of mass ``top_p``.

    The draw happens on the generator's device, so a CPU generator also drives a CUDA model.
    """
    if temperature <= 0.0:
        return logits.argmax(-1)
    scores = logits.float() / temperature
    if 0 < top_k < scores.shape[-1]:
        kth = scores.topk(top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # keep the smallest prefix whose mass reaches top_p (the top token is always kept)
        drop = sorted_probs.cumsum(-1) - sorted_probs >= top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    if generator is not None and generator.device != probs.device:
        probs = probs.to(generator.device)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(logits.device)


class TextStop:
    """Per-row stop criterion: a row stops once its decoded text contains ``stop_text``.

    ``texts`` is the decoded text of every vocabulary id. Called once per decode step with the new
    tokens and the rows still running; returns the rows that stop on this token.
    """

    def __init__(self, stop_text: str, texts: Sequence[str], rows: int) -> None:
        if not stop_text:
            raise ConfigError("stop_text", "a non-empty string", stop_text)
        self.stop_text, self.texts = stop_text, texts
        self._tails = [""] * rows

    def __call__(self, tokens: torch.Tensor, running: torch.Tensor) -> torch.Tensor:
        stops = []
        for row, (token, active) in enumerate(zip(tokens.tolist(), running.tolist())):
            hit = False
            if active:
                tail = self._tails[row] + self.texts[token]
                hit = self.stop_text in tail
                self._tails[row] = tail[-len(self.stop_text):]
            stops.append(hit)
        return torch.tensor(stops, dtype=torch.bool, device=tokens.device)


StopCriterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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
    top_k: int = 0,
    generator: torch.Generator | None = None,
    repeats: int = 1,
    stop: StopCriterion | None = None,
    return_logprobs: bool = False,
) -> Rollouts:
    """Sample ``repeats`` completions per prompt row with the KV cache (``temperature <= 0``: greedy).

    A row stops after ``eos_id`` or after the token on which ``stop(tokens, running)`` returns True
    (that token is kept); decoding ends when every row has stopped or after ``max_new_tokens``.
    The model runs in eval mode and is restored to its previous mode.
    """
    with eval_mode(model):
        decoder = Decoder(model, prompt, repeats)
        logits = decoder.logits
        finished = torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
        tokens, valid, logprobs = [], [], []
        for step in range(max_new_tokens):
            token = sample_next(logits, temperature, top_p, top_k, generator)
            if return_logprobs:
                logprobs.append(torch.log_softmax(logits.float(), -1).gather(-1, token[:, None]).squeeze(-1))
            token = torch.where(finished, torch.full_like(token, pad_id), token)
            valid.append(~finished)
            tokens.append(token)
            stopping = token == eos_id
            if stop is not None:
                stopping = stopping | stop(token, ~finished)
            finished = finished | stopping
            if bool(finished.all()) or step == max_new_tokens - 1:
                break
            logits = decoder.advance(token)
    completion_ids = torch.stack(tokens, dim=1)
    completion_mask = torch.stack(valid, dim=1)
    scores = torch.stack(logprobs, dim=1) * completion_mask if return_logprobs else None
    return Rollouts(prompt, completion_ids, completion_mask, completion_mask.sum(-1), scores)


# --------------------------------------------------------------------------------------------
# Scoring forward
# --------------------------------------------------------------------------------------------


def completion_hidden(
    model: torch.nn.Module,
    prompt: PromptBatch,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    repeats: int = 1,
) -> torch.Tensor:
    """Last hidden states ``(N, T, H)`` of ``model`` on ``[prompt; completion]``; position n predicts
    completion token n. Gradients flow when the caller has them enabled.

    The last completion token is not fed (nothing is predicted from it). With ``repeats = k`` the
    prompt rows are run once, their cache repeated ``k`` times, and the completions run on it.
    """
    body = backbone(model)
    length = completion_ids.shape[1]
    feed_ids, feed_mask = completion_ids[:, :-1], completion_mask[:, :-1].long()
    if repeats == 1:
        ids = torch.cat([prompt.ids, feed_ids], dim=1)
        mask = torch.cat([prompt.mask, feed_mask], dim=1)
        out = body(input_ids=ids, attention_mask=mask, position_ids=_positions(mask), use_cache=False)
        return out.last_hidden_state[:, -length:]
    positions = _positions(prompt.mask)
    out = body(input_ids=prompt.ids, attention_mask=prompt.mask, position_ids=positions, use_cache=True,
               **_cache_kwargs(body, new_cache(model)))
    first = out.last_hidden_state[:, -1:].repeat_interleave(repeats, 0)
    if length == 1:
        return first
    cache = _returned_cache(out)
    cache.batch_repeat_interleave(repeats)
    mask = torch.cat([prompt.mask.repeat_interleave(repeats, 0), feed_mask], dim=1)
    rest = body(input_ids=feed_ids, attention_mask=mask, position_ids=_positions(mask)[:, -(length - 1):],
                use_cache=True, **_cache_kwargs(body, cache))
    return torch.cat([first, rest.last_hidden_state], dim=1)


def completion_logits(
    model: torch.nn.Module, prompt: PromptBatch, completion_ids: torch.Tensor, completion_mask: torch.Tensor
) -> torch.Tensor:
    """Logits ``(N, T, V)`` on ``[prompt; completion]``, all at once (fine for small vocabularies and
    batches; the training and scoring paths project chunk by chunk instead)."""
    weight, bias = output_head(model)
    return torch.nn.functional.linear(completion_hidden(model, prompt, completion_ids, completion_mask), weight, bias)


def completion_logprobs(
    model: torch.nn.Module,
    prompt: PromptBatch,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    per_position: Callable[[torch.Tensor], torch.Tensor] | None = None,
    repeats: int = 1,
) -> TokenScores:
    """Per-token log-probabilities ``(N, T)`` of the completion tokens (fp32, 0 at padding), projected
    chunk by chunk; with ``per_position`` also that function of each position's fp32 logits.
    Returns :class:`distill_backend.losses.TokenScores`."""
    hidden = completion_hidden(model, prompt, completion_ids, completion_mask, repeats)
    weight, bias = output_head(model)
    return token_scores(hidden, weight, bias, completion_ids, completion_mask, per_position)
