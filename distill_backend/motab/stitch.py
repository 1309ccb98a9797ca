"""MOTAB stitching: student steps, then the revise marker, then the teacher's continuation.

The training text of a strayed trajectory keeps every student step up to and including the
breaching step (so the student sees its own mistake), then the revise marker ("However,"), then
what the teacher wrote from the safe context before the root cause. A trajectory without a breach
is returned unchanged. One intervention per trajectory (paper).

Two forms: :func:`stitch_text` for SFT on text, :func:`stitch_tokens` for token-level training in
the on-policy composition, where every token also carries its origin (who wrote it, and whether
it lies before the root cause). This module knows no model or tokenizer.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

from distill_backend.motab.config import MotabConfig

# Token origins of a stitched sequence. Kept as small ints so a batch of origins is a tensor.
ORIGIN_SAFE = 0
"""Student token before the root cause (on-policy and judged safe)."""
ORIGIN_STRAYED = 1
"""Student token from the root cause to the end of the breaching step (kept as context)."""
ORIGIN_MARKER = 2
"""Revise marker (and separator) inserted by MOTAB."""
ORIGIN_TEACHER = 3
"""Teacher continuation written from the safe context."""


class StitchedTokens(NamedTuple):
    """A stitched completion as token ids with each token's origin."""

    ids: list[int]
    origin: list[int]


def student_prefix_text(completion_text_through_breach: str, cfg: MotabConfig) -> str:
    """The student part of a stitched text: ends with the step delimiter, so the marker starts a step.

    A breaching step cut by EOS or the token budget has no delimiter; one is added.
    """
    text = completion_text_through_breach
    if not text.endswith(cfg.step_delimiter):
        text += cfg.step_delimiter
    return text


def bridge_text(completion_text_through_breach: str, cfg: MotabConfig) -> str:
    """Everything MOTAB inserts between the student's breaching step and the teacher's text."""
    missing = "" if completion_text_through_breach.endswith(cfg.step_delimiter) else cfg.step_delimiter
    return missing + cfg.revise_marker + cfg.marker_separator


def stitch_text(
    completion_text: str,
    breach_end_text: str | None,
    continuation: str,
    cfg: MotabConfig,
) -> str:
    """Stitch one trajectory as text.

    ``completion_text`` is the student's whole completion; ``breach_end_text`` the student text up
    to the end of the breaching step (None: no breach, and ``completion_text`` is returned as is);
    ``continuation`` the teacher's text from the safe context.
    """
    if breach_end_text is None:
        return completion_text
    if not completion_text.startswith(breach_end_text):
        raise ValueError("breach_end_text must be a prefix of completion_text")
    return breach_end_text + bridge_text(breach_end_text, cfg) + continuation


def stitch_tokens(
    student_ids: Sequence[int],
    breach_end: int | None,
    root_start: int,
    bridge_ids: Sequence[int],
    continuation_ids: Sequence[int],
) -> StitchedTokens:
    """Stitch one trajectory as token ids with origins.

    ``breach_end`` is the token index just after the breaching step (None: no breach, and the
    student ids come back unchanged, all marked safe); ``root_start`` the first token of the root
    cause step (the safe-context length); ``bridge_ids`` the tokenized :func:`bridge_text`.
    """
    ids = list(student_ids)
    if breach_end is None:
        return StitchedTokens(ids, [ORIGIN_SAFE] * len(ids))
    if not 0 <= root_start <= breach_end <= len(ids):
        raise ValueError(
            f"need 0 <= root_start ({root_start}) <= breach_end ({breach_end}) <= {len(ids)}"
        )
    origin = [ORIGIN_SAFE] * root_start + [ORIGIN_STRAYED] * (breach_end - root_start)
    origin += [ORIGIN_MARKER] * len(bridge_ids) + [ORIGIN_TEACHER] * len(continuation_ids)
    return StitchedTokens(ids[:breach_end] + list(bridge_ids) + list(continuation_ids), origin)
