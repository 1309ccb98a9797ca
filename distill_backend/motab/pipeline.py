"""The MOTAB pipeline: student rollouts, teacher monitoring, backtracking, teacher continuation.

For a batch of questions:

1. the student samples a whole completion from its prompt;
2. the teacher scores every completion token from *its* prompt (for plain MOTAB the same question;
   in the ATESD composition a prompt with part of the reference) and the completion is split into
   steps, each judged against the adaptive boundary (:mod:`.monitor`);
3. on the first breach, the root cause is found and the context is rewound before it
   (:mod:`.backtrack`); the teacher writes the rest of the solution from that safe context;
4. the training sequence is the student's steps through the breach, the revise marker, and the
   teacher's continuation (:mod:`.stitch`); a breach-free rollout is kept as it is.

Why whole completions first, when the paper describes the student writing "one step at a time":
sampling a step never depends on the monitor's verdicts on earlier steps (there is one intervention
per trajectory, and after it the student's later steps are discarded), so scoring a completion
after it is written yields exactly the same distribution of stitched texts as monitoring it step by
step, with one batched teacher forward instead of one per step. Step-by-step generation only saves
the student tokens written after a breach; the step-level SKD baseline, where verdicts do change the
context, writes step by step (:mod:`.skd`).

This module knows token ids, models and the MOTAB config; prompts arrive already tokenized, so it
knows nothing about the task or the prompt templates.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import NamedTuple, Sequence

import torch

from distill_backend.motab.backtrack import backtrack
from distill_backend.motab.config import MotabConfig
from distill_backend.motab.lm import CompletionScores, sample, score_completions
from distill_backend.motab.monitor import MonitorResult, monitor_trajectory
from distill_backend.motab.stitch import StitchedTokens, bridge_text, stitch_tokens


class MotabRecord(NamedTuple):
    """What happened to one trajectory (JSON-serializable; steps are 0-based)."""

    breach_step: int | None
    """First step with ``V < eps``; None when the trajectory never strayed."""
    root_cause: int | None
    """``t*``: the step rewound to (its start is the safe context)."""
    backtrack_distance: int | None
    """``breach_step - root_cause``."""
    num_steps: int
    """Monitored steps of the student completion."""
    oracle_values: list[float]
    boundaries: list[float]
    student_text: str
    stitched_text: str


class MotabBatch(NamedTuple):
    """MOTAB's output for a batch of questions, in input order."""

    stitched: list[StitchedTokens]
    """Training completions (token ids, with the origin of every token)."""
    student_tokens: list[list[int]]
    """The student's original completions."""
    records: list[MotabRecord]


class TokenizerInfo(NamedTuple):
    """The few tokenizer facts the pipeline needs, computed once per tokenizer."""

    tokenizer: object
    eos_id: int
    pad_id: int
    texts: list[str]
    """Decoded text of every vocabulary id (special tokens: "")."""

    @classmethod
    def of(cls, tokenizer) -> "TokenizerInfo":
        from distill_backend.motab.lm import token_text_table

        return cls(tokenizer, tokenizer.eos_token_id, tokenizer.pad_token_id, token_text_table(tokenizer))

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]  # type: ignore[operator]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.texts[i] for i in ids)


def teacher_scores(
    teacher: torch.nn.Module,
    teacher_prompts: Sequence[Sequence[int]],
    completions: Sequence[Sequence[int]],
    tok: TokenizerInfo,
    cfg: MotabConfig,
) -> CompletionScores:
    """The teacher's log-probability of every completion token and, with ``entropy_mode="topk"``,
    its top-k entropy there (one batched forward). Entropies are zeros in ``"static"`` mode."""
    top_k = cfg.top_k if cfg.entropy_mode == "topk" else None
    scores = score_completions(teacher, teacher_prompts, completions, tok.pad_id, top_k=top_k)
    if top_k is None:
        scores = scores._replace(entropies=[torch.zeros_like(logprobs) for logprobs in scores.logprobs])
    return scores


def judge(
    scores: CompletionScores, completions: Sequence[Sequence[int]], tok: TokenizerInfo, cfg: MotabConfig
) -> list[MonitorResult]:
    """Verdicts on every completion from already computed teacher scores, so several monitor
    options (``value_mode``, ``boundary_scaling``, ``eps0``) can judge one teacher forward.

    The scores must carry top-k entropies when ``cfg.entropy_mode == "topk"``.
    """
    return [monitor_trajectory([tok.texts[i] for i in ids], logprobs, entropies, cfg)
            for ids, logprobs, entropies in zip(completions, scores.logprobs, scores.entropies)]


def monitor_batch(
    teacher: torch.nn.Module,
    teacher_prompts: Sequence[Sequence[int]],
    completions: Sequence[Sequence[int]],
    tok: TokenizerInfo,
    cfg: MotabConfig,
) -> list[MonitorResult]:
    """Teacher verdicts on every completion (one batched forward)."""
    return judge(teacher_scores(teacher, teacher_prompts, completions, tok, cfg), completions, tok, cfg)


def motab_from_completions(
    teacher: torch.nn.Module,
    teacher_prompts: Sequence[Sequence[int]],
    completions: Sequence[Sequence[int]],
    tok: TokenizerInfo,
    cfg: MotabConfig,
    generator: torch.Generator | None,
) -> MotabBatch:
    """Monitor given student completions, backtrack the strayed ones and stitch (steps 2-4)."""
    verdicts = monitor_batch(teacher, teacher_prompts, completions, tok, cfg)
    plans: dict[int, tuple[int, int, int]] = {}  # row -> (root, root_start, breach_end)
    for row, verdict in enumerate(verdicts):
        if verdict.breach is None:
            continue
        rewind = backtrack(verdict.spans, verdict.values, verdict.breach, cfg)
        breach_end = verdict.spans[verdict.breach].end
        # An EOS closing the breaching step must not end the stitched text before the marker.
        if breach_end > rewind.safe_length and completions[row][breach_end - 1] == tok.eos_id:
            breach_end -= 1
        plans[row] = (rewind.root_cause, rewind.safe_length, breach_end)
    rows = sorted(plans)
    contexts = [list(teacher_prompts[r]) + list(completions[r][: plans[r][1]]) for r in rows]
    continuation = sample(
        teacher, contexts, cfg.teacher_max_new_tokens, eos_id=tok.eos_id, pad_id=tok.pad_id,
        temperature=cfg.teacher_temperature, generator=generator,
    ).tokens
    continuation_of = dict(zip(rows, continuation))
    stitched, records = [], []
    for row, (ids, verdict) in enumerate(zip(completions, verdicts)):
        student_text = tok.decode(ids)
        if row not in plans:
            stitched.append(stitch_tokens(ids, None, 0, [], []))
            records.append(MotabRecord(None, None, None, len(verdict.spans), verdict.values, verdict.boundaries,
                                       student_text, student_text))
            continue
        root, root_start, breach_end = plans[row]
        through_breach = tok.decode(ids[:breach_end])
        bridge = tok.encode(bridge_text(through_breach, cfg))
        out = stitch_tokens(ids, breach_end, root_start, bridge, continuation_of[row])
        stitched.append(out)
        assert verdict.breach is not None
        records.append(MotabRecord(verdict.breach, root, verdict.breach - root, len(verdict.spans), verdict.values,
                                   verdict.boundaries, student_text, tok.decode(out.ids)))
    return MotabBatch(stitched, [list(c) for c in completions], records)


def motab_rollouts(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    student_prompts: Sequence[Sequence[int]],
    teacher_prompts: Sequence[Sequence[int]],
    tok: TokenizerInfo,
    cfg: MotabConfig,
    generator: torch.Generator | None,
) -> MotabBatch:
    """The whole pipeline for one batch: student samples, then :func:`motab_from_completions`."""
    completions = sample(
        student, student_prompts, cfg.student_max_new_tokens, eos_id=tok.eos_id, pad_id=tok.pad_id,
        temperature=cfg.student_temperature, generator=generator,
    ).tokens
    return motab_from_completions(teacher, teacher_prompts, completions, tok, cfg, generator)


class BreachStats(NamedTuple):
    """Summary of many :class:`MotabRecord`."""

    trajectories: int
    breach_rate: float
    mean_backtrack_distance: float
    """Over breached trajectories (nan when none breached)."""
    mean_breach_step: float
    mean_root_cause: float


def breach_stats(records: Sequence[MotabRecord]) -> BreachStats:
    breached = [r for r in records if r.breach_step is not None]
    nan = float("nan")

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else nan

    return BreachStats(
        len(records),
        len(breached) / len(records) if records else nan,
        mean([float(r.backtrack_distance) for r in breached]),  # type: ignore[arg-type]
        mean([float(r.breach_step) for r in breached]),  # type: ignore[arg-type]
        mean([float(r.root_cause) for r in breached]),  # type: ignore[arg-type]
    )


def write_jsonl(records: Sequence[NamedTuple], path: str | os.PathLike) -> None:
    """Write records as JSON lines atomically (temporary file in the same folder, then rename)."""
    target = pathlib.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record._asdict()) + "\n")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
