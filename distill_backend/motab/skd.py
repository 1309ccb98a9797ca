"""Speculative-KD baselines of the MOTAB paper's public code: step-level and token-level.

* **Step-level SKD**: the student writes one step; the teacher accepts it when its geometric-mean
  probability of the step exceeds ``gamma`` times the student's own (``V_T > gamma * V_S``);
  otherwise the teacher rewrites that step from the same context. Either way the student continues
  from the accepted/rewritten context, so (unlike MOTAB) every verdict changes what follows.
* **Token-level SKD**: the student proposes every token; a proposal outside the teacher's top-K is
  replaced by a token sampled from the teacher (:func:`distill_backend.motab.lm.sample_token_skd`).

Both return plain completions (token ids) that the student is then trained on with SFT. This
module knows models, token ids and :class:`MotabConfig`; nothing about tasks or prompt templates.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch

from distill_backend.motab.config import MotabConfig
from distill_backend.motab.lm import sample, sample_token_skd, score_completions
from distill_backend.motab.monitor import oracle_value
from distill_backend.motab.pipeline import TokenizerInfo


def accept_step(teacher_value: float, student_value: float, gamma: float) -> bool:
    """Step-level SKD acceptance: ``V_T > gamma * V_S`` (strict)."""
    return teacher_value > gamma * student_value


class SkdBatch(NamedTuple):
    """Completions synthesized by an SKD baseline, and how much the teacher intervened."""

    completions: list[list[int]]
    interventions: list[int]
    """Per row: steps (step SKD) or tokens (token SKD) written by the teacher."""
    units: list[int]
    """Per row: steps or tokens in total."""

    @property
    def intervention_rate(self) -> float:
        total = sum(self.units)
        return sum(self.interventions) / total if total else math.nan


def step_skd_rollouts(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    student_prompts: Sequence[Sequence[int]],
    teacher_prompts: Sequence[Sequence[int]],
    tok: TokenizerInfo,
    cfg: MotabConfig,
    generator: torch.Generator | None,
) -> SkdBatch:
    """Step-level SKD: one step at a time, teacher accepts or rewrites each student step."""
    n = len(student_prompts)
    completions: list[list[int]] = [[] for _ in range(n)]
    interventions, units = [0] * n, [0] * n
    active = list(range(n))
    for _ in range(cfg.max_steps):
        active = [r for r in active if len(completions[r]) < cfg.student_max_new_tokens]
        if not active:
            break
        budget = max(cfg.student_max_new_tokens - min(len(completions[r]) for r in active), 1)
        proposals = sample(
            student, [list(student_prompts[r]) + completions[r] for r in active], budget, eos_id=tok.eos_id,
            pad_id=tok.pad_id, temperature=cfg.student_temperature, generator=generator,
            stop_text=cfg.step_delimiter, token_texts=tok.texts,
        )
        teacher_contexts = [list(teacher_prompts[r]) + completions[r] for r in active]
        t_scores = score_completions(teacher, teacher_contexts, proposals.tokens, tok.pad_id)
        rejected = [
            i for i in range(len(active))
            if not accept_step(oracle_value(t_scores.logprobs[i]), oracle_value(proposals.logprobs[i]), cfg.skd_gamma)
        ]
        rewrites = sample(
            teacher, [teacher_contexts[i] for i in rejected], budget, eos_id=tok.eos_id, pad_id=tok.pad_id,
            temperature=cfg.teacher_temperature, generator=generator, stop_text=cfg.step_delimiter,
            token_texts=tok.texts,
        )
        chosen = list(proposals.tokens)
        for i, tokens in zip(rejected, rewrites.tokens):
            chosen[i] = tokens
            interventions[active[i]] += 1
        still = []
        for i, row in enumerate(active):
            room = cfg.student_max_new_tokens - len(completions[row])
            completions[row].extend(chosen[i][:room])
            units[row] += 1
            if tok.eos_id not in chosen[i]:
                still.append(row)
        active = still
    return SkdBatch(completions, interventions, units)


def token_skd_rollouts(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    student_prompts: Sequence[Sequence[int]],
    teacher_prompts: Sequence[Sequence[int]],
    tok: TokenizerInfo,
    cfg: MotabConfig,
    generator: torch.Generator | None,
) -> SkdBatch:
    """Token-level SKD: proposals outside the teacher's top-K are resampled by the teacher."""
    samples, replaced = sample_token_skd(
        student, teacher, student_prompts, teacher_prompts, cfg.student_max_new_tokens, top_k=cfg.skd_token_top_k,
        eos_id=tok.eos_id, pad_id=tok.pad_id, temperature=cfg.student_temperature, generator=generator,
    )
    return SkdBatch(samples.tokens, [sum(r) for r in replaced], [len(r) for r in replaced])
