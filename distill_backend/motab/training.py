"""Student training for MOTAB and its baselines: SFT on synthesized texts, on-policy reverse KL.

Budgets are counted in **updates x batch size** (sequences): every method gets the same number of
optimizer updates on batches of the same size (:class:`TrainConfig`). SFT draws its batches from a
fixed pool of synthesized examples (epochs of seeded permutations); the on-policy stage samples a
fresh batch of student rollouts for every update.

Both stages take their optimizer steps through :func:`distill_backend.opsd_step.opsd_step` (SFT is
the step with a cross-entropy mask and no teacher), so the forward, the fused loss and the clipped
AdamW step are the backend's own. This module knows models, token ids and the training budgets;
nothing about the task or prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import torch

from distill_backend.losses import LossConfig
from distill_backend.motab.lm import model_device, sample
from distill_backend.opsd_step import StepBatch, opsd_step, teacher_of
from distill_backend.rollout import pad_left, pad_right
from exposure_env.errors import check_range


@dataclass(frozen=True)
class TrainConfig:
    """One training stage (SFT or on-policy reverse KL)."""

    updates: int = 150
    """Optimizer updates of the stage (the budget, with ``batch_size``)."""
    batch_size: int = 32
    """Sequences per update."""
    lr: float = 5e-4
    """AdamW learning rate (constant; a fresh optimizer per stage)."""
    grad_clip: float = 1.0
    """Gradient-norm clip."""
    max_new_tokens: int = 64
    """Rollout budget of the on-policy stage."""
    temperature: float = 1.0
    """Rollout temperature of the on-policy stage."""

    def __post_init__(self) -> None:
        check_range("updates", self.updates, 0, None, integer=True)
        check_range("batch_size", self.batch_size, 1, None, integer=True)
        check_range("lr", self.lr, 0.0, None, low_inclusive=False)
        check_range("grad_clip", self.grad_clip, 0.0, None, low_inclusive=False)
        check_range("max_new_tokens", self.max_new_tokens, 1, None, integer=True)
        check_range("temperature", self.temperature, 0.0, None, low_inclusive=False)


class SftExample(NamedTuple):
    """One SFT sequence: prompt ids, completion ids, and which completion tokens carry loss."""

    prompt: list[int]
    completion: list[int]
    loss_mask: list[bool]


class StageLog(NamedTuple):
    """Per-update losses of one stage, and the number of sequences and loss tokens it consumed."""

    losses: list[float]
    sequences: int
    tokens: int


def _sft_batch(batch: Sequence[SftExample], pad_id: int, device: torch.device) -> StepBatch:
    """Prompts, completions and the cross-entropy mask of SFT examples (nothing distilled)."""
    ids, mask = pad_right([e.completion for e in batch], pad_id, device)
    weights = torch.zeros_like(mask)
    for row, example in enumerate(batch):
        weights[row, : len(example.loss_mask)] = torch.as_tensor(example.loss_mask, dtype=torch.bool)
    return StepBatch(pad_left([e.prompt for e in batch], pad_id, device), None, ids, mask,
                     torch.zeros_like(mask), weights & mask)


def sft_loss(model: torch.nn.Module, batch: Sequence[SftExample], pad_id: int) -> tuple[torch.Tensor, int]:
    """Cross-entropy over the masked completion tokens, pooled over the batch (detached: the value
    :func:`train_sft` steps on); and the token count."""
    step = _sft_batch(batch, pad_id, model_device(model))
    return opsd_step(model, None, step, LossConfig()).loss.loss, int(step.sft_mask.sum())


def _optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, betas=(0.9, 0.99),
                             weight_decay=0.0)


def train_sft(
    model: torch.nn.Module,
    examples: Sequence[SftExample],
    cfg: TrainConfig,
    pad_id: int,
    generator: torch.Generator,
) -> StageLog:
    """``cfg.updates`` SFT updates on batches drawn from ``examples`` (seeded epochs, no repeats
    inside an epoch)."""
    if not examples:
        raise ValueError("SFT needs at least one example")
    optimizer = _optimizer(model, cfg)
    order: list[int] = []
    losses, tokens = [], 0
    model.train()
    for _ in range(cfg.updates):
        while len(order) < cfg.batch_size:
            order += torch.randperm(len(examples), generator=generator).tolist()
        batch = _sft_batch([examples[i] for i in order[: cfg.batch_size]], pad_id, model_device(model))
        order = order[cfg.batch_size:]
        step = opsd_step(model, None, batch, LossConfig(), optimizer=optimizer, params=list(model.parameters()),
                         grad_clip=cfg.grad_clip)
        losses.append(float(step.loss.loss))
        tokens += int(batch.sft_mask.sum())
    model.eval()
    return StageLog(losses, cfg.updates * cfg.batch_size, tokens)


def train_onpolicy_rkl(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    student_prompts: Sequence[Sequence[int]],
    teacher_prompts: Sequence[Sequence[int]],
    cfg: TrainConfig,
    eos_id: int,
    pad_id: int,
    generator: torch.Generator,
    on_rollouts: Callable[[list[int], list[list[int]]], None] | None = None,
) -> StageLog:
    """On-policy distillation: per update, the student samples a batch of completions and minimises
    the reverse KL(p_S || p_T) to the teacher on its own tokens (teacher frozen, under no_grad).

    ``on_rollouts(rows, completions)``, when given, sees every update's prompt indices and sampled
    completions (bookkeeping only, e.g. how many training texts end with the right answer)."""
    optimizer = _optimizer(student, cfg)
    device = model_device(student)
    losses, tokens = [], 0
    for _ in range(cfg.updates):
        rows = torch.randint(len(student_prompts), (cfg.batch_size,), generator=generator).tolist()
        s_prompts = [student_prompts[r] for r in rows]
        t_prompts = [teacher_prompts[r] for r in rows]
        completions = sample(student, s_prompts, cfg.max_new_tokens, eos_id=eos_id, pad_id=pad_id,
                             temperature=cfg.temperature, generator=generator).tokens
        if on_rollouts is not None:
            on_rollouts(rows, completions)
        ids, mask = pad_right(completions, pad_id, device)
        batch = StepBatch(pad_left(s_prompts, pad_id, device), pad_left(t_prompts, pad_id, device), ids, mask, mask)
        step = opsd_step(student, teacher_of(teacher), batch, LossConfig(kind="reverse_kl"), optimizer=optimizer,
                         params=list(student.parameters()), grad_clip=cfg.grad_clip)
        losses.append(float(step.loss.loss))
        tokens += int(mask.sum())
    student.eval()
    return StageLog(losses, cfg.updates * cfg.batch_size, tokens)
