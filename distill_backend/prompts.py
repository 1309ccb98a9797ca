"""Student and teacher prompts, and partial exposure of the reference solution (docs/methods.md, section 2).

A reference solution is split into segments ``r_1..r_m`` (one per non-empty line) plus the final
answer line (the last line holding ``\\boxed{}``). At reveal ratio ``alpha`` the teacher sees the
first ``k = floor(alpha * m)`` segments **and always the final answer line**, then a transition
sentence asking it to solve the problem itself. ``alpha = 1`` is plain OPSD, ``alpha = 0`` shows
only the answer. The student sees the problem only.

Templates are a frozen :class:`PromptConfig`. The default wording is short on purpose: the tiny
models read one token per character, so every word of template costs sequence length.
:meth:`PromptConfig.paper` gives the OPSD paper's wording for real checkpoints. When the tokenizer
has a chat template (real Qwen3 checkpoints do), the prompt body is wrapped as one user message.

This module knows nothing about models or training; it maps text to text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, NamedTuple

from exposure_env.errors import ConfigError, DatasetError, check_range


class Segments(NamedTuple):
    steps: tuple[str, ...]
    """The reasoning segments r_1..r_m (final answer line excluded)."""
    final: str
    """The final answer line (contains ``\\boxed{}``); always shown to the teacher."""


@dataclass(frozen=True)
class PromptConfig:
    """Prompt templates. ``{problem}``, ``{reference}`` and ``{transition}`` are filled in."""

    student_template: str = "Q:{problem}\n"
    """Student prompt body."""
    teacher_template: str = "Q:{problem}\nRef:\n{reference}\n{transition}\n"
    """Teacher prompt body; ``{reference}`` is the revealed segments followed by the answer line."""
    transition: str = "Solve:"
    """Sentence after the revealed reference asking the teacher to reason to the same answer."""
    response_prefix: str = "A:\n"
    """Appended after the body when no chat template is used (the completion starts after it)."""
    use_chat_template: bool = True
    """Wrap the body as a user message with the tokenizer's chat template when it has one."""

    @classmethod
    def paper(cls) -> "PromptConfig":
        """The OPSD paper's wording (paraphrased), for real instruction-tuned checkpoints."""
        return cls(
            student_template="{problem}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}.",
            teacher_template="{problem}\n\nHere is a reference solution:\n{reference}\n\n{transition}",
            transition=(
                "After understanding the reference solution, please try to solve this problem using your own "
                "approach below. Reason step by step, and put your final answer within \\boxed{}."
            ),
            response_prefix="",
        )


DEFAULT_PROMPTS = PromptConfig()


def split_segments(solution: str) -> Segments:
    """Split a reference solution into reasoning segments and the final answer line."""
    lines = [line for line in solution.split("\n") if line.strip()]
    if not lines or "\\boxed{" not in lines[-1]:
        raise DatasetError(f"a reference solution must end with a line holding \\boxed{{}}; got {solution!r}")
    return Segments(tuple(lines[:-1]), lines[-1])


def num_revealed(num_segments: int, reveal_ratio: float) -> int:
    """``k = floor(alpha * m)``; the epsilon keeps e.g. 0.7 * 10 from flooring to 6."""
    check_range("reveal_ratio", reveal_ratio, 0.0, 1.0)
    return min(num_segments, int(math.floor(reveal_ratio * num_segments + 1e-9)))


def exposure_levels(segment_counts: Iterable[int]) -> list[tuple[float, float]]:
    """The distinct teacher contexts a reveal ratio can give on references with these numbers of
    reasoning segments: ``k = floor(alpha * m)`` changes only at the fractions ``k / m``, so the
    reveal ratios of one interval ``[low, high)`` (the last one is ``[1, 1]``) reveal the same steps of
    every reference. With 2-4 segments, for example, every alpha in [0.75, 1) is the same exposure."""
    counts = sorted({int(m) for m in segment_counts})
    if not counts or counts[0] < 0:
        raise ConfigError("segment_counts", "non-negative numbers of reasoning segments, at least one", counts)
    cuts = sorted({Fraction(k, m) for m in counts if m > 0 for k in range(m + 1)} | {Fraction(0), Fraction(1)})
    return [(float(low), float(high)) for low, high in zip(cuts, cuts[1:])] + [(1.0, 1.0)]


def revealed_reference(solution: str, reveal_ratio: float) -> str:
    """The part of the reference the teacher sees: first ``k`` segments plus the answer line."""
    steps, final = split_segments(solution)
    k = num_revealed(len(steps), reveal_ratio)
    return "\n".join(steps[:k] + (final,))


def _render(body: str, tokenizer, config: PromptConfig) -> str:
    if config.use_chat_template and tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": body}], tokenize=False, add_generation_prompt=True
        )
    return body + config.response_prefix


def student_prompt(problem: str, tokenizer=None, config: PromptConfig = DEFAULT_PROMPTS) -> str:
    """The student's context: the problem only."""
    return _render(config.student_template.format(problem=problem), tokenizer, config)


def teacher_prompt(
    problem: str, solution: str, reveal_ratio: float, tokenizer=None, config: PromptConfig = DEFAULT_PROMPTS
) -> str:
    """The teacher's context at reveal ratio ``alpha`` (raises ``ConfigError`` outside [0, 1])."""
    reference = revealed_reference(solution, reveal_ratio)
    body = config.teacher_template.format(problem=problem, reference=reference, transition=config.transition)
    return _render(body, tokenizer, config)
