"""Answer extraction and accuracy metrics: Average@k, pass@k and greedy accuracy, per difficulty.

The answer of a completion is the content of its **last** ``\\boxed{...}`` (braces matched), as in
the OPSD paper's evaluation. Average@k is the mean correctness of ``k`` samples per problem
(temperature and top-p from the caller); pass@k is the fraction of problems with at least one
correct sample among the ``k``. Greedy accuracy is the ``k = 1``, temperature-0 case.

This module knows about prompts only through the prompt strings it is given: pass student prompts
for the student role, teacher prompts at some reveal ratio for the teacher role.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np
import torch

from distill_backend.rollout import PromptBatch, completion_logprobs, encode_prompts, pad_right, sample_completions
from distill_backend.task import Problem, difficulty_levels
from exposure_env.errors import check_range, store_integers


def extract_boxed_answer(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` in ``text`` (nested braces allowed), stripped; None if absent
    or unterminated."""
    start = text.rfind("\\boxed{")
    while start != -1:
        depth, i = 1, start + len("\\boxed{")
        begin = i
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return text[begin : i - 1].strip()
        start = text.rfind("\\boxed{", 0, start)  # unterminated: fall back to an earlier one
    return None


def is_correct(completion: str, answer: str) -> bool:
    predicted = extract_boxed_answer(completion)
    return predicted is not None and predicted == answer.strip()


@dataclass(frozen=True)
class EvalConfig:
    """How a model is evaluated."""

    k: int = 4
    """Samples per problem for Average@k and pass@k."""
    temperature: float = 1.0
    top_p: float = 0.95
    max_new_tokens: int = 64
    batch_size: int = 512
    """Sequences decoded at once (generation is overhead-bound on CPU: wide batches are cheap)."""

    def __post_init__(self) -> None:
        store_integers(self)
        check_range("eval_k", self.k, 1, None, integer=True)
        check_range("eval_temperature", self.temperature, 0.0, None)
        check_range("eval_top_p", self.top_p, 0.0, 1.0, low_inclusive=False)
        check_range("max_new_tokens", self.max_new_tokens, 1, None, integer=True)
        check_range("eval_batch_size", self.batch_size, 1, None, integer=True)


class EvalResult(NamedTuple):
    average_at_k: float
    pass_at_k: float
    k: int
    num_problems: int
    per_level_average: dict[str, float]
    """Average@k of each difficulty level."""
    per_level_pass: dict[str, float]
    mean_length: float
    """Mean completion length in tokens."""


@torch.no_grad()
def generate_texts(
    model, tokenizer, prompts: Sequence[str], *, max_new_tokens: int, temperature: float, top_p: float,
    generator: torch.Generator | None, batch_size: int, device: torch.device, repeats: int = 1,
) -> tuple[list[str], list[int]]:
    """Decode ``repeats`` completions per prompt (consecutive), about ``batch_size`` sequences at a time;
    returns texts and completion lengths. Each prompt is encoded and prefilled once."""
    texts, lengths = [], []
    per_batch = max(1, batch_size // repeats)
    for start in range(0, len(prompts), per_batch):
        batch = encode_prompts(tokenizer, prompts[start : start + per_batch], device)
        rollouts = sample_completions(
            model, batch, max_new_tokens=max_new_tokens, eos_id=tokenizer.eos_token_id,
            pad_id=tokenizer.pad_token_id, temperature=temperature, top_p=top_p, generator=generator,
            repeats=repeats,
        )
        for ids, mask in zip(rollouts.completion_ids.tolist(), rollouts.completion_mask.tolist()):
            kept = [t for t, m in zip(ids, mask) if m]
            texts.append(tokenizer.decode(kept, skip_special_tokens=True))
            lengths.append(len(kept))
    return texts, lengths


class GradedSamples(NamedTuple):
    """Which sampled answers were right: the raw material of an :class:`EvalResult`, which can be
    concatenated over shares of the problems (data-parallel evaluation) before it is summarised."""

    correct: np.ndarray
    """(problems, k) float64: 1.0 where sample j of problem i was correct."""
    lengths: list[int]
    """Completion length in tokens of every sample, problem by problem."""
    texts: tuple[str, ...] = ()
    """The sampled texts, problem by problem (``k`` consecutive per problem); empty where not kept
    (e.g. after gathering a data-parallel evaluation)."""


def grade_samples(
    model, tokenizer, prompts: Sequence[str], problems: Sequence[Problem], config: EvalConfig,
    generator: torch.Generator | None, device: torch.device, greedy: bool = False,
) -> GradedSamples:
    """Sample ``k`` answers (1 greedy one with ``greedy``) per problem from ``prompts`` and grade them."""
    k = 1 if greedy else config.k
    texts, lengths = generate_texts(
        model, tokenizer, prompts, max_new_tokens=config.max_new_tokens,
        temperature=0.0 if greedy else config.temperature, top_p=1.0 if greedy else config.top_p,
        generator=generator, batch_size=config.batch_size, device=device, repeats=k,
    )
    correct = np.array([is_correct(t, problems[i // k].answer) for i, t in enumerate(texts)], dtype=np.float64)
    return GradedSamples(correct.reshape(len(problems), k), lengths, tuple(texts))


def evaluate_prompts(
    model, tokenizer, prompts: Sequence[str], problems: Sequence[Problem], config: EvalConfig,
    generator: torch.Generator | None, device: torch.device, greedy: bool = False,
) -> EvalResult:
    """Accuracy of ``model`` answering ``problems`` from the given ``prompts`` (one per problem)."""
    return summarize_grades(grade_samples(model, tokenizer, prompts, problems, config, generator, device, greedy),
                            problems)


def summarize_grades(graded: GradedSamples, problems: Sequence[Problem]) -> EvalResult:
    """Average@k, pass@k (overall and per difficulty level) and mean length of graded samples."""
    correct, lengths = graded.correct, graded.lengths
    k = correct.shape[1]
    avg, hit = correct.mean(axis=1), correct.max(axis=1)
    levels = np.array([p.difficulty for p in problems])
    per_avg = {lv: float(avg[levels == lv].mean()) for lv in difficulty_levels(problems)}
    per_pass = {lv: float(hit[levels == lv].mean()) for lv in difficulty_levels(problems)}
    return EvalResult(float(avg.mean()), float(hit.mean()), k, len(problems), per_avg, per_pass,
                      float(np.mean(lengths)))


class ReferenceBatch(NamedTuple):
    """Prompts with each problem's reference solution (plus eos) as the completion, encoded once."""

    prompt: PromptBatch
    targets: torch.Tensor
    """(N, T) right-padded reference tokens."""
    mask: torch.Tensor
    """(N, T) bool."""


def reference_batch(tokenizer, prompts: Sequence[str], problems: Sequence[Problem], device: torch.device) -> ReferenceBatch:
    """Encode ``prompts`` (one per problem) and the problems' reference solutions plus eos."""
    ids = [tokenizer(p.solution, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for p in problems]
    targets, mask = pad_right(ids, tokenizer.pad_token_id, device)
    return ReferenceBatch(encode_prompts(tokenizer, prompts, device), targets, mask)


@torch.no_grad()
def batch_logprob(model, batch: ReferenceBatch) -> float:
    """Mean per-token log-probability of ``batch``'s references under ``model``, pooled over all tokens."""
    total, count = batch_logprob_sum(model, batch)
    return float(total / count)


@torch.no_grad()
def batch_logprob_sum(model, batch: ReferenceBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of the per-token log-probabilities of ``batch``'s references and their number of tokens
    (scalar tensors), to be pooled over several batches."""
    logp = completion_logprobs(model, batch.prompt, batch.targets, batch.mask).logprobs
    return logp.sum(), batch.mask.sum()


def reference_logprob(model, tokenizer, prompts: Sequence[str], problems: Sequence[Problem],
                      device: torch.device) -> float:
    """Mean per-token log-probability of each problem's reference solution (plus eos) as the
    completion of its prompt (one prompt per problem), pooled over all tokens.

    With student prompts it is minus the probe NLL; with teacher prompts at reveal ratio ``alpha``
    it measures how well the model in the teacher role reads (and continues) the reference, which
    is the grounding statistic ``G_gt`` of the reward and the warm start's teacher-NLL check.
    """
    return batch_logprob(model, reference_batch(tokenizer, prompts, problems, device))
