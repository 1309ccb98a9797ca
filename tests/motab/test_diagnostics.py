"""Monitor quality against verifiable step errors: the chain task's labels and the recall/precision
arithmetic, on hand-built verdicts."""

import math

import pytest
import torch

from distill_backend.motab import MotabConfig, StepSpan
from distill_backend.motab.diagnostics import (
    chain_next_step,
    chain_step_errors,
    lower_auc,
    monitor_quality,
    revision_stats,
    step_result,
)
from distill_backend.motab.monitor import MonitorResult
from distill_backend.motab.pipeline import judge, monitor_batch, teacher_scores
from distill_backend.task import make_problem
from tests.motab.conftest import generator

PROBLEM = make_problem([7, 3, 5, 2], ["+", "-", "+"], 10, "medium")  # 7+3-5+2: 7+3=0, 0-5=5, 5+2=7


def test_step_result_parses_equations_and_the_boxed_answer():
    assert step_result("7+3=0") == ("=", "0")
    assert step_result(" 0 - 5 = 5 ") == ("=", "5")
    assert step_result("\\boxed{7}") == ("boxed", "7")
    assert step_result("7+3=") is None and step_result("However,") is None


def test_revision_stats_say_whether_a_revision_fixes_or_breaks_the_step():
    texts = [
        "7+3=0\n0-5=6\nHowever,\n0-5=5\n5+2=7\n\\boxed{7}",  # wrong step revised into the right one: a fix
        "7+3=0\nHowever,\n7+3=1\n1-5=6\n6+2=8\n\\boxed{8}",  # right step revised into a wrong one: a break
        "7+3=0\n0-5=5\n5+2=7\n\\boxed{7}",  # no revision
        "7+3=0\n0-5=6\nHowever,",  # a marker with nothing after it: the wrong step is not fixed
    ]
    stats = revision_stats(texts, [PROBLEM] * 4, [True, False, True, False])
    assert (stats.outputs, stats.revisions) == (4, 3)
    assert stats.with_revision == pytest.approx(0.75) and stats.revised_wrong == pytest.approx(2 / 3)
    assert stats.fixes == pytest.approx(1 / 3) and stats.breaks == pytest.approx(1 / 3)
    assert stats.accuracy_with_revision == pytest.approx(1 / 3) and stats.accuracy_without_revision == 1.0
    none = revision_stats(texts[2:3], [PROBLEM], [True])
    assert none.revisions == 0 and math.isnan(none.fixes) and math.isnan(none.accuracy_with_revision)
    with pytest.raises(ValueError, match="one entry per output"):
        revision_stats(texts, [PROBLEM], [True])


def test_chain_step_errors_are_local_result_errors():
    assert chain_step_errors(PROBLEM, ["7+3=0\n", "0-5=5\n", "5+2=7\n", "\\boxed{7}"]) == [False] * 4
    # A wrong result; the next step correctly continues the wrong value, so only the error is wrong.
    assert chain_step_errors(PROBLEM, ["7+3=0\n", "0-5=6\n", "6+2=8\n", "\\boxed{8}"]) == [False, True, False, False]
    # A wrong operand changes the result: wrong. A right result with a mis-copied left side: right.
    assert chain_step_errors(PROBLEM, ["7+4=1\n"]) == [True]
    assert chain_step_errors(PROBLEM, ["8+3=0\n"]) == [False]
    # Unparsable steps and everything after them are wrong, and so is a step after the answer.
    assert chain_step_errors(PROBLEM, ["7+3=\n", "0-5=5\n"]) == [True, True]
    assert chain_step_errors(PROBLEM, ["7+3=0\n", "0-5=5\n", "5+2=7\n", "\\boxed{7}\n", "7+1=8"])[-1] is True
    assert chain_step_errors(PROBLEM, ["7+3=0\n", "0-5=5\n", "\\boxed{5}"]) == [False, False, True]  # too early
    assert chain_next_step(PROBLEM, ["7+3=1"]) == "1-5=6"


def test_lower_auc_counts_ties_half():
    assert lower_auc([0.1], [0.9]) == 1.0 and lower_auc([0.9], [0.1]) == 0.0
    assert lower_auc([0.5], [0.5]) == 0.5
    assert lower_auc([0.1, 0.5, 0.95], [0.9, 0.8, 0.1]) == pytest.approx((2.5 + 2 + 0) / 9)
    assert math.isnan(lower_auc([], [0.3]))


def _verdict(values, breach, eps=0.2):
    spans = [StepSpan(i, i + 1) for i in range(len(values))]
    return MonitorResult(spans, values, [eps] * len(values), breach)


def test_monitor_quality_by_hand():
    verdicts = [
        _verdict([0.9, 0.1, 0.8], 1),  # breach exactly at the error; root cause = the error
        _verdict([0.9, 0.5], None),  # error missed
        _verdict([0.1, 0.9], 0),  # false alarm
        _verdict([0.95, 0.15, 0.05], 1),  # breach after the error; blamed step 1, not the error
    ]
    errors = [[False, True, False], [False, True], [False, False], [True, False, False]]
    q = monitor_quality(verdicts, errors, MotabConfig(root_cause_v0="one"))
    assert (q.steps, q.wrong_steps, q.trajectories, q.erroneous, q.breached) == (10, 3, 4, 3, 3)
    assert q.step_recall == pytest.approx(1 / 3)  # flagged wrong steps: T1 s1 only
    assert q.step_precision == pytest.approx(1 / 4)  # flagged: T1 s1, T3 s0, T4 s1, T4 s2
    assert q.breach_recall == pytest.approx(2 / 3) and q.breach_precision == pytest.approx(2 / 3)
    assert q.breach_f1 == pytest.approx(2 / 3)
    assert q.breach_at_error == pytest.approx(1 / 3) and q.root_cause_hit == pytest.approx(1 / 2)
    assert q.value_auc == pytest.approx(9.5 / 21)
    assert q.wrong_value_mean == pytest.approx(1.55 / 3) and q.right_value_mean == pytest.approx(3.8 / 7)


def test_monitor_quality_edge_cases():
    clean = monitor_quality([_verdict([0.9], None)], [[False]], MotabConfig())
    assert math.isnan(clean.breach_recall) and math.isnan(clean.breach_precision) and math.isnan(clean.breach_f1)
    assert math.isnan(clean.value_auc) and clean.erroneous == 0
    with pytest.raises(ValueError):
        monitor_quality([_verdict([0.9, 0.8], None)], [[False]], MotabConfig())
    with pytest.raises(ValueError):
        monitor_quality([_verdict([0.9], None)], [], MotabConfig())


def test_one_teacher_forward_judged_by_every_option(tiny):
    from distill_backend.motab.lm import sample

    tok, student, teacher, prompts = tiny
    completions = sample(student, prompts, 12, eos_id=tok.eos_id, pad_id=tok.pad_id, generator=generator(0)).tokens
    for overrides in ({}, {"value_mode": "min"}, {"value_mode": "result", "boundary_scaling": "length"},
                      {"entropy_mode": "static"}):
        cfg = MotabConfig.tiny(**overrides)
        scores = teacher_scores(teacher, prompts, completions, tok, cfg)
        assert judge(scores, completions, tok, cfg) == monitor_batch(teacher, prompts, completions, tok, cfg)
        if cfg.entropy_mode == "static":
            assert all(torch.equal(e, torch.zeros_like(e)) for e in scores.entropies)
