"""MOTAB's pure algorithm against hand-computed numbers: monitor, boundary, backtracking, stitching."""

import math
import random

import pytest
import torch

from distill_backend.motab import (
    MotabConfig,
    StepSpan,
    backtrack,
    find_root_cause,
    first_breach,
    monitor_trajectory,
    oracle_value,
    result_positions,
    safety_boundary,
    score_step,
    segment_steps,
    stitch_text,
    stitch_tokens,
    topk_entropy,
    value_drops,
)
from distill_backend.motab.stitch import ORIGIN_MARKER, ORIGIN_SAFE, ORIGIN_STRAYED, ORIGIN_TEACHER
from exposure_env.errors import ConfigError

# -- config --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [("eps0", 0.0), ("eps0", -0.1), ("top_k", 0), ("top_k", 2.5), ("step_delimiter", ""),
     ("entropy_mode", "dynamic"), ("skd_gamma", 0.0), ("student_temperature", 0.0), ("teacher_temperature", -1.0),
     ("root_cause_v0", "zero"), ("value_mode", "median"), ("boundary_scaling", "log"), ("result_markers", ()),
     ("result_markers", ("=", "")), ("result_markers", "=")],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ConfigError, match=field) as info:
        MotabConfig(**{field: value})
    assert info.value.field == field
    assert repr(value) in str(info.value)  # the value received is in the message


def test_bad_choice_lists_the_allowed_values():
    with pytest.raises(ConfigError, match="'mean', 'min', 'result'.*'median'"):
        MotabConfig(value_mode="median")
    with pytest.raises(ConfigError, match="'none', 'length'.*'log'"):
        MotabConfig(boundary_scaling="log")


def test_paper_defaults_and_tiny_delimiter():
    cfg = MotabConfig()
    assert (cfg.step_delimiter, cfg.eps0, cfg.theta, cfg.top_k) == ("\n\n", 0.2, 1.0, 20)
    assert (cfg.revise_marker, cfg.skd_gamma, cfg.entropy_mode) == ("However,", 0.9, "topk")
    assert (cfg.value_mode, cfg.boundary_scaling) == ("mean", "none")  # the paper's monitor
    assert (cfg.student_temperature, cfg.teacher_temperature) == (1.0, 0.6)  # public code's teacher temperature
    assert MotabConfig(result_markers=["="]).result_markers == ("=",)  # JSON lists become tuples
    assert MotabConfig.tiny().step_delimiter == "\n"
    assert MotabConfig.tiny(eps0=0.3).eps0 == 0.3


# -- monitor -------------------------------------------------------------------------------------


def test_segment_steps_single_char_delimiter():
    texts = list("1+2=3\n3-5=8\n\\boxed{8}")
    spans = segment_steps(texts, "\n")
    assert spans == [StepSpan(0, 6), StepSpan(6, 12), StepSpan(12, len(texts))]
    assert ["".join(texts[s.start:s.end]) for s in spans] == ["1+2=3\n", "3-5=8\n", "\\boxed{8}"]


def test_segment_steps_delimiter_across_tokens_and_inside_a_token():
    assert segment_steps(["a", "\n", "\n", "b", "\n"], "\n\n") == [StepSpan(0, 3), StepSpan(3, 5)]
    # A token holding the delimiter plus more text ends its step whole.
    assert segment_steps(["ab", "c\n\nd", "e"], "\n\n") == [StepSpan(0, 2), StepSpan(2, 3)]
    assert segment_steps([], "\n") == []


def test_oracle_value_is_geometric_mean_probability():
    assert oracle_value([math.log(0.5), math.log(0.2)]) == pytest.approx(math.sqrt(0.1))
    assert oracle_value(torch.tensor([math.log(0.9)] * 5)) == pytest.approx(0.9)
    with pytest.raises(ValueError):
        oracle_value([])


def test_topk_entropy_renormalizes_over_the_top_k():
    probs = torch.tensor([0.5, 0.25, 0.25, 1e-6, 1e-6])
    logits = probs.log() + 3.0  # a shift must not matter
    assert float(topk_entropy(logits, 3)) == pytest.approx(1.5 * math.log(2), rel=1e-5)
    assert float(topk_entropy(logits, 1)) == pytest.approx(0.0, abs=1e-6)
    # k larger than the vocabulary uses the whole vocabulary; batched positions keep their axis.
    two = torch.tensor([[0.0, 0.0], [0.0, -1e4]])
    assert topk_entropy(two, 50).tolist() == pytest.approx([math.log(2), 0.0], abs=1e-5)


def test_safety_boundary_topk_and_static():
    cfg = MotabConfig(eps0=0.2, theta=1.0)
    assert safety_boundary(math.log(2), cfg) == pytest.approx(0.1)
    assert safety_boundary(0.0, cfg) == pytest.approx(0.2)
    assert safety_boundary(math.log(2), MotabConfig(theta=2.0)) == pytest.approx(0.05)
    assert safety_boundary(5.0, MotabConfig(entropy_mode="static")) == pytest.approx(0.2)


def test_first_breach_is_strict_and_first():
    assert first_breach([0.9, 0.15, 0.05], [0.1, 0.2, 0.2]) == 1
    assert first_breach([0.2, 0.3], [0.2, 0.2]) is None  # V == eps is not a breach
    assert first_breach([], []) is None


def test_monitor_trajectory_end_to_end():
    texts = list("ab\ncd\n")
    # step "ab\n": p = .9,.9,.9 -> V=.9 ; step "cd\n": p = .12,.12,.12 -> V=.12
    logprobs = torch.tensor([math.log(0.9)] * 3 + [math.log(0.12)] * 3)
    entropies = torch.tensor([0.0, 9.0, 9.0, math.log(2), 9.0, 9.0])  # only step starts matter
    result = monitor_trajectory(texts, logprobs, entropies, MotabConfig.tiny())
    assert result.spans == [StepSpan(0, 3), StepSpan(3, 6)]
    assert result.values == pytest.approx([0.9, 0.12])
    assert result.boundaries == pytest.approx([0.2, 0.1])
    assert result.breach is None  # .12 >= .1: the uncertain teacher tolerates the step
    static = monitor_trajectory(texts, logprobs, entropies, MotabConfig.tiny(entropy_mode="static"))
    assert static.breach == 1
    assert monitor_trajectory(texts, logprobs, entropies, MotabConfig.tiny(max_steps=1)).breach is None


# -- monitor options -------------------------------------------------------------------------------

# The example: step "7+3=0\n" whose only doubtful token is the result digit (p = 0.01).
STEP = list("7+3=0\n")
ONE_WRONG_DIGIT = [math.log(p) for p in (1.0, 1.0, 1.0, 1.0, 0.01, 1.0)]
NO_ENTROPY = [0.0] * 6


def _score(texts, logprobs, entropies, **overrides):
    return score_step(texts, torch.tensor(logprobs), torch.tensor(entropies), MotabConfig.tiny(**overrides))


def test_paper_value_dilutes_one_wrong_token_and_the_options_see_it():
    paper = _score(STEP, ONE_WRONG_DIGIT, NO_ENTROPY)
    assert paper.value == pytest.approx(0.01 ** (1 / 6)) and paper.value == pytest.approx(0.4642, abs=1e-4)
    assert paper.boundary == pytest.approx(0.2) and paper.value > paper.boundary  # missed
    assert paper.scored == [0, 1, 2, 3, 4, 5]
    low = _score(STEP, ONE_WRONG_DIGIT, NO_ENTROPY, value_mode="min")
    assert (low.value, low.scored) == (pytest.approx(0.01), [4]) and low.value < low.boundary
    result = _score(STEP, ONE_WRONG_DIGIT, NO_ENTROPY, value_mode="result")
    assert (result.value, result.scored) == (pytest.approx(0.01), [4])  # "0"; the newline is the delimiter
    scaled = _score(STEP, ONE_WRONG_DIGIT, NO_ENTROPY, boundary_scaling="length")
    assert scaled.value == pytest.approx(paper.value)
    assert scaled.boundary == pytest.approx(0.2 ** (1 / 6)) and scaled.boundary == pytest.approx(0.7647, abs=1e-4)
    assert scaled.value < scaled.boundary  # joint probability 0.01 < 0.2


def test_options_on_a_step_with_several_unsure_tokens():
    logprobs = [math.log(p) for p in (0.5, 1.0, 1.0, 1.0, 0.8, 1.0)]
    entropies = [0.3, 0.0, 0.0, 0.0, math.log(2), 0.0]
    paper = _score(STEP, logprobs, entropies)
    assert paper.value == pytest.approx(0.4 ** (1 / 6))
    assert paper.boundary == pytest.approx(0.2 * math.exp(-0.3))  # H at the step's first token
    low = _score(STEP, logprobs, entropies, value_mode="min")
    assert low.value == pytest.approx(0.5) and low.boundary == pytest.approx(0.2 * math.exp(-0.3))
    result = _score(STEP, logprobs, entropies, value_mode="result")
    assert result.value == pytest.approx(0.8) and result.boundary == pytest.approx(0.1)  # H at the result token
    both = _score(STEP, logprobs, entropies, value_mode="result", boundary_scaling="length", entropy_mode="static")
    assert both.boundary == pytest.approx(0.2)  # one result token: eps ** (1/1)
    assert _score(STEP, logprobs, entropies, value_mode="min", boundary_scaling="length").boundary == pytest.approx(
        low.boundary)


def test_min_takes_the_first_of_equally_unlikely_tokens():
    logprobs = [math.log(p) for p in (0.3, 1.0, 0.3)]
    assert _score(list("ab\n"), logprobs, [0.1, 0.2, 0.7], value_mode="min").scored == [0]


@pytest.mark.parametrize(
    "texts, expected",
    [
        (list("7+3=0\n"), [4]),
        (list("\\boxed{7}") + [""], [7, 8]),  # "7}"; the EOS (empty text) is dropped
        (["x ", "=1", "5", "\n\n"], [1, 2]),  # a token holding the marker and a result character counts
        (["so", " 3x", " =", " 15", ".", "\n\n"], [3, 4]),
        (list("a=b=c\n"), [4]),  # the last marker
        (["so", " we", "\n"], []),  # no marker
        (["a", "=", " ", "\n"], []),  # nothing but whitespace after it
    ],
)
def test_result_positions(texts, expected):
    assert result_positions(texts, ("=", "\\boxed{")) == expected


def test_result_mode_without_a_result_is_the_paper_value():
    texts, logprobs = ["so", " we", "\n"], [math.log(0.5), math.log(0.2), math.log(0.9)]
    paper = _score(texts, logprobs, [0.0] * 3)
    assert _score(texts, logprobs, [0.0] * 3, value_mode="result") == paper
    boxed = list("\\boxed{7}")
    logprobs = [0.0] * 7 + [math.log(0.04), math.log(0.25)]
    out = _score(boxed, logprobs, [0.0] * 9, value_mode="result", boundary_scaling="length")
    assert out.value == pytest.approx(0.1) and out.boundary == pytest.approx(0.2 ** 0.5)


def test_monitor_trajectory_uses_the_value_mode():
    texts = STEP + list("0-5=5\n")
    logprobs = torch.tensor(ONE_WRONG_DIGIT + [0.0] * 6)
    entropies = torch.zeros(12)
    assert monitor_trajectory(texts, logprobs, entropies, MotabConfig.tiny()).breach is None
    for mode in ("min", "result"):
        result = monitor_trajectory(texts, logprobs, entropies, MotabConfig.tiny(value_mode=mode))
        assert result.breach == 0 and result.values == pytest.approx([0.01, 1.0])
    scaled = monitor_trajectory(texts, logprobs, entropies, MotabConfig.tiny(boundary_scaling="length"))
    assert scaled.breach == 0 and scaled.boundaries == pytest.approx([0.2 ** (1 / 6)] * 2)


# -- backtracking ----------------------------------------------------------------------------------


def test_root_cause_is_the_largest_drop():
    cfg = MotabConfig()
    values = [0.9, 0.8, 0.3, 0.25]
    assert value_drops(values, cfg) == pytest.approx([-0.1, -0.1, -0.5, -0.05])
    assert find_root_cause(values, 3, cfg) == 2


def test_root_cause_v0_modes_differ_on_a_weak_first_step():
    values = [0.4, 0.35, 0.1]
    assert find_root_cause(values, 2, MotabConfig(root_cause_v0="one")) == 0  # 1 -> .4 is -.6
    assert find_root_cause(values, 2, MotabConfig(root_cause_v0="first")) == 2  # -.25 beats -.05
    assert value_drops(values, MotabConfig(root_cause_v0="first"))[0] == 0.0


def test_root_cause_ties_go_to_the_earliest_and_only_up_to_the_breach():
    cfg = MotabConfig(root_cause_v0="first")
    assert find_root_cause([0.8, 0.6, 0.4], 2, cfg) == 1  # two drops of .2
    # A later, larger drop after the breach is never blamed.
    assert find_root_cause([0.9, 0.5, 0.01], 1, cfg) == 1
    with pytest.raises(ValueError):
        find_root_cause([0.5], 1, cfg)


def test_backtrack_never_rewinds_past_the_question():
    rng = random.Random(0)
    cfg = MotabConfig()
    for _ in range(200):
        lengths = [rng.randint(1, 5) for _ in range(rng.randint(1, 8))]
        starts = [sum(lengths[:i]) for i in range(len(lengths))]
        spans = [StepSpan(s, s + n) for s, n in zip(starts, lengths)]
        values = [rng.random() for _ in spans]
        breach = rng.randrange(len(spans))
        result = backtrack(spans, values, breach, cfg)
        assert 0 <= result.root_cause <= breach
        assert 0 <= result.safe_length <= spans[breach].start
        assert result.safe_length == spans[result.root_cause].start
        assert result.distance == breach - result.root_cause
    # Blaming the first step rewinds to the bare prompt (0 completion tokens), not further.
    assert backtrack([StepSpan(0, 3), StepSpan(3, 6)], [0.05, 0.9], 0, cfg).safe_length == 0


# -- stitching -----------------------------------------------------------------------------------


def test_stitch_text_exact():
    cfg = MotabConfig.tiny()
    completion = "1+2=3\n3-5=7\n7+1=8\n\\boxed{8}"
    stitched = stitch_text(completion, "1+2=3\n3-5=7\n", "3-5=8\n8+1=9\n\\boxed{9}", cfg)
    assert stitched == "1+2=3\n3-5=7\nHowever,\n3-5=8\n8+1=9\n\\boxed{9}"
    # A breaching step cut without its delimiter gets one before the marker.
    assert stitch_text("1+2=4", "1+2=4", "1+2=3", cfg) == "1+2=4\nHowever,\n1+2=3"
    with pytest.raises(ValueError):
        stitch_text(completion, "9+9", "x", cfg)


def test_breach_free_rollout_is_unchanged():
    cfg = MotabConfig.tiny()
    assert stitch_text("1+2=3\n\\boxed{3}", None, "ignored", cfg) == "1+2=3\n\\boxed{3}"
    out = stitch_tokens([5, 6, 7], None, 0, [1], [2, 3])
    assert out.ids == [5, 6, 7] and out.origin == [ORIGIN_SAFE] * 3


def test_stitch_tokens_origins():
    out = stitch_tokens([10, 11, 12, 13, 14, 15, 16], breach_end=5, root_start=2,
                        bridge_ids=[90, 91], continuation_ids=[20, 21, 22])
    assert out.ids == [10, 11, 12, 13, 14, 90, 91, 20, 21, 22]
    assert out.origin == [ORIGIN_SAFE] * 2 + [ORIGIN_STRAYED] * 3 + [ORIGIN_MARKER] * 2 + [ORIGIN_TEACHER] * 3
    with pytest.raises(ValueError):
        stitch_tokens([1, 2], breach_end=1, root_start=2, bridge_ids=[], continuation_ids=[])
