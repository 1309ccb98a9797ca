"""``rollout="motab"`` for on-policy self-distillation (ATESD-Qwen3-v0): monitored, backtracked rollouts.

Plain OPSD trains on the student's whole rollout, including everything it writes after a mistake,
where the exposure-conditioned teacher's guidance is poor (reversed exposure bias). With
``rollout="motab"`` the same rollouts are monitored by that teacher (frozen weights, prompt with
the reference revealed at the current ratio alpha), cut at the first breach, and completed by the
teacher from the safe context before the root cause (:mod:`.pipeline`).

Which tokens get which loss (the batch carries one mask per loss):

=================================  =========================  =====================================
tokens (origin)                    loss                       why
=================================  =========================  =====================================
student steps before t* (SAFE)     the backend's divergence   on-policy, judged safe: plain OPSD
                                   (``distill_mask``)
student steps t*..breach (STRAYED) the divergence, or none    the root-cause step is where the
                                   when                       teacher's verdict is informative;
                                   ``loss_on_strayed_steps``  set False to use them as context only
                                   is False
student tokens after the breach    dropped from the sequence  reversed exposure bias: teacher
                                                              guidance on a strayed context
revise marker + teacher            cross-entropy, weight      teaches the recovery; the student
continuation (MARKER, TEACHER)     ``sft_weight``             did not write these tokens, so a
                                   (``sft_mask``)             divergence on them is off-policy
padding                            none                       -
=================================  =========================  =====================================

Each term is averaged over its own tokens pooled over the batch; the total is
``distill + sft_weight * sft`` (a batch without breaches is exactly the OPSD loss). Both terms are
evaluated by the fused loss (:func:`distill_backend.losses.fused_loss`, through the update step
:func:`distill_backend.opsd_step.opsd_step`), which takes the two masks.

The hook in ``Qwen3DistillBackend`` (owned elsewhere) is one call per update:
:func:`motab_opsd_batch` after sampling the student rollouts (teacher calls inside the teacher
context, e.g. ``disable_adapter()`` for LoRA); its :meth:`MotabOpsdBatch.step_batch` then goes to
the update step in place of the plain batch. This module knows token ids, models and loss masks;
not prompts, alpha or the env.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

from distill_backend.motab.config import MotabConfig
from distill_backend.motab.pipeline import MotabRecord, TokenizerInfo, motab_from_completions
from distill_backend.motab.stitch import ORIGIN_MARKER, ORIGIN_SAFE, ORIGIN_STRAYED, ORIGIN_TEACHER
from distill_backend.opsd_step import StepBatch
from distill_backend.rollout import PromptBatch, pad_left, pad_right


class MotabOpsdBatch(NamedTuple):
    """Stitched rollouts ready for the backend's forward passes, with per-token loss masks."""

    prompt: PromptBatch
    """Student prompts (left-padded)."""
    teacher_prompt: PromptBatch
    """Teacher prompts (left-padded), for the teacher logits of the distillation term."""
    completion_ids: torch.Tensor
    """(N, T) stitched completions, right-padded."""
    completion_mask: torch.Tensor
    """(N, T) bool: real tokens."""
    origin: torch.Tensor
    """(N, T) long: :data:`ORIGIN_SAFE` / ``STRAYED`` / ``MARKER`` / ``TEACHER``; -1 at padding."""
    distill_mask: torch.Tensor
    """(N, T) bool: tokens trained with the distillation divergence."""
    sft_mask: torch.Tensor
    """(N, T) bool: tokens trained with cross-entropy."""
    records: list[MotabRecord]

    def step_batch(self) -> StepBatch:
        """The batch for :func:`distill_backend.opsd_step.opsd_step` (one prompt row per sequence)."""
        return StepBatch(self.prompt, self.teacher_prompt, self.completion_ids, self.completion_mask,
                         self.distill_mask, self.sft_mask)


def completion_lists(completion_ids: torch.Tensor, completion_mask: torch.Tensor) -> list[list[int]]:
    """Right-padded rollouts (``distill_backend.rollout.Rollouts``) as one token list per row."""
    return [[t for t, m in zip(row, keep) if m] for row, keep in zip(completion_ids.tolist(), completion_mask.tolist())]


def loss_masks(origin: torch.Tensor, cfg: MotabConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """``(distill_mask, sft_mask)`` from token origins (the table in the module docstring)."""
    distill = origin == ORIGIN_SAFE
    if cfg.loss_on_strayed_steps:
        distill = distill | (origin == ORIGIN_STRAYED)
    sft = (origin == ORIGIN_MARKER) | (origin == ORIGIN_TEACHER)
    return distill, sft


@torch.no_grad()
def motab_opsd_batch(
    teacher: torch.nn.Module,
    student_prompts: Sequence[Sequence[int]],
    teacher_prompts: Sequence[Sequence[int]],
    completions: Sequence[Sequence[int]],
    tok: TokenizerInfo,
    cfg: MotabConfig,
    generator: torch.Generator | None,
    device: torch.device,
) -> MotabOpsdBatch:
    """Monitor the student's ``completions`` with the (exposure-conditioned) teacher, backtrack,
    let the teacher continue, and return the stitched batch with its loss masks."""
    out = motab_from_completions(teacher, teacher_prompts, completions, tok, cfg, generator)
    ids, mask = pad_right([s.ids for s in out.stitched], tok.pad_id, device)
    origin = torch.full(ids.shape, -1, dtype=torch.long)
    for row, stitched in enumerate(out.stitched):
        origin[row, : len(stitched.origin)] = torch.as_tensor(stitched.origin, dtype=torch.long)
    origin = origin.to(device)
    distill, sft = loss_masks(origin, cfg)
    return MotabOpsdBatch(
        pad_left(student_prompts, tok.pad_id, device), pad_left(teacher_prompts, tok.pad_id, device),
        ids, mask, origin, distill, sft, out.records,
    )
