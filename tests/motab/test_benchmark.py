"""The MOTAB benchmark's statistics helpers (fast) and a miniature end-to-end run (slow)."""

import json
import math
import os

import pytest

from benchmarks.motab import average_curves, mean_ci, parse_args, weighted_mean


def test_mean_ci_uses_student_t():
    mean, (low, high) = mean_ci([0.1, 0.2, 0.3])
    assert mean == pytest.approx(0.2)
    assert high - mean == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-5)
    assert mean_ci([0.5]) == (0.5, [0.5, 0.5])


def test_average_curves_weights_by_counts():
    a = {"positions": [0, 1], "series": {"own": [1.0, 0.0]}, "counts": {"own": [1, 3]}}
    b = {"positions": [1, 2], "series": {"own": [1.0, 0.5]}, "counts": {"own": [1, 2]}}
    avg = average_curves([a, b])
    assert avg["positions"] == [0, 1, 2]
    assert avg["series"]["own"] == pytest.approx([1.0, 0.25, 0.5])
    assert avg["counts"]["own"] == [1, 4, 2]
    assert weighted_mean(avg, "own") == pytest.approx((1.0 + 1.0 + 1.0) / 7)


def test_unknown_method_is_rejected():
    with pytest.raises(SystemExit):
        parse_args(["--methods", "magic"])


@pytest.mark.slow
def test_miniature_benchmark_run(tmp_path):
    from benchmarks.motab import main

    out = tmp_path / "motab.json"
    from benchmarks.motab import Args, pair_config
    from distill_backend.motab.pair import default_teacher_recipe
    from distill_backend.warmstart import warmstart_dir

    # Checkpoints from MOTAB_STUDENT_PATH / MOTAB_TEACHER_PATH, else the cached tiny warm starts.
    paths = [os.environ.get("MOTAB_STUDENT_PATH", ""), os.environ.get("MOTAB_TEACHER_PATH", "")]
    recipe = pair_config(Args()).student_recipe
    cached = all((warmstart_dir(r) / "warmstart.json").is_file() for r in (recipe, default_teacher_recipe(recipe)))
    if not (all(paths) or cached):
        pytest.skip("no MOTAB_*_PATH checkpoints and the tiny warm starts are not cached (building takes minutes)")
    payload = main(["--student-path", paths[0], "--teacher-path", paths[1], "--seeds", "1", "--pool-size", "16", "--updates", "2", "--batch-size", "4", "--test-size", "8",
                    "--eval-k", "1", "--bias-problems", "6", "--out", str(out), "--threads", "1"])
    data = json.loads(out.read_text())
    assert set(data["methods"]) == {"teacher_sft", "step_skd", "token_skd", "onpolicy_rkl", "motab", "motab_rkl",
                                    "motab_masked"}
    for entry in data["methods"].values():
        assert 0.0 <= entry["score_mean"] <= 1.0 and len(entry["score_ci"]) == 2
        assert entry["sequences"] == 8  # equal budgets: 2 updates x 4 sequences
    assert 0.0 <= data["methods"]["motab"]["breach_rate_mean"] <= 1.0
    assert (tmp_path / "motab_records.jsonl").read_text().count("\n") == 16  # one MOTAB record per question
    assert (tmp_path / "motab_exposure_bias.png").is_file()
    assert payload["seeds_done"] == 1
