"""The MOTAB pipeline, SKD baselines and the OPSD composition on tiny random-init models."""

import dataclasses
import json

import pytest
import torch

from distill_backend.motab import MotabConfig, oracle_value
from distill_backend.motab.lm import completion_batch, sample, sample_token_skd, score_completions
from distill_backend.motab.pipeline import breach_stats, motab_from_completions, motab_rollouts, write_jsonl
from distill_backend.motab.skd import accept_step, step_skd_rollouts, token_skd_rollouts
from distill_backend.motab.stitch import ORIGIN_MARKER, ORIGIN_SAFE, ORIGIN_STRAYED, ORIGIN_TEACHER
from tests.motab.conftest import generator

CFG = MotabConfig.tiny(student_max_new_tokens=12, teacher_max_new_tokens=8)


def _student_completions(tiny, seed=0, budget=12):
    tok, student, _, prompts = tiny
    return sample(student, prompts, budget, eos_id=tok.eos_id, pad_id=tok.pad_id, generator=generator(seed)).tokens


def test_sampling_logprobs_match_scoring_and_stop_text(tiny):
    tok, student, _, prompts = tiny
    out = sample(student, prompts, 30, eos_id=tok.eos_id, pad_id=tok.pad_id, generator=generator(3),
                 stop_text="=", token_texts=tok.texts)
    scores = score_completions(student, prompts, out.tokens, tok.pad_id)
    for tokens, sampled, scored, finished in zip(out.tokens, out.logprobs, scores.logprobs, out.finished):
        assert torch.allclose(sampled, scored, atol=1e-4)  # left padding and the cache change nothing
        text = tok.decode(tokens)
        assert "=" not in text[:-1]  # nothing is written after the stop text
        assert finished == (tokens[-1] == tok.eos_id)
    again = sample(student, prompts, 30, eos_id=tok.eos_id, pad_id=tok.pad_id, generator=generator(3),
                   stop_text="=", token_texts=tok.texts)
    assert again.tokens == out.tokens  # randomness comes only from the generator


def test_no_breach_leaves_every_rollout_unchanged(tiny):
    tok, _, teacher, prompts = tiny
    completions = _student_completions(tiny)
    cfg = MotabConfig.tiny(eps0=1e-30, teacher_max_new_tokens=8)
    out = motab_from_completions(teacher, prompts, completions, tok, cfg, generator(1))
    assert [s.ids for s in out.stitched] == completions
    assert all(set(s.origin) == {ORIGIN_SAFE} for s in out.stitched)
    assert all(r.breach_step is None and r.stitched_text == r.student_text for r in out.records)


def test_breach_rewinds_and_stitches_with_the_teacher(tiny):
    tok, _, teacher, prompts = tiny
    completions = _student_completions(tiny)
    cfg = MotabConfig.tiny(eps0=1.0, entropy_mode="static", teacher_max_new_tokens=8)  # V < 1 always
    out = motab_from_completions(teacher, prompts, completions, tok, cfg, generator(1))
    scores = score_completions(teacher, prompts, completions, tok.pad_id)
    for ids, stitched, record, logp in zip(completions, out.stitched, out.records, scores.logprobs):
        assert record.breach_step == 0 and record.root_cause == 0 and record.backtrack_distance == 0
        first_end = next(i + 1 for i, t in enumerate(ids) if "\n" in tok.texts[t]) if any(
            "\n" in tok.texts[t] for t in ids) else len(ids)
        assert record.oracle_values[0] == pytest.approx(oracle_value(logp[:first_end]), rel=1e-5)
        origin = stitched.origin
        n_student = origin.count(ORIGIN_STRAYED)
        assert origin.count(ORIGIN_SAFE) == 0  # root cause 0: nothing before it is safe
        student_part = [t for t in ids[:n_student]]
        assert stitched.ids[:n_student] == student_part
        assert tok.eos_id not in stitched.ids[:n_student]
        bridge = tok.decode([t for t, o in zip(stitched.ids, origin) if o == ORIGIN_MARKER])
        assert bridge.endswith("However,\n")
        assert origin[-1] in (ORIGIN_TEACHER, ORIGIN_MARKER)
        assert record.stitched_text == tok.decode(stitched.ids)


def test_teacher_continuation_uses_the_teacher_temperature(tiny):
    tok, _, teacher, prompts = tiny
    completions = _student_completions(tiny)
    # Breach at step 0, root cause 0: the teacher continues from the bare prompt. A near-zero teacher
    # temperature must give its greedy continuation, whatever the student temperature.
    cfg = MotabConfig.tiny(eps0=1.0, entropy_mode="static", teacher_max_new_tokens=8, teacher_temperature=1e-6,
                           student_temperature=5.0)
    out = motab_from_completions(teacher, prompts, completions, tok, cfg, generator(1))
    greedy = sample(teacher, prompts, 8, eos_id=tok.eos_id, pad_id=tok.pad_id, temperature=0.0).tokens
    for stitched, expected in zip(out.stitched, greedy):
        assert [t for t, o in zip(stitched.ids, stitched.origin) if o == ORIGIN_TEACHER] == expected
    hot = motab_from_completions(teacher, prompts, completions, tok, dataclasses.replace(cfg, teacher_temperature=50.0),
                                 generator(1))
    assert [s.ids for s in hot.stitched] != [s.ids for s in out.stitched]


def test_motab_rollouts_are_reproducible_and_recorded(tiny, tmp_path):
    tok, student, teacher, prompts = tiny
    a = motab_rollouts(student, teacher, prompts, prompts, tok, CFG, generator(5))
    b = motab_rollouts(student, teacher, prompts, prompts, tok, CFG, generator(5))
    assert [s.ids for s in a.stitched] == [s.ids for s in b.stitched]
    stats = breach_stats(a.records)
    assert stats.trajectories == len(prompts) and 0.0 <= stats.breach_rate <= 1.0
    write_jsonl(a.records, tmp_path / "records.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert len(rows) == len(prompts)
    assert set(rows[0]) >= {"breach_step", "root_cause", "backtrack_distance", "oracle_values", "boundaries"}


def test_skd_acceptance_rule():
    assert accept_step(0.5, 0.5, 0.9)  # 0.5 > 0.45
    assert not accept_step(0.45, 0.5, 0.9)  # strict
    assert not accept_step(0.1, 0.8, 0.9)
    assert accept_step(0.1, 0.8, 0.1)


def test_step_skd_extremes(tiny):
    tok, student, teacher, prompts = tiny
    accept_all = step_skd_rollouts(student, teacher, prompts, prompts, tok, MotabConfig.tiny(
        skd_gamma=1e-30, student_max_new_tokens=12, max_steps=4), generator(2))
    assert sum(accept_all.interventions) == 0 and all(u >= 1 for u in accept_all.units)
    reject_all = step_skd_rollouts(student, teacher, prompts, prompts, tok, MotabConfig.tiny(
        skd_gamma=1e30, student_max_new_tokens=12, max_steps=4), generator(2))
    assert reject_all.interventions == reject_all.units and reject_all.intervention_rate == 1.0
    assert all(0 < len(c) <= 12 for c in reject_all.completions)


def test_token_skd_replaces_exactly_tokens_outside_teacher_topk(tiny):
    tok, student, teacher, prompts = tiny
    vocab = len(tok.texts)
    everything = token_skd_rollouts(student, teacher, prompts, prompts, tok,
                                    MotabConfig.tiny(skd_token_top_k=vocab, student_max_new_tokens=10), generator(4))
    assert sum(everything.interventions) == 0
    samples, replaced = sample_token_skd(student, teacher, prompts, prompts, 10, top_k=1, eos_id=tok.eos_id,
                                         pad_id=tok.pad_id, temperature=1.0, generator=generator(4))
    logits, _, _ = completion_batch(teacher, prompts, samples.tokens, tok.pad_id)
    for row, (tokens, flags) in enumerate(zip(samples.tokens, replaced)):
        assert len(flags) == len(tokens)
        for j, (token, was_replaced) in enumerate(zip(tokens, flags)):
            if not was_replaced:  # a kept proposal must be the teacher's top-1
                assert token == int(logits[row, j].argmax())
    assert any(any(r) for r in replaced)  # random proposals do leave the teacher's top-1
