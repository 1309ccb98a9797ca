"""MOTAB monitoring: split a completion into steps, score each step, find the first breach.

A step is scored by its oracle value V against the safety boundary eps. The paper's V is the
geometric-mean teacher probability of the step's tokens; ``MotabConfig.value_mode`` and
``boundary_scaling`` add options that let one wrong token of a step be seen (:func:`score_step`).

Pure functions on token texts, log-probabilities and logits. This module does not know which
model produced the numbers, what the prompts are, or how rollouts are sampled.

Conventions (used across :mod:`distill_backend.motab`): steps are 0-based; a step is the
half-open token span ``[start, end)`` of the completion; ``token_logprobs[i]`` is the teacher's
``log p_T(y_i | context, y_<i)`` and ``entropies[i]`` the entropy of the teacher's renormalized
top-k distribution that predicts ``y_i`` (so ``entropies[span.start]`` is "H at the step start").
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch

from distill_backend.motab.config import MotabConfig


class StepSpan(NamedTuple):
    """Token span ``[start, end)`` of one step inside a completion."""

    start: int
    end: int


class StepScore(NamedTuple):
    """The monitor's numbers for one step."""

    value: float
    """Oracle value V (``cfg.value_mode``)."""
    boundary: float
    """Safety boundary eps (``cfg.entropy_mode``, ``cfg.boundary_scaling``)."""
    scored: list[int]
    """Positions inside the step that V is computed over (one position for ``"min"``)."""


class MonitorResult(NamedTuple):
    """What the teacher saw while watching one trajectory."""

    spans: list[StepSpan]
    values: list[float]
    """Oracle value V of each monitored step (``cfg.value_mode``; paper: geometric-mean teacher
    probability)."""
    boundaries: list[float]
    """Safety boundary eps of each monitored step."""
    breach: int | None
    """Index of the first step with ``V < eps``; None when the trajectory never strays."""


def segment_steps(token_texts: Sequence[str], delimiter: str) -> list[StepSpan]:
    """Split a completion (given as the decoded text of each token) into step spans.

    A step ends with the token that completes the delimiter; a delimiter spread over several
    tokens (``"\\n"``, ``"\\n"``) is found because the step's accumulated text is searched. Steps
    stay token-aligned: a token holding the delimiter plus more text ends its step whole. Text after
    the last delimiter (no delimiter before EOS or the budget) forms a final step. Empty
    completions have no steps.
    """
    if not delimiter:
        raise ValueError("delimiter must be a non-empty string")
    spans: list[StepSpan] = []
    start = 0
    text = ""
    for i, piece in enumerate(token_texts):
        # Only the tail that could still complete a delimiter is searched, so a step with many
        # tokens costs O(len) in total instead of O(len^2).
        searched_from = max(0, len(text) - len(delimiter) + 1)
        text += piece
        if delimiter in text[searched_from:]:
            spans.append(StepSpan(start, i + 1))
            start, text = i + 1, ""
    if start < len(token_texts):
        spans.append(StepSpan(start, len(token_texts)))
    return spans


def oracle_value(step_logprobs: torch.Tensor | Sequence[float]) -> float:
    """``V = exp(mean_i log p_T(y_i | ...))``: the geometric-mean teacher probability of a step."""
    logprobs = torch.as_tensor(step_logprobs, dtype=torch.float64)
    if logprobs.numel() == 0:
        raise ValueError("a step has at least one token")
    return float(torch.exp(logprobs.mean()))


def result_positions(token_texts: Sequence[str], markers: Sequence[str]) -> list[int]:
    """Positions of a step's result tokens (see ``MotabConfig.result_markers``).

    A token belongs to the result when any of its characters lies after the end of the last marker
    occurrence in the step's text (a token holding both the marker and result characters counts);
    trailing tokens whose text is only whitespace (the delimiter) or empty (EOS) are dropped.
    Empty when the step has no marker or nothing but whitespace after it.
    """
    text = "".join(token_texts)
    cut = max((text.rfind(m) + len(m) for m in markers if m in text), default=-1)
    if cut < 0:
        return []
    positions, end = [], 0
    for i, piece in enumerate(token_texts):
        end += len(piece)
        if piece and end > cut:
            positions.append(i)
    while positions and not token_texts[positions[-1]].strip():
        positions.pop()
    return positions


def score_step(
    token_texts: Sequence[str],
    token_logprobs: torch.Tensor | Sequence[float],
    entropies: torch.Tensor | Sequence[float],
    cfg: MotabConfig,
) -> StepScore:
    """Oracle value and safety boundary of one step, as ``cfg`` defines them.

    ``token_logprobs[i]`` and ``entropies[i]`` belong to the step's i-th token. With the defaults
    this is the paper's monitor: ``V = oracle_value(all tokens)`` and ``eps`` from H at the step's
    first token.
    """
    logprobs = torch.as_tensor(token_logprobs, dtype=torch.float64)
    if logprobs.numel() == 0:
        raise ValueError("a step has at least one token")
    if cfg.value_mode == "min":
        scored = [int(torch.argmin(logprobs))]  # the first of equally unlikely tokens
    elif cfg.value_mode == "result":
        scored = result_positions(token_texts, cfg.result_markers) or list(range(len(logprobs)))
    else:
        scored = list(range(len(logprobs)))
    value = oracle_value(logprobs[scored])
    boundary = safety_boundary(float(entropies[scored[0]]), cfg)
    if cfg.boundary_scaling == "length":
        boundary = boundary ** (1.0 / len(scored))
    return StepScore(value, boundary, scored)


def topk_entropy(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Entropy (nats) of the softmax renormalized over the ``k`` largest logits, per position.

    ``logits`` has the vocabulary last; the result drops that axis. Computed in fp32 so bf16
    logits on GPU give the same boundary as fp32 ones on CPU.
    """
    k = min(int(k), logits.shape[-1])
    top = torch.topk(logits.float(), k, dim=-1).values
    logp = torch.log_softmax(top, dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def safety_boundary(entropy: float, cfg: MotabConfig) -> float:
    """``eps = eps0 * exp(-theta * H)``; ``entropy_mode="static"`` uses ``H = 0``.

    A confident teacher (low H) keeps the boundary near eps0; where the teacher itself is unsure
    (high H) a low oracle value is expected, so the boundary drops and the step is tolerated.
    """
    h = 0.0 if cfg.entropy_mode == "static" else float(entropy)
    return cfg.eps0 * math.exp(-cfg.theta * h)


def first_breach(values: Sequence[float], boundaries: Sequence[float]) -> int | None:
    """Index of the first step with ``V < eps`` (strict), or None."""
    for index, (value, eps) in enumerate(zip(values, boundaries)):
        if value < eps:
            return index
    return None


def monitor_trajectory(
    token_texts: Sequence[str],
    token_logprobs: torch.Tensor,
    entropies: torch.Tensor,
    cfg: MotabConfig,
) -> MonitorResult:
    """Segment, score and judge one completion (only its first ``cfg.max_steps`` steps)."""
    if len(token_texts) != len(token_logprobs) or len(token_texts) != len(entropies):
        raise ValueError(
            f"token_texts ({len(token_texts)}), token_logprobs ({len(token_logprobs)}) and "
            f"entropies ({len(entropies)}) must have one entry per completion token"
        )
    spans = segment_steps(token_texts, cfg.step_delimiter)[: cfg.max_steps]
    scores = [score_step(token_texts[s.start : s.end], token_logprobs[s.start : s.end], entropies[s.start : s.end], cfg)
              for s in spans]
    values = [score.value for score in scores]
    boundaries = [score.boundary for score in scores]
    return MonitorResult(spans, values, boundaries, first_breach(values, boundaries))
