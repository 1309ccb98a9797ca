"""SFT / on-policy rKL stages, the rollout="motab" composition's masks and loss, the bias helpers."""

import pytest
import torch

from distill_backend.losses import LossConfig
from distill_backend.motab import MotabConfig
from distill_backend.motab.composition import completion_lists, loss_masks, motab_opsd_batch
from distill_backend.motab.diagnostics import chain_next_step
from distill_backend.motab.exposure_bias import _curve, prefix_is_correct
from distill_backend.motab.lm import completion_batch
from distill_backend.motab.stitch import ORIGIN_MARKER, ORIGIN_SAFE, ORIGIN_STRAYED, ORIGIN_TEACHER
from distill_backend.motab.training import SftExample, TrainConfig, sft_loss, train_onpolicy_rkl, train_sft
from distill_backend.task import make_problem
from exposure_env.errors import ConfigError
from tests.motab.conftest import generator


def _clone(model):
    import copy

    return copy.deepcopy(model)


def test_sft_loss_counts_only_masked_tokens(tiny):
    tok, student, _, prompts = tiny
    a = SftExample(prompts[0], tok.encode("1+2=3\n"), [True] * 6)
    b = SftExample(prompts[0], tok.encode("1+2=3\n"), [False] * 3 + [True] * 3)
    with torch.no_grad():
        loss_a, count_a = sft_loss(student, [a], tok.pad_id)
        loss_b, count_b = sft_loss(student, [b], tok.pad_id)
        logits, targets, _ = completion_batch(student, [a.prompt], [a.completion], tok.pad_id)
    assert (count_a, count_b) == (6, 3)
    nll = torch.nn.functional.cross_entropy(logits[0].float(), targets[0], reduction="none")
    assert float(loss_a) == pytest.approx(float(nll.mean()), rel=1e-5)
    assert float(loss_b) == pytest.approx(float(nll[3:].mean()), rel=1e-5)


def test_sft_and_rkl_stages_update_the_student_only(tiny):
    tok, student, teacher, prompts = tiny
    model = _clone(student)
    before = [p.detach().clone() for p in model.parameters()]
    teacher_before = [p.detach().clone() for p in teacher.parameters()]
    examples = [SftExample(p, tok.encode("1+2=3\n\\boxed{3}") + [tok.eos_id], [True] * 15) for p in prompts]
    log = train_sft(model, examples, TrainConfig(updates=3, batch_size=2, lr=1e-2), tok.pad_id, generator(0))
    assert log.sequences == 6 and len(log.losses) == 3 and log.losses[-1] < log.losses[0]
    rkl = train_onpolicy_rkl(model, teacher, prompts, prompts, TrainConfig(updates=2, batch_size=2, max_new_tokens=6),
                             tok.eos_id, tok.pad_id, generator(1))
    assert len(rkl.losses) == 2 and all(loss >= 0 for loss in rkl.losses)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(teacher_before, teacher.parameters()))


def test_onpolicy_rkl_reports_every_training_rollout(tiny):
    tok, student, teacher, prompts = tiny
    seen = []
    train_onpolicy_rkl(_clone(student), teacher, prompts, prompts, TrainConfig(updates=3, batch_size=2, max_new_tokens=5),
                       tok.eos_id, tok.pad_id, generator(1), on_rollouts=lambda rows, c: seen.append((rows, c)))
    assert len(seen) == 3
    for rows, completions in seen:
        assert len(rows) == len(completions) == 2 and all(0 <= r < len(prompts) for r in rows)
        assert all(1 <= len(c) <= 5 for c in completions)


def test_train_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig(batch_size=0)


def test_loss_masks_follow_the_documented_table():
    origin = torch.tensor([[ORIGIN_SAFE, ORIGIN_STRAYED, ORIGIN_MARKER, ORIGIN_TEACHER, -1]])
    distill, sft = loss_masks(origin, MotabConfig.tiny())
    assert distill.tolist() == [[True, True, False, False, False]]
    assert sft.tolist() == [[False, False, True, True, False]]
    distill, _ = loss_masks(origin, MotabConfig.tiny(loss_on_strayed_steps=False))
    assert distill.tolist() == [[True, False, False, False, False]]


@pytest.mark.parametrize("eps0", [1e-30, 1.0])
def test_composition_loss_is_distill_plus_sft(tiny, eps0):
    from distill_backend.rollout import pad_left, sample_completions

    tok, student, teacher, prompts = tiny
    # The backend's own sampler produces the rollouts, as in the documented hook.
    rollouts = sample_completions(student, pad_left(prompts, tok.pad_id, torch.device("cpu")), max_new_tokens=10,
                                  eos_id=tok.eos_id, pad_id=tok.pad_id, generator=generator(2))
    completions = completion_lists(rollouts.completion_ids, rollouts.completion_mask)
    assert [len(c) for c in completions] == rollouts.lengths.tolist()
    cfg = MotabConfig.tiny(eps0=eps0, entropy_mode="static", teacher_max_new_tokens=6)
    batch = motab_opsd_batch(teacher, prompts, prompts, completions, tok, cfg, generator(3), torch.device("cpu"))
    assert torch.equal(batch.completion_mask, batch.origin >= 0)
    from distill_backend.opsd_step import opsd_step, teacher_of
    from distill_backend.rollout import completion_logits

    step = batch.step_batch()
    out = opsd_step(student, teacher_of(teacher), step, LossConfig(kind="reverse_kl"), sft_weight=0.5).loss
    s_logits = completion_logits(student, batch.prompt, batch.completion_ids, batch.completion_mask).detach()
    if eps0 < 1e-20:  # nothing strays: exactly the plain distillation loss on the student's tokens
        assert not batch.sft_mask.any() and float(out.sft) == 0.0
        assert [r.breach_step for r in batch.records] == [None] * len(prompts)
    else:
        assert batch.sft_mask.any()
        nll = torch.nn.functional.cross_entropy(s_logits.float().transpose(1, 2), batch.completion_ids, reduction="none")
        expected = float((nll * batch.sft_mask).sum() / batch.sft_mask.sum())
        assert float(out.sft) == pytest.approx(expected, rel=1e-5)
    assert float(out.loss) == pytest.approx(float(out.distill) + 0.5 * float(out.sft), rel=1e-5)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.0)
    trained = opsd_step(student, teacher_of(teacher), step, LossConfig(kind="reverse_kl"), optimizer=optimizer,
                        sft_weight=0.5)
    assert trained.grad_norm > 0 and student.model.embed_tokens.weight.grad is not None
    student.zero_grad(set_to_none=True)


def test_chain_next_step_is_locally_correct():
    problem = make_problem([7, 3, 5, 2], ["+", "-", "+"], 10, "medium")  # 7+3-5+2
    assert chain_next_step(problem, []) == "7+3=0"
    assert chain_next_step(problem, ["7+3=0"]) == "0-5=5"
    assert chain_next_step(problem, ["7+3=1"]) == "1-5=6"  # continues from the (wrong) value in context
    assert chain_next_step(problem, ["7+3=0", "0-5=5", "5+2=7"]) == "\\boxed{7}"
    assert chain_next_step(problem, ["7+3=0", "0-5=5", "5+2=7", "\\boxed{7}"]) is None
    assert chain_next_step(problem, ["garbage"]) is None
    assert prefix_is_correct(problem, ["7+3=0", "0-5=5"])
    assert not prefix_is_correct(problem, ["7+3=1"])


def test_position_curve_means_by_kind_and_position():
    curve = _curve([("own", 0, 1.0), ("own", 0, 0.0), ("teacher", 0, 1.0), ("own", 1, 0.5)], ("own", "teacher"))
    assert curve.positions == [0, 1]
    assert curve.series["own"] == [0.5, 0.5]
    assert curve.series["teacher"][0] == 1.0 and curve.counts["teacher"] == [1, 0]


def test_bias_measurements_run_and_count_contexts(tiny):
    from distill_backend.motab.exposure_bias import (
        measure_exposure_bias,
        measure_reversed_exposure_bias,
    )

    tok, student, teacher, _ = tiny
    problems = [make_problem([1, 2, 3], ["+", "-"], 10, "easy"), make_problem([4, 5, 6], ["-", "+"], 10, "easy")]
    prompts = [tok.encode(f"Q:{p.problem}\nA:\n") for p in problems]
    bias = measure_exposure_bias(student, teacher, problems, prompts, prompts, tok, generator(0), max_new_tokens=8)
    # Position 0 (the bare prompt) always has one context of each kind per problem.
    assert bias.nll.positions[0] == 0
    assert bias.nll.counts["own"][0] == bias.nll.counts["teacher"][0] == len(problems)
    assert all(0.0 <= a <= 1.0 for a in bias.step_accuracy.series["own"] if a == a)
    assert all(v > 0 for v in bias.nll.series["teacher"] if v == v)
    curve = measure_reversed_exposure_bias(teacher, student, problems, prompts, prompts, tok, generator(1),
                                           max_new_tokens=8)
    assert set(curve.series) == {"student_correct", "student_wrong", "teacher_own"}
