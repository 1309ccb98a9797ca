"""Distillation losses: pure definitions on logits, and the fused path on hidden states.

What this module knows: hidden states, an output projection (weight ``(V, H)``, optional bias),
logits over one vocabulary, validity masks and token ids. What it does not know: models, prompts,
tokenizers, reveal ratios, optimizers. Nothing here reads global state or draws random numbers.

Two layers:

* Per-kind pure functions (:func:`forward_kl_clipped`, :func:`reverse_kl`, :func:`generalized_jsd`,
  :func:`sampled_token_loss`) map logits ``(..., V)`` to a per-position loss ``(...)`` with plain
  autograd. With :func:`unfused_loss` (project everything, then apply them) they are the
  definitions (docs/methods.md, section 1) and the reference the tests compare against.
* :func:`fused_loss` is what training runs. Student and teacher hidden states of the valid
  positions go through the output projection **tile by tile** (``rows x vocab_tile`` at a time,
  ``LossConfig.chunk_elements`` entries), so no ``(B, T, V)`` tensor (logits, probabilities or
  their gradient) ever exists. The forward makes two passes over the vocabulary tiles: the first
  folds each row's log-normaliser, argmax and (for the sampled-token and cross-entropy terms) the
  target logit; the second adds up the loss and the row sums its gradient needs. The backward
  makes a third pass that rebuilds each tile, forms the gradient with respect to the tile's logits
  in closed form (below) and folds it straight into the gradients of the hidden states and of
  the projection's weight; the weight's gradient is accumulated in fp32 one vocabulary tile at a
  time, so the only vocabulary-sized buffer is the gradient autograd receives. When the whole
  vocabulary fits one tile (tiny models) the first two passes are one.

  Closed forms, with ``z`` the student logits divided by the temperature ``T``, ``q = softmax(z)``,
  ``p`` the teacher's, and each gradient then multiplied by ``1/T``:

  ========================  =====================================================================
  forward KL, clip ``tau``  ``dL/dz_j = q_j sum_v c_v p_v - c_j p_j``, ``c_v = [p_v log(p_v/q_v) <= tau]``
  reverse KL                ``q_j (log q_j - log p_j - KL(q || p))``
  generalized JSD           ``(1 - beta) q_j (log q_j - log m_j - KL(q || m))``, ``m = beta p + (1 - beta) q``
  sampled token             ``-A (onehot(y)_j - q_j)``, ``A = log p(y) - log q(y)`` held constant
  cross-entropy (MOTAB)     ``softmax(raw logits)_j - onehot(y)_j`` (no temperature)
  ========================  =====================================================================

  The MOTAB mixed loss (``distill + sft_weight * cross-entropy``, the table in
  :mod:`distill_backend.motab.composition`) is the same call with an ``sft_mask``.

Conventions:

* The projection runs in the model's dtype (as the model's own ``lm_head`` would) and everything
  after it in at least fp32 (float64 stays float64 so ``gradcheck`` works).
* The teacher is a constant: its hidden states and head are detached.
* Reductions pool over the batch: each term is the sum over its valid positions divided by the
  number of those positions in the whole batch (not a mean of per-sequence means). In a
  data-parallel step the divisor is the count over all ranks (``normalizers`` of :func:`fused_loss`).
* Logits must be finite (a ``-inf`` logit gives ``0 * inf = nan`` in the pointwise terms).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F

from exposure_env.errors import ConfigError, check_choice, check_range, store_integers

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
    logits. 1.0 leaves them unchanged. The MOTAB cross-entropy term always uses the raw logits."""
    chunk_size: int = 256
    """Largest number of rows (valid positions) projected at once."""
    chunk_elements: int = 2**22
    """Cap on rows x vocabulary entries of one tile: the vocabulary is split into tiles of
    ``chunk_elements // rows`` entries (a tiny vocabulary is one tile; Qwen3's 151,936 entries are
    ten tiles of 256 rows). Peak working memory is a few fp32 tiles (16 MB each at the default)
    plus one vocabulary tile of the weight gradient in fp32."""

    def __post_init__(self) -> None:
        store_integers(self)
        check_choice("loss", self.kind, LOSS_KINDS)
        if self.tau is not None and not (isinstance(self.tau, (int, float)) and self.tau == math.inf):
            check_range("tau", self.tau, 0.0, None, low_inclusive=False)
        check_range("beta", self.beta, 0.0, 1.0)
        check_range("loss_temperature", self.temperature, 0.0, None, low_inclusive=False)
        check_range("chunk_size", self.chunk_size, 1, None, integer=True)
        check_range("chunk_elements", self.chunk_elements, 1, None, integer=True)

    def tile(self, rows: int, vocab_size: int, backward: bool = False) -> tuple[int, int]:
        """``(rows per chunk, vocabulary entries per tile)`` for ``rows`` valid positions. The backward
        takes up to four times the rows and a correspondingly narrower tile, which keeps its fp32
        weight-gradient accumulator (tile width x H) small."""
        chunk_rows = max(1, min(self.chunk_size * (4 if backward else 1), rows))
        return chunk_rows, max(1, min(vocab_size, self.chunk_elements // chunk_rows))

    @property
    def clip(self) -> float | None:
        """The forward-KL clip in effect (None = none; ``jsd`` at beta 0 is the unclipped forward KL)."""
        if self.kind != "forward_kl" or self.tau is None or self.tau == math.inf:
            return None
        return float(self.tau)

    @property
    def divergence(self) -> str:
        """The divergence actually computed: ``jsd`` at beta 0 / 1 is the plain forward / reverse KL."""
        if self.kind == "jsd" and self.beta in (0.0, 1.0):
            return "forward_kl" if self.beta == 0.0 else "reverse_kl"
        return self.kind

    def per_position_fn(self) -> PerPositionLoss:
        """The pure per-position loss this config selects, as ``fn(student, teacher, tokens)``."""
        if self.kind == "forward_kl":
            return lambda s, t, _tokens: forward_kl_clipped(s, t, self.tau)
        if self.kind == "reverse_kl":
            return lambda s, t, _tokens: reverse_kl(s, t)
        if self.kind == "jsd":
            return lambda s, t, _tokens: generalized_jsd(s, t, self.beta)
        return sampled_token_loss


class Head(NamedTuple):
    """An output projection: logits = hidden @ weight.T + bias."""

    weight: torch.Tensor
    """(V, H)."""
    bias: torch.Tensor | None = None
    """(V,) or None."""


class LossOutput(NamedTuple):
    """Result of :func:`fused_loss` / :func:`unfused_loss`."""

    loss: torch.Tensor
    """Scalar ``distill + sft_weight * sft``; gradient flows to the student's hidden states and head only."""
    per_token: torch.Tensor
    """``(B, T)`` per-token distillation loss (fp32 or wider), detached, 0 outside the distillation mask."""
    mismatch: torch.Tensor
    """Scalar: fraction of distilled tokens where argmax p_T != argmax p_S (first index on ties), detached."""
    student_confidence: torch.Tensor
    """Scalar: mean over distilled tokens of the student's largest next-token probability, detached."""
    distill: torch.Tensor
    """Scalar: the distillation term alone (pooled mean over the distillation mask), detached."""
    sft: torch.Tensor
    """Scalar: mean cross-entropy over the ``sft_mask`` tokens (0 without any), detached."""


class TokenScores(NamedTuple):
    """Per-token scores of given completion tokens."""

    logprobs: torch.Tensor
    """(N, T) fp32 log-probability of each token (0 at padding)."""
    extra: torch.Tensor | None
    """(N, T) fp32 ``per_position(logits)`` at each position (0 at padding), or None."""


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
# The unfused reference
# --------------------------------------------------------------------------------------------


def unfused_loss(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor | None,
    student_head: Head,
    teacher_head: Head | None,
    tokens: torch.Tensor,
    distill_mask: torch.Tensor,
    config: LossConfig,
    sft_mask: torch.Tensor | None = None,
    sft_weight: float = 1.0,
) -> LossOutput:
    """What :func:`fused_loss` computes, written plainly: full ``(B, T, V)`` logits, the pure
    per-position function, plain autograd. For tests and memory baselines, not for training."""
    dtype = torch.promote_types(student_hidden.dtype, torch.float32)
    student_logits = F.linear(student_hidden, *student_head).to(dtype)
    zero = student_logits.sum() * 0.0
    distill_mask = distill_mask.bool()
    if teacher_hidden is not None and distill_mask.any():
        teacher_logits = F.linear(teacher_hidden.detach(), *_detached(teacher_head)).to(dtype)
        s_scaled, t_scaled = student_logits / config.temperature, teacher_logits / config.temperature
        per_position = config.per_position_fn()(s_scaled, t_scaled, tokens)
        count = distill_mask.sum()
        distill = per_position[distill_mask].sum() / count
        per_token = torch.where(distill_mask, per_position.detach(), 0.0)
        log_q = torch.log_softmax(s_scaled.detach(), -1)
        mismatch = (log_q.argmax(-1) != t_scaled.argmax(-1))[distill_mask].to(dtype).sum() / count
        confidence = log_q.amax(-1).exp()[distill_mask].sum() / count
    else:
        distill, per_token = zero, torch.zeros(distill_mask.shape, dtype=dtype)
        mismatch = confidence = zero.detach()
    sft = zero
    if sft_mask is not None and sft_mask.any():
        nll = F.cross_entropy(student_logits.transpose(1, 2), tokens.long(), reduction="none")
        sft = nll[sft_mask.bool()].sum() / sft_mask.sum()
    return LossOutput(distill + sft_weight * sft, per_token, mismatch.detach(), confidence.detach(),
                      distill.detach(), sft.detach())


def _detached(head: Head | None) -> Head:
    assert head is not None
    return Head(head.weight.detach(), head.bias.detach() if head.bias is not None else None)


# --------------------------------------------------------------------------------------------
# The fused path
# --------------------------------------------------------------------------------------------


def _project(hidden: torch.Tensor, head: Head, start: int, stop: int, dtype: torch.dtype) -> torch.Tensor:
    """Logits of ``hidden`` (rows, H) for vocabulary entries ``start:stop``, as a fresh ``dtype`` tensor."""
    bias = head.bias[start:stop] if head.bias is not None else None
    return F.linear(hidden, head.weight[start:stop], bias).to(dtype)


class _RowStats(NamedTuple):
    """What the forward learns about each row (fp32 or wider vectors), reused by the backward."""

    s_lse: torch.Tensor  # log-normaliser of student logits / T (distill rows)
    t_lse: torch.Tensor  # log-normaliser of teacher logits / T (distill rows)
    reduction: torch.Tensor  # per-row sum the gradient needs: S (fKL), KL (rKL), KL(q||m) (JSD), A (sampled)
    sft_lse: torch.Tensor  # log-normaliser of the raw student logits (sft rows)


class _Spec(NamedTuple):
    """Everything the passes need besides the tensors autograd tracks."""

    config: LossConfig
    d_tokens: torch.Tensor | None
    s_tokens: torch.Tensor
    d_scale: float  # 1 / number of distilled rows (or the given normaliser)
    s_scale: float  # sft_weight / number of sft rows (or the given normaliser)
    compute: torch.dtype
    s_count: float = 1  # denominator of the reported cross-entropy mean


def _fold_max(values: torch.Tensor, start: int, best: torch.Tensor, arg: torch.Tensor) -> None:
    """Running max / argmax (first index on ties) over vocabulary tiles, in place."""
    tile_best, tile_arg = values.max(dim=-1)
    better = tile_best > best
    best.copy_(torch.where(better, tile_best, best))
    arg.copy_(torch.where(better, tile_arg + start, arg))


def _fold_lse(values: torch.Tensor, lse: torch.Tensor) -> None:
    """Running log-sum-exp over vocabulary tiles, in place."""
    lse.copy_(torch.logaddexp(lse, torch.logsumexp(values, dim=-1)))


def _gather_target(values: torch.Tensor, tokens: torch.Tensor, start: int, out: torch.Tensor) -> None:
    """``out[r] = values[r, tokens[r] - start]`` for the rows whose token falls in this tile."""
    inside = (tokens >= start) & (tokens < start + values.shape[-1])
    index = (tokens - start).clamp(0, values.shape[-1] - 1).unsqueeze(-1)
    out.copy_(torch.where(inside, values.gather(-1, index).squeeze(-1), out))


def _distill_terms(kind: str, log_q: torch.Tensor, log_p: torch.Tensor, config: LossConfig):
    """Per-row loss and per-row gradient sum of one tile (both fp32 vectors). Overwrites both inputs:
    a tile costs about three ``(rows, tile)`` buffers."""
    if kind == "forward_kl":
        p = log_p.exp()
        pointwise = log_p.sub_(log_q).mul_(p)  # p (log p - log q), in log_p's buffer
        clip = config.clip
        if clip is not None:
            p.masked_fill_(pointwise > clip, 0.0)  # clipped entries carry no gradient
            pointwise.clamp_(max=clip)
        return pointwise.sum(-1), p.sum(-1)
    if kind == "reverse_kl":
        log_ratio = log_p.neg_().add_(log_q)  # log q - log p
        kl = torch.einsum("rv,rv->r", log_q.exp_(), log_ratio)
        return kl, kl
    beta = config.beta  # interior JSD
    log_m = torch.logaddexp(log_q + math.log1p(-beta), log_p + math.log(beta))
    kl_pm = torch.einsum("rv,rv->r", log_p.exp(), log_p.sub_(log_m))
    kl_qm = torch.einsum("rv,rv->r", log_q.exp(), log_q.sub_(log_m))
    return beta * kl_pm + (1.0 - beta) * kl_qm, kl_qm


def _distill_grad(kind: str, log_q, log_p, tokens, start: int, reduction, config: LossConfig) -> torch.Tensor:
    """d loss / d (student logits / T) on one tile, per row (unscaled). Overwrites both inputs."""
    row_sum = reduction.unsqueeze(-1)
    if kind == "forward_kl":
        p = log_p.exp()
        clip = config.clip
        if clip is not None:
            p.masked_fill_(log_p.sub_(log_q).mul_(p) > clip, 0.0)
        return log_q.exp_().mul_(row_sum).sub_(p)  # q_j S - c_j p_j
    if kind == "reverse_kl":
        return log_p.neg_().add_(log_q).sub_(row_sum).mul_(log_q.exp_())  # q (log q - log p - KL)
    if kind == "sampled_token":  # the row sum is the advantage A: -A (onehot - q)
        return _add_at_targets(log_q.exp_().mul_(row_sum), tokens, start, -reduction)
    beta = config.beta
    log_m = torch.logaddexp(log_q + math.log1p(-beta), log_p + math.log(beta))
    return log_m.neg_().add_(log_q).sub_(row_sum).mul_(log_q.exp_()).mul_(1.0 - beta)  # (1-b) q (log q - log m - K)


def _add_at_targets(grad: torch.Tensor, tokens: torch.Tensor, start: int, values: torch.Tensor) -> torch.Tensor:
    """``grad[r, tokens[r] - start] += values[r]`` (in place) for the rows whose token is in this tile."""
    inside = (tokens >= start) & (tokens < start + grad.shape[-1])
    index = (tokens - start).clamp(0, grad.shape[-1] - 1).unsqueeze(-1)
    return grad.scatter_add_(-1, index, torch.where(inside, values, 0.0).unsqueeze(-1))


def _distill_forward(hidden, teacher, s_head: Head, t_head: Head, spec: _Spec):
    """Passes 1 and 2 over the distilled rows: per-row loss, statistics and the backward's row data."""
    config, compute, kind = spec.config, spec.compute, spec.config.divergence
    n, vocab = hidden.shape[0], s_head.weight.shape[0]
    rows, width = config.tile(n, vocab)
    inv_t = 1.0 / config.temperature
    device = hidden.device
    s_lse = torch.full((n,), -math.inf, dtype=compute, device=device)
    t_lse, s_max, t_max = s_lse.clone(), s_lse.clone(), s_lse.clone()
    s_arg = torch.zeros(n, dtype=torch.long, device=device)
    t_arg = s_arg.clone()
    s_y, t_y = s_lse.clone(), s_lse.clone()
    losses = torch.zeros(n, dtype=compute, device=device)
    reduction = torch.zeros(n, dtype=compute, device=device)
    for r0 in range(0, n, rows):
        r = slice(r0, min(r0 + rows, n))
        h, ht = hidden[r], teacher[r]
        tiles = []
        for v0 in range(0, vocab, width):  # pass 1: normalisers, argmax, target logits
            zs = _project(h, s_head, v0, v0 + width, compute).mul_(inv_t)
            zt = _project(ht, t_head, v0, v0 + width, compute).mul_(inv_t)
            _fold_lse(zs, s_lse[r])
            _fold_lse(zt, t_lse[r])
            _fold_max(zs, v0, s_max[r], s_arg[r])
            _fold_max(zt, v0, t_max[r], t_arg[r])
            if kind == "sampled_token":
                _gather_target(zs, spec.d_tokens[r], v0, s_y[r])
                _gather_target(zt, spec.d_tokens[r], v0, t_y[r])
            tiles.append((v0, zs, zt) if width >= vocab else (v0, None, None))  # one tile: keep it for pass 2
        if kind == "sampled_token":
            log_q_y, log_p_y = s_y[r] - s_lse[r], t_y[r] - t_lse[r]
            reduction[r] = log_p_y - log_q_y  # the advantage A
            losses[r] = -reduction[r] * log_q_y
            continue
        for v0, zs, zt in tiles:  # pass 2: loss and the gradient's row sums
            if zs is None:
                zs = _project(h, s_head, v0, v0 + width, compute).mul_(inv_t)
                zt = _project(ht, t_head, v0, v0 + width, compute).mul_(inv_t)
            log_q, log_p = zs.sub_(s_lse[r].unsqueeze(-1)), zt.sub_(t_lse[r].unsqueeze(-1))
            tile_loss, tile_sum = _distill_terms(kind, log_q, log_p, config)
            losses[r] += tile_loss
            reduction[r] += tile_sum
    mismatch = (s_arg != t_arg).to(compute).sum()
    confidence = (s_max - s_lse).exp().sum()
    return losses, mismatch, confidence, s_lse, t_lse, reduction


def _sft_forward(hidden, s_head: Head, spec: _Spec):
    """Pass 1 over the cross-entropy rows: log-normaliser of the raw logits and the target's logit."""
    n, vocab = hidden.shape[0], s_head.weight.shape[0]
    rows, width = spec.config.tile(n, vocab)
    lse = torch.full((n,), -math.inf, dtype=spec.compute, device=hidden.device)
    target = lse.clone()
    for r0 in range(0, n, rows):
        r = slice(r0, min(r0 + rows, n))
        for v0 in range(0, vocab, width):
            z = _project(hidden[r], s_head, v0, v0 + width, spec.compute)
            _fold_lse(z, lse[r])
            _gather_target(z, spec.s_tokens[r], v0, target[r])
    return lse - target, lse


def _backward_pass(d_hidden, s_hidden, teacher, s_head: Head, t_head: Head | None, stats: _RowStats, spec: _Spec,
                   scale: torch.Tensor, needs: tuple[bool, bool, bool, bool]):
    """Pass 3: gradients of the loss w.r.t. the distilled rows, the sft rows, the head's weight and bias.

    Vocabulary outer, rows inner: one vocabulary tile of the weight gradient is accumulated at a
    time (in fp32; straight into the returned gradient when the weight is fp32).
    """
    config, compute, kind = spec.config, spec.compute, spec.config.divergence
    weight = s_head.weight
    vocab, device = weight.shape[0], weight.device
    inv_t = 1.0 / config.temperature
    need_d, need_s, need_w, need_b = needs
    direct = weight.dtype == compute  # accumulate in place, no fp32 copy needed

    def accumulator(like: torch.Tensor, needed: bool) -> torch.Tensor | None:
        return torch.zeros(like.shape, dtype=compute, device=device) if needed else None

    grad_d, grad_s = accumulator(d_hidden, need_d), accumulator(s_hidden, need_s)
    grad_w = torch.zeros_like(weight) if need_w else None
    grad_b = torch.zeros_like(s_head.bias) if need_b else None
    segments = []  # (hidden rows, their gradient, tile -> d loss / d raw logits)
    if d_hidden.shape[0]:
        def distill_tile(r, v0, v1):
            zs = _project(d_hidden[r], s_head, v0, v1, compute).mul_(inv_t).sub_(stats.s_lse[r].unsqueeze(-1))
            zt = None
            if kind != "sampled_token":
                zt = _project(teacher[r], t_head, v0, v1, compute).mul_(inv_t).sub_(stats.t_lse[r].unsqueeze(-1))
            tokens = spec.d_tokens[r] if spec.d_tokens is not None else None
            return _distill_grad(kind, zs, zt, tokens, v0, stats.reduction[r], config).mul_(spec.d_scale * inv_t)
        segments.append((d_hidden, grad_d, distill_tile))
    if s_hidden.shape[0]:
        def sft_tile(r, v0, v1):
            q = _project(s_hidden[r], s_head, v0, v1, compute).sub_(stats.sft_lse[r].unsqueeze(-1)).exp_()
            return _add_at_targets(q, spec.s_tokens[r], v0, torch.full_like(stats.sft_lse[r], -1.0)).mul_(spec.s_scale)
        segments.append((s_hidden, grad_s, sft_tile))
    rows, width = config.tile(max((h.shape[0] for h, _, _ in segments), default=0), vocab, backward=True)
    for v0 in range(0, vocab if segments else 0, width):
        v1 = min(v0 + width, vocab)
        tile_w = (grad_w[v0:v1] if direct else torch.zeros((v1 - v0, weight.shape[1]), dtype=compute,
                                                           device=device)) if need_w else None
        for hidden, grad_h, tile_fn in segments:
            for r0 in range(0, hidden.shape[0], rows):
                r = slice(r0, min(r0 + rows, hidden.shape[0]))
                grad = tile_fn(r, v0, v1).mul_(scale).to(weight.dtype)  # d loss / d logits, in the logits' dtype
                if grad_h is not None:
                    grad_h[r] += grad @ weight[v0:v1]
                if tile_w is not None:
                    tile_w += grad.t() @ hidden[r]
                if grad_b is not None:
                    grad_b[v0:v1] += grad.sum(0)
                del grad
        if need_w and not direct:
            grad_w[v0:v1] = tile_w
    return _cast(grad_d, d_hidden), _cast(grad_s, s_hidden), grad_w, grad_b


def _cast(grad: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    return grad.to(like.dtype) if grad is not None else None


class _FusedLoss(torch.autograd.Function):
    """Loss forward (passes 1-2); the backward rebuilds the tiles (pass 3). See the module docstring."""

    @staticmethod
    def forward(ctx, d_hidden, s_hidden, weight, bias, teacher, t_weight, t_bias, spec):  # type: ignore[override]
        compute = spec.compute
        s_head, t_head = Head(weight, bias), Head(t_weight, t_bias)
        zero = torch.zeros((), dtype=compute, device=weight.device)
        if d_hidden.shape[0]:
            d_losses, mismatch, confidence, s_lse, t_lse, reduction = _distill_forward(
                d_hidden, teacher, s_head, t_head, spec)
            distill = d_losses.sum() * spec.d_scale
        else:
            empty = torch.zeros(0, dtype=compute, device=weight.device)
            d_losses, s_lse, t_lse, reduction = empty, empty, empty, empty
            distill, mismatch, confidence = zero, zero, zero
        if s_hidden.shape[0]:
            nll, sft_lse = _sft_forward(s_hidden, s_head, spec)
            sft_sum = nll.sum()
        else:
            sft_lse, sft_sum = torch.zeros(0, dtype=compute, device=weight.device), zero
        ctx.stats = _RowStats(s_lse, t_lse, reduction, sft_lse)
        ctx.spec = spec
        ctx.save_for_backward(d_hidden, s_hidden, weight, bias, teacher, t_weight, t_bias)
        loss = distill + sft_sum * spec.s_scale
        outputs = (loss, d_losses, mismatch * spec.d_scale, confidence * spec.d_scale, distill.clone(),
                   sft_sum / spec.s_count)
        ctx.mark_non_differentiable(*outputs[1:])
        return outputs

    @staticmethod
    def backward(ctx, grad_loss, *_unused):  # type: ignore[override]
        d_hidden, s_hidden, weight, bias, teacher, t_weight, t_bias = ctx.saved_tensors
        needs = (ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2],
                 bias is not None and ctx.needs_input_grad[3])
        t_head = Head(t_weight, t_bias) if teacher is not None else None
        grad_d, grad_s, grad_w, grad_b = _backward_pass(
            d_hidden, s_hidden, teacher, Head(weight, bias), t_head, ctx.stats, ctx.spec,
            grad_loss.to(ctx.spec.compute), needs)
        return grad_d, grad_s, grad_w, grad_b, None, None, None, None


def fused_loss(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor | None,
    student_head: Head,
    teacher_head: Head | None,
    tokens: torch.Tensor,
    distill_mask: torch.Tensor,
    config: LossConfig,
    sft_mask: torch.Tensor | None = None,
    sft_weight: float = 1.0,
    normalizers: tuple[float, float] | None = None,
) -> LossOutput:
    """Distillation loss (plus, with ``sft_mask``, weighted cross-entropy) from hidden states.

    Args:
        student_hidden: ``(B, T, H)`` student hidden states; position ``n`` predicts ``tokens[:, n]``.
        teacher_hidden: ``(B, T, H_t)`` teacher hidden states at the same positions (detached here);
            None when nothing is distilled (``distill_mask`` all False).
        student_head, teacher_head: the output projections (vocabularies must match).
        tokens: ``(B, T)`` completion token ids: the sampled tokens of ``sampled_token`` and the
            cross-entropy targets.
        distill_mask: ``(B, T)`` bool: positions trained with the divergence.
        config: :class:`LossConfig`.
        sft_mask: ``(B, T)`` bool: positions trained with cross-entropy (MOTAB's revise marker and
            teacher continuation), or None.
        sft_weight: weight of the cross-entropy term.
        normalizers: what the distillation and cross-entropy sums are divided by (and the
            mismatch and confidence sums); default: this batch's numbers of distilled and
            cross-entropy tokens. A data-parallel step passes the global counts over the world
            size (:meth:`distill_backend.distributed.DataParallel.normalizers`).

    Returns:
        :class:`LossOutput`; ``loss`` is differentiable with respect to ``student_hidden`` and the
        student head when those require gradients and grad mode is on.
    """
    _validate(student_hidden, teacher_hidden, student_head, teacher_head, tokens, distill_mask, sft_mask)
    compute = torch.promote_types(student_hidden.dtype, torch.float32)
    distill_mask = distill_mask.bool()
    d_rows = distill_mask.nonzero(as_tuple=True)
    s_rows = sft_mask.bool().nonzero(as_tuple=True) if sft_mask is not None else (d_rows[0][:0], d_rows[1][:0])
    n_d, n_s = d_rows[0].numel(), s_rows[0].numel()
    kind = config.divergence
    d_count, s_count = (max(n_d, 1), max(n_s, 1)) if normalizers is None else normalizers
    spec = _Spec(config, tokens[d_rows].long() if kind == "sampled_token" else None, tokens[s_rows].long(),
                 1.0 / d_count, float(sft_weight) / s_count, compute, s_count)
    d_hidden, s_hidden = student_hidden[d_rows], student_hidden[s_rows]
    if teacher_hidden is not None:
        teacher = teacher_hidden.detach()[d_rows]
        t_head = _detached(teacher_head)
    else:
        teacher, t_head = d_hidden.detach(), _detached(student_head)  # unused: no distilled rows
    bias = student_head.bias
    loss, d_losses, mismatch, confidence, distill, sft = _FusedLoss.apply(
        d_hidden, s_hidden, student_head.weight, bias, teacher, t_head.weight, t_head.bias, spec)
    per_token = torch.zeros(distill_mask.shape, dtype=compute, device=d_losses.device)
    per_token[d_rows] = d_losses
    return LossOutput(loss, per_token, mismatch, confidence, distill, sft)


def _validate(student_hidden, teacher_hidden, student_head, teacher_head, tokens, distill_mask, sft_mask) -> None:
    if student_hidden.dim() != 3:
        raise ValueError(f"student_hidden must have shape (B, T, H); received {tuple(student_hidden.shape)}")
    shape = tuple(student_hidden.shape[:2])
    for name, value in (("tokens", tokens), ("distill_mask", distill_mask), ("sft_mask", sft_mask)):
        if value is not None and tuple(value.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}; received {tuple(value.shape)}")
    if bool(distill_mask.any()):
        if teacher_hidden is None or teacher_head is None:
            raise ValueError("distilled positions need teacher_hidden and teacher_head")
        if tuple(teacher_hidden.shape[:2]) != shape:
            raise ValueError(f"teacher_hidden must have shape {shape} + (H,); received {tuple(teacher_hidden.shape)}")
        if teacher_head.weight.shape[0] != student_head.weight.shape[0]:
            raise ValueError(f"teacher and student vocabularies differ: {teacher_head.weight.shape[0]} vs "
                             f"{student_head.weight.shape[0]}")


@torch.no_grad()
def token_scores(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    per_position: Callable[[torch.Tensor], torch.Tensor] | None = None,
    chunk_elements: int = LossConfig.chunk_elements,
) -> TokenScores:
    """Log-probability of ``tokens`` (and ``per_position`` of the fp32 logits) at the valid positions,
    projecting ``chunk_elements // V`` rows at a time (whole vocabulary rows; no gradient)."""
    compute = torch.promote_types(hidden.dtype, torch.float32)
    rows = mask.bool().nonzero(as_tuple=True)
    selected, targets = hidden[rows], tokens[rows].long()
    logprobs = torch.zeros(mask.shape, dtype=compute, device=hidden.device)
    extra = torch.zeros(mask.shape, dtype=compute, device=hidden.device) if per_position is not None else None
    step = max(1, chunk_elements // weight.shape[0])
    for r0 in range(0, selected.shape[0], step):
        r = slice(r0, r0 + step)
        logits = F.linear(selected[r], weight, bias).to(compute)
        chunk_rows = (rows[0][r], rows[1][r])
        logprobs[chunk_rows] = torch.log_softmax(logits, -1).gather(-1, targets[r].unsqueeze(-1)).squeeze(-1)
        if extra is not None:
            extra[chunk_rows] = per_position(logits).to(compute)
    return TokenScores(logprobs, extra)
