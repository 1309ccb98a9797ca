"""Partial exposure: exactly which reference segments the teacher sees; the answer is always kept."""

from __future__ import annotations

import math

import pytest

from distill_backend.prompts import (
    PromptConfig,
    num_revealed,
    revealed_reference,
    split_segments,
    student_prompt,
    teacher_prompt,
)
from exposure_env.errors import ConfigError, DatasetError

SOLUTION = "4+6=0\n0-7=3\n3+1=4\n4-2=2\n\\boxed{2}"
STEPS = SOLUTION.split("\n")[:-1]


def test_split_segments_keeps_the_answer_line_apart():
    segments = split_segments(SOLUTION + "\n\n")
    assert segments.steps == tuple(STEPS) and segments.final == "\\boxed{2}"


@pytest.mark.parametrize("alpha, k", [(0.0, 0), (0.2, 0), (0.25, 1), (0.5, 2), (0.7, 2), (0.75, 3), (0.99, 3), (1.0, 4)])
def test_teacher_sees_exactly_the_first_floor_alpha_m_segments_and_the_answer(alpha, k):
    prompt = teacher_prompt("4+6-7+1-2", SOLUTION, alpha)
    for i, step in enumerate(STEPS):
        assert (step in prompt) == (i < k), (alpha, i)
    assert "\\boxed{2}" in prompt
    assert revealed_reference(SOLUTION, alpha) == "\n".join(STEPS[:k] + ["\\boxed{2}"])


@pytest.mark.parametrize("m", [1, 3, 7, 10])
@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.3, 0.7, 0.9, 1.0])
def test_num_revealed_is_floor(m, alpha):
    # 0.7 * 10 = 7.000000000000001 and 0.3 * 10 = 3.0000000000000004 in floats: floor, not round-off
    assert num_revealed(m, alpha) == math.floor(round(alpha * m, 9))


def test_endpoints():
    assert revealed_reference(SOLUTION, 0.0) == "\\boxed{2}"
    assert revealed_reference(SOLUTION, 1.0) == SOLUTION


@pytest.mark.parametrize("alpha", [-0.01, 1.01, float("nan"), float("inf")])
def test_alpha_out_of_range_raises_config_error(alpha):
    with pytest.raises(ConfigError, match="reveal_ratio"):
        teacher_prompt("1+1", "1+1=2\n\\boxed{2}", alpha)


def test_solution_without_boxed_answer_is_a_dataset_error():
    with pytest.raises(DatasetError):
        teacher_prompt("1+1", "1+1=2", 0.5)


def test_student_prompt_hides_the_solution():
    prompt = student_prompt("4+6-7+1-2")
    assert "4+6-7+1-2" in prompt and "boxed" not in prompt and "=" not in prompt


def test_chat_template_is_used_when_the_tokenizer_has_one():
    from distill_backend.tokenizer import build_char_tokenizer

    tokenizer = build_char_tokenizer()
    assert student_prompt("1+1", tokenizer) == "Q:1+1\nA:\n"  # no chat template: plain body + prefix
    tokenizer.chat_template = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}<|assistant|>"
    assert student_prompt("1+1", tokenizer) == "<|user|>Q:1+1\n<|assistant|>"
    plain = PromptConfig(use_chat_template=False)
    assert student_prompt("1+1", tokenizer, plain) == "Q:1+1\nA:\n"
    paper = teacher_prompt("1+1", "1+1=2\n\\boxed{2}", 1.0, None, PromptConfig.paper())
    assert "reference solution" in paper and "1+1=2" in paper


def test_exposure_levels_are_the_intervals_of_alpha_that_reveal_the_same_steps():
    from distill_backend.prompts import exposure_levels, revealed_reference

    levels = exposure_levels([4, 2, 3, 3])
    assert levels[0] == (0.0, 0.25) and levels[-2:] == [(0.75, 1.0), (1.0, 1.0)] and len(levels) == 7
    solutions = ["\n".join(f"step {i}" for i in range(m)) + "\n\\boxed{1}" for m in (2, 3, 4)]
    reveal = lambda alpha: tuple(revealed_reference(s, alpha) for s in solutions)  # noqa: E731
    for low, high in levels:
        inside = [low, (low + high) / 2, high - 1e-6] if high > low else [low]
        assert len({reveal(a) for a in inside}) == 1, (low, high)  # one context per level
    assert len({reveal(low) for low, _ in levels}) == len(levels)  # and a different one for each level
    with pytest.raises(ConfigError, match="segment_counts"):
        exposure_levels([])
