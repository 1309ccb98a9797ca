"""The fixed-exposure study's summary: paired differences and the verdict on each of the paper's claims,
with the mismatch compared on the same student (the early part of each run)."""

import gzip
import json

import pytest

from benchmarks import fixed_exposure
from benchmarks.fixed_exposure import Args, early_mean, summarize

ALPHAS = (0.0, 0.5, 1.0)


def _run(alpha, seed, score, mismatch, early, levels=None):
    return {"spec": fixed_exposure.fixed_spec(alpha), "seed": seed, "score": score, "greedy": score,
            "mismatch": mismatch, "mismatch_early": early, "loss_tail": 0.1, "loss": 0.2,
            "teacher_ref_logprob": -alpha, "per_level": levels or {"easy": score, "hard": score},
            "updates_done": 8, "diverged": ""}


def test_early_mean_is_the_first_quarter():
    assert early_mean([1.0, 3.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0]) == 2.0
    assert early_mean([4.0]) == 4.0


def test_mismatch_claim_is_decided_on_the_same_student_and_reports_both():
    """Runs that take off end with a student that agrees with its teacher, so the whole-run mismatch
    falls with alpha while the early mismatch (same student) rises: the claim reads the early one."""
    runs = [_run(a, s, 0.3 + 0.5 * a + 0.01 * s, 0.05 - 0.02 * a, 0.04 + 0.02 * a + 0.001 * s)
            for a in ALPHAS for s in range(3)]
    runs += [{"spec": None, "seed": s, "score": 0.3, "greedy": 0.3, "per_level": {"easy": 0.3, "hard": 0.3}}
             for s in range(3)]
    out = summarize(Args(alphas=ALPHAS, seeds=3), runs)
    claim = out["claims"]["mismatch_grows_with_alpha"]
    assert claim["measured_on"] == "mismatch_early" and claim["verdict"] == "reproduces"
    assert claim["whole_run_means"] == pytest.approx([0.05, 0.04, 0.03])
    assert out["claims"]["full_exposure_not_best"]["verdict"].startswith("does not reproduce")
    assert out["improvement_mean"][0] == pytest.approx(0.01) and out["seeds_per_alpha"] == [3, 3, 3]


def test_interior_optimum_reproduces_only_when_its_paired_interval_clears_zero():
    scores = {0.0: 0.3, 0.5: 0.8, 1.0: 0.6}
    runs = [_run(a, s, scores[a] + 0.01 * s, 0.05, 0.05) for a in ALPHAS for s in range(3)]
    claim = summarize(Args(alphas=ALPHAS, seeds=3), runs)["claims"]["full_exposure_not_best"]
    assert claim["best_alpha"] == 0.5 and claim["verdict"].startswith("reproduces")
    noisy = [_run(a, s, scores[a] + (0.5 if (a, s) == (1.0, 0) else 0.0), 0.05, 0.05) for a in ALPHAS
             for s in range(3)]
    claim = summarize(Args(alphas=ALPHAS, seeds=3), noisy)["claims"]["full_exposure_not_best"]
    assert claim["verdict"].startswith("inconclusive")


def test_runs_stored_without_the_early_mismatch_read_it_from_their_trace(tmp_path):
    trace = tmp_path / "t.jsonl.gz"
    lines = [json.dumps({"trace": {"mismatch": [0.1, 0.3]}}), json.dumps({"trace": {"mismatch": [0.9, 0.9]}})]
    trace.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    assert fixed_exposure._early_mismatch({"trace_file": str(trace)}) == pytest.approx(0.1)
    assert fixed_exposure._early_mismatch({"mismatch_early": 0.2, "trace_file": str(trace)}) == 0.2


def test_the_sweep_runs_on_the_surrogate_and_resumes(tmp_path):
    """The whole command on the cheap env: every run, its summary and trace; a repeat reruns nothing."""
    out = tmp_path / "sweep.json"
    argv = ["--env", "ATESD-Surrogate-v0", "--seeds", "2", "--alphas", "0", "1", "--workers", "1",
            "--total-updates", "8", "--out", str(out)]
    summary = fixed_exposure.main(argv)
    assert summary["seeds_per_alpha"] == [2, 2] and len(summary["runs"]) == 6
    assert all(0.0 <= r["score"] <= 1.0 for r in summary["runs"])
    assert (tmp_path / "sweep_traces").is_dir() and out.with_suffix(".png").is_file()
    again = fixed_exposure.main(argv)
    assert [r["wall_time"] for r in again["runs"]] == [r["wall_time"] for r in summary["runs"]]
