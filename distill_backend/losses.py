"""Distillation losses: pure functions on teacher and student logits, and a chunked driver.

What this module knows: two logit tensors of shape ``(..., V)`` over the same vocabulary, a
validity mask, and (for the sampled-token loss) the sampled token ids. What it does not know:
models, prompts, tokenizers, reveal ratios, optimizers. The backend builds the logits and calls
:func:`distillation_loss`; nothing here reads global state or draws random numbers.

Two layers:

* Per-kind pure functions (:func:`forward_kl_clipped`, :func:`reverse_kl`, :func:`generalized_jsd`,
  :func:`sampled_token_loss`) map logits ``(..., V)`` to a per-position loss ``(...)`` with plain
  autograd. They are the definitions (SPEC section 1) and the reference the tests compare against.
* :func:`distillation_loss` evaluates one of them **chunk by chunk over the valid positions** inside
  a custom :class:`torch.autograd.Function`: each chunk's loss and its gradient with respect to the
  student logits are computed in the forward pass (closed form for forward KL, reverse KL and the
  sampled-token loss, with in-place fp32 buffers; autograd on the chunk for the JSD), the chunk's
  buffers are freed, and only the gradient (one ``(B, T, V)`` tensor in the logits' own dtype) is
  kept for backward. A plain Python loop over chunks would not bound memory, because autograd
  would keep every chunk's intermediates alive until ``backward``; the naive full computation
  keeps several ``(B, T, V)`` fp32 tensors (upcasts, two log-softmaxes, probabilities, pointwise
  terms). ``benchmarks/backend_throughput.py`` measures the peak memory of all three at Qwen3's
  151,936-entry vocabulary.

  The ``(B, T, V)`` gradient is the floor of any loss defined on logits (autograd needs it to
  backpropagate into ``lm_head``): for bf16 logits it is about a tenth of the naive peak, for fp32
  logits about a fifth. Going below needs the loss fused with the ``lm_head`` projection (as TRL's
  ``DistillationTrainer`` does on hidden states), which this logits-level interface does not do.

Conventions:

* All arithmetic runs in at least fp32 (bf16/fp16 logits are upcast chunk by chunk; float64 stays
  float64 so ``gradcheck`` works).
* The teacher is a constant: its logits are detached even when they carry ``requires_grad``.
* Reductions pool over the batch: the loss is the sum over valid positions divided by the number
  of valid positions in the whole batch (not a mean of per-sequence means), as SPEC section 1 says.
* Logits must be finite. A ``-inf`` logit gives ``0 * inf = nan`` in the pointwise terms; mask
  vocabulary entries with a large negative finite value instead.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch

from exposure_env.errors import ConfigError, check_choice, check_range

LOSS_KINDS: tuple[str, ...] = ("forward_kl", "reverse_kl", "jsd", "sampled_token")

PerPositionLoss = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


# --------------------------------------------------------------------------------------------
# Configuration and results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LossConfig:
    """Which divergence the student minimises, and how it is evaluated."""

    kind: str = "forward_kl"
    """One of :data:`LOSS_KINDS`. ``forward_kl`` (the OPSD paper's choice) is KL(p_T || p_S) with
    the pointwise clip ``tau``; ``reverse_kl`` is KL(p_S || p_T); ``jsd`` is TRL's generalized JSD
    with ``beta``; ``sampled_token`` is the policy-gradient form on the sampled tokens only."""
    tau: float | None = 0.05
    """Pointwise clip of the forward-KL terms ``min(p_T (log p_T - log p_S), tau)``. ``None`` or
    ``inf`` disables it. Used by ``forward_kl`` only."""
    beta: float = 0.5
    """Generalized-JSD interpolation in [0, 1] (TRL convention: 0 = forward KL, 1 = reverse KL).
    Used by ``jsd`` only."""
    temperature: float = 1.0
    """Both logits are divided by this before the divergence (and before every statistic), as the
    OPSD code does with its rollout temperature; the gradient is taken with respect to the raw
    student logits. 1.0 leaves them unchanged."""
    chunk_size: int = 256
    """Largest number of valid (batch, position) rows evaluated at once (see ``chunk_elements``)."""
    chunk_elements: int = 2**22
    """Cap on rows x V per chunk, so the chunk shrinks with the vocabulary: 256 rows of a tiny
    vocabulary, 27 rows of Qwen3's 151,936. Peak extra memory is about the ``(B, T, V)`` gradient in
    the logits' dtype plus three to four fp32 buffers of one chunk (about ten for ``jsd``), i.e.
    ~64 MB of buffers at the default cap."""

    def __post_init__(self) -> None:
        check_choice("loss", self.kind, LOSS_KINDS)
        if self.tau is not None and not (isinstance(self.tau, (int, float)) and self.tau == math.inf):
            check_range("tau", self.tau, 0.0, None, low_inclusive=False)
        check_range("beta", self.beta, 0.0, 1.0)
        check_range("loss_temperature", self.temperature, 0.0, None, low_inclusive=False)
        check_range("chunk_size", self.chunk_size, 1, None, integer=True)
        check_range("chunk_elements", self.chunk_elements, 1, None, integer=True)

    def rows_per_chunk(self, vocab_size: int) -> int:
        """Rows evaluated at once for a vocabulary of ``vocab_size`` entries (at least one)."""
        return max(1, min(self.chunk_size, self.chunk_elements // max(vocab_size, 1)))

    def per_position_fn(self) -> PerPositionLoss:
        """The pure per-position loss this config selects, as ``fn(student, teacher, tokens)``."""
        if self.kind == "forward_kl":
            return lambda s, t, _tokens: forward_kl_clipped(s, t, self.tau)
        if self.kind == "reverse_kl":
            return lambda s, t, _tokens: reverse_kl(s, t)
        if self.kind == "jsd":
            return lambda s, t, _tokens: generalized_jsd(s, t, self.beta)
        return sampled_token_loss

    def __call__(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        mask: torch.Tensor,
        sampled_tokens: torch.Tensor | None = None,
    ) -> "LossOutput":
        """Evaluate :func:`distillation_loss` with this configuration."""
        return _distillation_loss(self, student_logits, teacher_logits, mask, sampled_tokens)


class LossOutput(NamedTuple):
    """Result of :func:`distillation_loss`."""

    loss: torch.Tensor
    """Scalar: mean over valid tokens pooled over the batch; gradient flows to the student logits only."""
    per_token: torch.Tensor
    """``(B, T)`` per-token loss (fp32 or wider), detached, 0 at invalid positions."""
    mismatch: torch.Tensor
    """Scalar: fraction of valid tokens where argmax p_T != argmax p_S (first index on ties), detached."""
    student_confidence: torch.Tensor
    """Scalar: mean over valid tokens of the student's largest next-token probability, detached."""


# --------------------------------------------------------------------------------------------
# Pure per-position losses (plain autograd; logits (..., V) -> loss (...))
# --------------------------------------------------------------------------------------------


def _log_probs(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-softmax of both in a common dtype of at least fp32; the teacher is detached."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student and teacher logits must have the same shape; received {tuple(student_logits.shape)} "
            f"and {tuple(teacher_logits.shape)}"
        )
    dtype = torch.promote_types(torch.promote_types(student_logits.dtype, teacher_logits.dtype), torch.float32)
    log_q = torch.log_softmax(student_logits.to(dtype), dim=-1)
    log_p = torch.log_softmax(teacher_logits.detach().to(dtype), dim=-1)
    return log_q, log_p


def forward_kl_clipped(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float | None = 0.05
) -> torch.Tensor:
    """Forward KL(p_T || p_S) per position with the OPSD pointwise clip.

    ``sum_v min(p_T(v) (log p_T(v) - log p_S(v)), tau)``. The clip bounds the pull of any single
    vocabulary entry (a token the teacher likes but the student has nearly ruled out), which is
    what keeps the early, far-apart updates stable in the paper. A clipped entry contributes no
    gradient. ``tau=None`` or ``inf`` gives the plain forward KL.
    """
    log_q, log_p = _log_probs(student_logits, teacher_logits)
    p = log_p.exp()
    pointwise = p * (log_p - log_q)
    if tau is not None and tau != math.inf:
        pointwise = pointwise.clamp(max=tau)
    return pointwise.sum(dim=-1)


def reverse_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Reverse KL(p_S || p_T) per position (mode-seeking; no clip)."""
    log_q, log_p = _log_probs(student_logits, teacher_logits)
    return (log_q.exp() * (log_q - log_p)).sum(dim=-1)


def generalized_jsd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, beta: float = 0.5) -> torch.Tensor:
    """Generalized Jensen-Shannon divergence per position, in TRL's ``generalized_jsd_loss`` convention.

    For ``0 < beta < 1``: ``m = beta p_T + (1 - beta) p_S`` and
    ``JSD_beta = beta KL(p_T || m) + (1 - beta) KL(p_S || m)`` (GKD paper, eq. 1, as TRL computes it).
    The endpoints are defined separately, exactly as TRL does: ``beta = 0`` is the forward
    KL(p_T || p_S) (no clip) and ``beta = 1`` the reverse KL(p_S || p_T).

    The interior formula does **not** tend to the endpoints: as beta -> 0, m -> p_S and
    ``JSD_beta ~ beta * KL(p_T || p_S) -> 0`` (symmetrically at 1). So the loss jumps at both
    endpoints and, near them, beta mostly rescales the loss (an effective learning rate) rather
    than moving between the two KLs. This is reported against TRL (huggingface/trl#6780, docs
    clarified in #6781 rather than changed) and against ms-swift (#10078, which swapped the weights
    in #10213). We keep TRL's numbers so results are comparable with TRL runs; use the
    ``forward_kl`` / ``reverse_kl`` kinds for the pure divergences.
    """
    if beta == 0:
        return forward_kl_clipped(student_logits, teacher_logits, tau=None)
    if beta == 1:
        return reverse_kl(student_logits, teacher_logits)
    log_q, log_p = _log_probs(student_logits, teacher_logits)
    log_m = torch.logaddexp(log_q + math.log1p(-beta), log_p + math.log(beta))
    kl_teacher_mixture = (log_p.exp() * (log_p - log_m)).sum(dim=-1)
    kl_student_mixture = (log_q.exp() * (log_q - log_m)).sum(dim=-1)
    return beta * kl_teacher_mixture + (1.0 - beta) * kl_student_mixture


def sampled_token_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, sampled_tokens: torch.Tensor | None
) -> torch.Tensor:
    """Sampled-token (policy-gradient) distillation loss per position.

    With the student's own sample ``y`` at each position, the advantage is
    ``A = log p_T(y) - log p_S(y)`` (detached) and the loss is ``-A * log p_S(y)``. Minimising it
    raises ``log p_S(y)`` where the teacher likes ``y`` more than the student does (A > 0) and lowers
    it where the teacher likes it less; its expected gradient over ``y ~ p_S`` is the gradient of
    the reverse KL(p_S || p_T). The value itself is a surrogate (it can be negative), not a
    divergence estimate; the per-token reverse-KL estimate is ``-A``.
    """
    if sampled_tokens is None:
        raise ConfigError("sampled_tokens", "a tensor of token ids when loss='sampled_token'", None)
    log_q, log_p = _log_probs(student_logits, teacher_logits)
    index = sampled_tokens.long().unsqueeze(-1)
    log_q_y = log_q.gather(-1, index).squeeze(-1)
    advantage = (log_p.gather(-1, index).squeeze(-1) - log_q_y).detach()
    return -advantage * log_q_y


# --------------------------------------------------------------------------------------------
# Chunked driver
# --------------------------------------------------------------------------------------------


class _ChunkResult(NamedTuple):
    loss: torch.Tensor  # scalar, compute dtype
    per_token: torch.Tensor  # (B, T)
    mismatch: torch.Tensor  # scalar
    confidence: torch.Tensor  # scalar
    grad: torch.Tensor | None  # (B, T, V) in the student dtype, already divided by n_valid


# Chunk kernels: (log_q, log_p, tokens, need_grad) -> (per-row loss, d loss / d student logits or None).
# They receive fp32 log-probabilities they own and overwrite them in place, so a chunk costs about
# three (chunk, V) fp32 buffers. The gradient with respect to the logits equals the gradient with
# respect to log_q used as logits, because log_softmax's Jacobian depends only on softmax(x).
ChunkKernel = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None", bool], tuple[torch.Tensor, "torch.Tensor | None"]]


def _forward_kl_kernel(log_q, log_p, _tokens, need_grad, *, tau):
    p = log_p.exp()
    pointwise = log_p.sub_(log_q).mul_(p)  # p (log p - log q), in log_p's buffer
    if tau is not None and tau != math.inf:
        if need_grad:
            p.masked_fill_(pointwise > tau, 0.0)  # clipped entries carry no gradient (as clamp's)
        pointwise.clamp_(max=tau)
    losses = pointwise.sum(dim=-1)
    if not need_grad:
        return losses, None
    # d/dz_j sum_v c_v p_v (log p_v - log q_v) = q_j sum_v c_v p_v - c_j p_j; here p already holds c p.
    return losses, log_q.exp_().mul_(p.sum(dim=-1, keepdim=True)).sub_(p)


def _reverse_kl_kernel(log_q, log_p, _tokens, need_grad):
    log_ratio = log_p.neg_().add_(log_q)  # log q - log p, in log_p's buffer
    q = log_q.exp_()
    losses = torch.einsum("cv,cv->c", q, log_ratio)
    if not need_grad:
        return losses, None
    # d/dz_j KL(q || p) = q_j (log q_j - log p_j - KL).
    return losses, log_ratio.sub_(losses.unsqueeze(-1)).mul_(q)


def _sampled_token_kernel(log_q, log_p, tokens, need_grad):
    index = tokens.long().unsqueeze(-1)
    log_q_y = log_q.gather(-1, index)
    advantage = log_p.gather(-1, index) - log_q_y
    losses = (-advantage * log_q_y).squeeze(-1)
    if not need_grad:
        return losses, None
    # d/dz (-A log q_y) = -A (onehot(y) - q) with A held constant.
    return losses, log_q.exp_().mul_(advantage).scatter_add_(-1, index, -advantage)


def _autograd_kernel(log_q, log_p, tokens, need_grad, *, fn):
    """Any pure per-position loss, differentiated by autograd on the chunk (used for ``jsd``)."""
    with torch.enable_grad():
        log_q.requires_grad_(need_grad)
        losses = fn(log_q, log_p, tokens)
        grad = torch.autograd.grad(losses.sum(), log_q)[0] if need_grad else None
    return losses.detach(), grad


def _chunk_kernel(config: LossConfig) -> ChunkKernel:
    if config.kind == "forward_kl":
        return functools.partial(_forward_kl_kernel, tau=config.tau)
    if config.kind == "reverse_kl":
        return _reverse_kl_kernel
    if config.kind == "sampled_token":
        return _sampled_token_kernel
    return functools.partial(_autograd_kernel, fn=config.per_position_fn())


def _gather_log_probs(logits: torch.Tensor, rows: tuple[torch.Tensor, torch.Tensor], dtype: torch.dtype,
                      temperature: float = 1.0) -> torch.Tensor:
    """Log-softmax of the selected rows (divided by ``temperature``) as a fresh ``(rows, V)`` tensor
    of ``dtype``, computed in place."""
    chunk = logits[rows].to(dtype)
    if temperature != 1.0:
        chunk.div_(temperature)
    return chunk.sub_(torch.logsumexp(chunk, dim=-1, keepdim=True))


def _chunked_pass(
    student: torch.Tensor,
    teacher: torch.Tensor,
    rows: tuple[torch.Tensor, torch.Tensor],
    tokens: torch.Tensor | None,
    kernel: ChunkKernel,
    chunk_size: int,
    need_grad: bool,
    temperature: float = 1.0,
) -> _ChunkResult:
    """Loss, statistics and (optionally) d loss / d student over the valid rows, chunk by chunk.

    Only valid rows are gathered, so padding costs nothing; each chunk's gradient is written into
    the preallocated ``(B, T, V)`` gradient and the chunk's buffers are freed before the next.
    """
    batch_idx, pos_idx = rows
    n_valid = batch_idx.numel()
    compute = torch.promote_types(torch.promote_types(student.dtype, teacher.dtype), torch.float32)
    per_token = torch.zeros(student.shape[:2], dtype=compute, device=student.device)
    grad = torch.zeros(student.shape, dtype=student.dtype, device=student.device) if need_grad else None
    mismatches = torch.zeros((), dtype=compute, device=student.device)
    confidence = torch.zeros((), dtype=compute, device=student.device)
    scale = 1.0 / max(n_valid, 1)
    # d/d logits = (1/T) d/d (logits / T): the kernels differentiate with respect to the scaled logits.
    grad_scale = scale / temperature
    for start in range(0, n_valid, chunk_size):
        chunk_rows = (batch_idx[start : start + chunk_size], pos_idx[start : start + chunk_size])
        log_q = _gather_log_probs(student, chunk_rows, compute, temperature)
        log_p = _gather_log_probs(teacher, chunk_rows, compute, temperature)
        top_log_q, student_top = log_q.max(dim=-1)
        confidence += top_log_q.exp().sum()
        mismatches += (student_top != log_p.argmax(dim=-1)).sum()
        y_chunk = tokens[chunk_rows] if tokens is not None else None
        losses, chunk_grad = kernel(log_q, log_p, y_chunk, need_grad)
        per_token[chunk_rows] = losses
        if grad is not None:
            grad[chunk_rows] = chunk_grad.mul_(grad_scale).to(grad.dtype)
        del log_q, log_p, chunk_grad
    return _ChunkResult(per_token.sum() * scale, per_token, mismatches * scale, confidence * scale, grad)


class _ChunkedDistillation(torch.autograd.Function):
    """Loss forward with its gradient precomputed chunk by chunk; backward just scales it.

    The gradient is kept as one tensor in the student logits' dtype. It is handed to autograd
    (scaled in place) on the first backward; a second backward through a retained graph (e.g.
    ``gradcheck``) recomputes it from the saved inputs instead of reusing the consumed buffer.
    """

    @staticmethod
    def forward(ctx, student, teacher, batch_idx, pos_idx, tokens, kernel, chunk_size, temperature):  # type: ignore[override]
        result = _chunked_pass(student, teacher, (batch_idx, pos_idx), tokens, kernel, chunk_size, need_grad=True,
                               temperature=temperature)
        saved_tokens = tokens if tokens is not None else torch.empty(0)
        ctx.save_for_backward(student, teacher, batch_idx, pos_idx, saved_tokens)
        ctx.has_tokens = tokens is not None
        ctx.kernel, ctx.chunk_size, ctx.temperature = kernel, chunk_size, temperature
        ctx.grad = result.grad
        ctx.mark_non_differentiable(result.per_token, result.mismatch, result.confidence)
        return result.loss, result.per_token, result.mismatch, result.confidence

    @staticmethod
    def backward(ctx, grad_loss, *_unused):  # type: ignore[override]
        grad = ctx.grad
        ctx.grad = None
        if grad is None:
            student, teacher, batch_idx, pos_idx, tokens = ctx.saved_tensors
            rows = (batch_idx, pos_idx)
            tokens = tokens if ctx.has_tokens else None
            grad = _chunked_pass(student, teacher, rows, tokens, ctx.kernel, ctx.chunk_size, need_grad=True,
                                 temperature=ctx.temperature).grad
        grad.mul_(grad_loss.to(grad.dtype))
        return grad, None, None, None, None, None, None, None


def _validate_inputs(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor, tokens: torch.Tensor | None
) -> None:
    if student_logits.dim() != 3:
        raise ValueError(f"student_logits must have shape (B, T, V); received {tuple(student_logits.shape)}")
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(
            f"teacher_logits must have the student's shape {tuple(student_logits.shape)}; "
            f"received {tuple(teacher_logits.shape)}"
        )
    if tuple(mask.shape) != tuple(student_logits.shape[:2]):
        raise ValueError(f"mask must have shape {tuple(student_logits.shape[:2])}; received {tuple(mask.shape)}")
    if tokens is not None and tuple(tokens.shape) != tuple(student_logits.shape[:2]):
        raise ValueError(
            f"sampled_tokens must have shape {tuple(student_logits.shape[:2])}; received {tuple(tokens.shape)}"
        )


def _distillation_loss(
    config: LossConfig,
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    sampled_tokens: torch.Tensor | None,
) -> LossOutput:
    if config.kind == "sampled_token" and sampled_tokens is None:
        raise ConfigError("sampled_tokens", "a (B, T) tensor of token ids when loss='sampled_token'", None)
    tokens = sampled_tokens if config.kind == "sampled_token" else None
    _validate_inputs(student_logits, teacher_logits, mask, tokens)
    batch_idx, pos_idx = mask.to(torch.bool).nonzero(as_tuple=True)
    kernel = _chunk_kernel(config)
    rows_per_chunk = config.rows_per_chunk(student_logits.shape[-1])
    teacher = teacher_logits.detach()
    if student_logits.requires_grad and torch.is_grad_enabled():
        outputs = _ChunkedDistillation.apply(
            student_logits, teacher, batch_idx, pos_idx, tokens, kernel, rows_per_chunk, config.temperature
        )
        return LossOutput(*outputs)
    result = _chunked_pass(
        student_logits.detach(), teacher, (batch_idx, pos_idx), tokens, kernel, rows_per_chunk, need_grad=False,
        temperature=config.temperature,
    )
    return LossOutput(result.loss, result.per_token, result.mismatch, result.confidence)


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    *,
    kind: str = "forward_kl",
    tau: float | None = 0.05,
    beta: float = 0.5,
    sampled_tokens: torch.Tensor | None = None,
    temperature: float = 1.0,
    chunk_size: int = 256,
    chunk_elements: int = 2**22,
) -> LossOutput:
    """Distillation loss of student logits against (constant) teacher logits over valid positions.

    Args:
        student_logits: ``(B, T, V)``, any float dtype; position ``n`` predicts completion token ``n``.
        teacher_logits: ``(B, T, V)``, same positions; detached here.
        mask: ``(B, T)`` bool (or 0/1); False marks padding / prompt positions that must not count.
        kind, tau, beta, temperature, chunk_size, chunk_elements: see :class:`LossConfig` (validated there).
        sampled_tokens: ``(B, T)`` token ids the student sampled; required for ``sampled_token``.

    Returns:
        :class:`LossOutput`. Peak memory beyond the inputs is about one ``(B, T, V)`` gradient in the
        student's dtype plus a few ``chunk_size x V`` fp32 buffers (see the module docstring).
    """
    config = LossConfig(kind=kind, tau=tau, beta=beta, temperature=temperature, chunk_size=chunk_size,
                        chunk_elements=chunk_elements)
    return _distillation_loss(config, student_logits, teacher_logits, mask, sampled_tokens)
