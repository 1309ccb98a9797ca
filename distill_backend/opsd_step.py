"""The one on-policy self-distillation update step: teacher forward, student forward, fused loss, optimizer.

:func:`opsd_step` is the only place a training forward runs. The backend (``Qwen3DistillBackend``),
MOTAB's on-policy stage and SFT stage (:mod:`distill_backend.motab.training`) and the benchmarks
all call it: the completions come from the one decoder (:func:`distill_backend.rollout.sample_completions`),
the teacher scores them under ``no_grad`` in eval mode, the student scores them with gradients, and
:func:`distill_backend.losses.fused_loss` projects both hidden states chunk by chunk. With an
optimizer the step then backpropagates, clips the gradient norm and steps (skipped, with a reason,
when the loss or the gradient norm is not finite).

In a data-parallel run (``sync``, :class:`distill_backend.distributed.DataParallel`) each rank
passes its share of the batch: the student forward runs through DDP, the loss is normalised by the
global token counts, the reported loss statistics are averaged over ranks, and the decision to skip
a non-finite step is taken on the global loss, so every rank steps (or skips) together.

Which tokens get which loss comes with the batch: ``distill_mask`` (the divergence) and
``sft_mask`` (cross-entropy, MOTAB's revise marker and teacher continuation). A batch without a
teacher prompt is plain SFT.

This module knows models, prompt batches, token ids, the loss config and an optimizer; it knows
nothing about tasks, prompt wording, reveal ratios or the env's statistics.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, ContextManager, NamedTuple, Sequence

import torch

from distill_backend.distributed import DataParallel
from distill_backend.losses import Head, LossConfig, LossOutput, fused_loss
from distill_backend.rollout import PromptBatch, completion_hidden, eval_mode, output_head

TeacherContext = Callable[[], ContextManager[torch.nn.Module]]


class StepBatch(NamedTuple):
    """One update's sequences: prompts, completions and which tokens get which loss."""

    student_prompt: PromptBatch
    """Left-padded student prompts: one row per completion, or per question when ``repeats > 1``."""
    teacher_prompt: PromptBatch | None
    """Teacher prompts, same rows as ``student_prompt``; None for a batch without distillation."""
    completion_ids: torch.Tensor
    """(N, T) right-padded completions."""
    completion_mask: torch.Tensor
    """(N, T) bool: real completion tokens."""
    distill_mask: torch.Tensor
    """(N, T) bool: tokens trained with the divergence."""
    sft_mask: torch.Tensor | None = None
    """(N, T) bool: tokens trained with cross-entropy, or None."""
    repeats: int = 1
    """Completions per prompt row (consecutive rows share a prompt, which is then run once)."""


class StepResult(NamedTuple):
    """What one step computed (all detached)."""

    loss: LossOutput
    """Loss and its statistics (the divergence's over ``distill_mask``)."""
    grad_norm: float
    """Pre-clip gradient norm (0.0 when no optimizer step was attempted)."""
    reason: str
    """'' when healthy, else why the optimizer step was skipped."""


def _detach(out: LossOutput) -> LossOutput:
    return LossOutput(*(t.detach() for t in out))


def teacher_of(module: torch.nn.Module | None) -> TeacherContext | None:
    """A teacher context for a plain module (a frozen copy): the module itself."""
    return None if module is None else (lambda: contextlib.nullcontext(module))


def opsd_step(
    student: torch.nn.Module,
    teacher: TeacherContext | None,
    batch: StepBatch,
    loss: LossConfig,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    params: Sequence[torch.nn.Parameter] | None = None,
    grad_clip: float = 1.0,
    sft_weight: float = 1.0,
    sync: DataParallel | None = None,
) -> StepResult:
    """Score ``batch`` with the teacher (no grad) and the student, evaluate the fused loss, and, given
    an ``optimizer``, take one clipped step on ``params`` (default: the student's trainable ones).

    ``teacher`` yields the teacher module inside a context (e.g. peft's ``disable_adapter()`` for a
    LoRA student whose teacher is the base model); see :func:`teacher_of` for a plain module.
    Without an optimizer nothing is differentiated (statistics only). With ``sync`` (data-parallel)
    the batch is this rank's share and the returned loss scalars are global; ``per_token`` stays
    this rank's.
    """
    ids, mask = batch.completion_ids, batch.completion_mask
    teacher_hidden, teacher_head = None, None
    if batch.teacher_prompt is not None and teacher is not None:
        with torch.no_grad(), teacher() as model, eval_mode(model):
            teacher_hidden = completion_hidden(model, batch.teacher_prompt, ids, mask, batch.repeats)
            teacher_head = Head(*output_head(model))
    apply = optimizer is not None
    student.train()
    with torch.set_grad_enabled(apply):
        if sync is None:
            hidden, normalizers = completion_hidden(student, batch.student_prompt, ids, mask, batch.repeats), None
        else:
            hidden = sync.hidden(batch.student_prompt, ids, mask, batch.repeats)
            normalizers = sync.normalizers(batch.distill_mask, batch.sft_mask)
        out = fused_loss(hidden, teacher_hidden, Head(*output_head(student)), teacher_head, ids,
                         batch.distill_mask, loss, batch.sft_mask, sft_weight, normalizers)
    reported = _detach(out) if sync is None else sync.reduce(out)
    value = float(reported.loss)
    if not math.isfinite(value):
        return StepResult(reported, 0.0, "non-finite distillation loss")
    grad_norm, reason = 0.0, ""
    if apply:
        params = list(params) if params is not None else [p for p in student.parameters() if p.requires_grad]
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, grad_clip))
        if math.isfinite(grad_norm):
            optimizer.step()
        else:
            reason = "non-finite gradient norm"
    return StepResult(reported, grad_norm, reason)
