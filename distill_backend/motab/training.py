"""Student training for MOTAB and its baselines: SFT on synthesized texts, on-policy reverse KL.

Budgets are counted in **updates x batch size** (sequences): every method gets the same number of
optimizer updates on batches of the same size (:class:`TrainConfig`). SFT draws its batches from a
fixed pool of synthesized examples (epochs of seeded permutations); the on-policy stage samples a
fresh batch of student rollouts for every update.

This module knows models, token ids and the loss functions; nothing about the task or prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import torch

from distill_backend.losses import distillation_loss
from distill_backend.motab.lm import completion_batch, eval_mode, sample
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


def sft_loss(model: torch.nn.Module, batch: Sequence[SftExample], pad_id: int) -> tuple[torch.Tensor, int]:
    """Cross-entropy over the masked completion tokens, pooled over the batch; and the token count."""
    logits, targets, mask = completion_batch(model, [e.prompt for e in batch], [e.completion for e in batch], pad_id)
    weights = torch.zeros_like(mask)
    for row, example in enumerate(batch):
        weights[row, : len(example.loss_mask)] = torch.as_tensor(example.loss_mask, dtype=torch.bool)
    weights = weights & mask
    count = int(weights.sum())
    nll = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")
    return (nll * weights).sum() / max(count, 1), count


def _step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, clip: float) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()


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
        batch = [examples[i] for i in order[: cfg.batch_size]]
        order = order[cfg.batch_size:]
        loss, count = sft_loss(model, batch, pad_id)
        _step(model, optimizer, loss, cfg.grad_clip)
        losses.append(float(loss.detach()))
        tokens += count
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
    losses, tokens = [], 0
    for _ in range(cfg.updates):
        rows = torch.randint(len(student_prompts), (cfg.batch_size,), generator=generator).tolist()
        s_prompts = [student_prompts[r] for r in rows]
        t_prompts = [teacher_prompts[r] for r in rows]
        completions = sample(student, s_prompts, cfg.max_new_tokens, eos_id=eos_id, pad_id=pad_id,
                             temperature=cfg.temperature, generator=generator).tokens
        if on_rollouts is not None:
            on_rollouts(rows, completions)
        with torch.no_grad(), eval_mode(teacher):
            t_logits, _, _ = completion_batch(teacher, t_prompts, completions, pad_id)
        student.train()
        s_logits, _, mask = completion_batch(student, s_prompts, completions, pad_id)
        out = distillation_loss(s_logits, t_logits, mask, kind="reverse_kl")
        _step(student, optimizer, out.loss, cfg.grad_clip)
        losses.append(float(out.loss.detach()))
        tokens += int(mask.sum())
    student.eval()
    return StageLog(losses, cfg.updates * cfg.batch_size, tokens)
