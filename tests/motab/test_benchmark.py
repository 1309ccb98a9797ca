"""The MOTAB benchmarks: statistics helpers against hand-computed numbers, and miniature end-to-end
runs of ``benchmarks.motab`` and ``benchmarks.motab_composition`` on tiny warm starts."""

import json
import math

import pytest

from benchmarks.motab import (
    METHODS,
    Args,
    average_curves,
    parse_args,
    summarize_methods,
    summarize_monitors,
    weighted_mean,
)
from exposure_env.stats import mean_ci


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


def test_bad_methods_and_monitors_are_rejected():
    with pytest.raises(SystemExit):
        parse_args(["--methods", "magic"])
    with pytest.raises(SystemExit):
        parse_args(["--monitors", "min", "result"])  # the paper's monitor is always measured
    with pytest.raises(SystemExit):
        parse_args(["--monitors", "paper", "psychic"])
    assert parse_args(["--monitors", "paper", "result"]).monitors == ("paper", "result")


def _run(score, **extra):
    return {"score": score, "sequences": 64, "loss_tokens": 100, "time_synthesis": 1.0, "time_training": 2.0,
            "time_eval": 0.5, **extra}


def test_methods_summary_pairs_motab_with_the_best_baseline():
    args = Args(methods=("teacher_sft", "onpolicy_rkl", "motab", "motab_best_filtered"))
    per_seed = [
        {"methods": {"teacher_sft": _run(0.5, right_answer_share=0.9), "onpolicy_rkl": _run(0.6),
                     "motab": _run(0.4, right_answer_share=0.5, monitor="paper"),
                     "motab_best_filtered": _run(0.7, right_answer_share=0.95, monitor="result")}},
        {"methods": {"teacher_sft": _run(0.55, right_answer_share=0.8), "onpolicy_rkl": _run(0.7),
                     "motab": _run(0.5, right_answer_share=0.7, monitor="paper"),
                     "motab_best_filtered": _run(0.7, right_answer_share=0.85, monitor="min")}},
    ]
    methods = summarize_methods(args, per_seed)
    assert methods["teacher_sft"]["right_answer_share_mean"] == pytest.approx(0.85)
    assert methods["motab_best_filtered"]["label"] == "ours" and methods["motab"]["label"] == "paper"
    assert methods["motab_best_filtered"]["monitors"] == ["result", "min"]
    assert methods["motab"]["vs_best_baseline"]["baseline"] == "onpolicy_rkl"  # mean 0.65 > 0.525
    assert methods["motab"]["vs_best_baseline"]["mean"] == pytest.approx(-0.2)  # (0.4-0.6 + 0.5-0.7) / 2
    assert methods["motab_best_filtered"]["vs_best_baseline"]["mean"] == pytest.approx(0.05)
    assert "vs_best_baseline" not in methods["teacher_sft"]
    assert methods["onpolicy_rkl"]["wall_time_mean"] == pytest.approx(3.5)


def test_monitor_summary_sums_counts_and_averages_ratios():
    per_seed = [{"monitors": {"paper": {"steps": 10, "breach_recall": 0.5, "value_auc": math.nan}}},
                {"monitors": {"paper": {"steps": 12, "breach_recall": 0.7, "value_auc": 0.9}}}]
    paper = summarize_monitors(per_seed)["paper"]
    assert paper["steps"] == 22
    assert paper["breach_recall_mean"] == pytest.approx(0.6) and paper["breach_recall_seeds"] == 2
    assert paper["value_auc_mean"] == pytest.approx(0.9) and paper["value_auc_seeds"] == 1


@pytest.fixture(scope="module")
def tiny_pair_paths(tiny_config):
    from distill_backend.motab.pair import PairConfig, resolve_paths

    return resolve_paths(PairConfig(student_recipe=tiny_config.warmstart))


def _benchmark(tmp_path, paths, *extra):
    from benchmarks.motab import main

    out = tmp_path / "motab.json"
    payload = main(["--student-path", paths[0], "--teacher-path", paths[1], "--pool-size", "12", "--updates", "2",
                    "--batch-size", "4", "--test-size", "6", "--eval-k", "1", "--bias-problems", "4", "--out", str(out),
                    "--threads", "1", *extra])
    return payload, json.loads(out.read_text())  # strict JSON: nan is written as null


def test_miniature_benchmark_run(tmp_path, tiny_pair_paths):
    methods = ["onpolicy_rkl", "motab", "motab_best_filtered", "motab_rkl"]
    payload, data = _benchmark(tmp_path, tiny_pair_paths, "--seeds", "1", "--methods", *methods)
    assert list(data["methods"]) == methods and payload["seeds_done"] == 1
    for entry in data["methods"].values():
        assert entry["sequences"] == 8  # equal budgets: 2 updates x 4 sequences
        assert 0.0 <= entry["right_answer_share_mean"] <= 1.0
    run = payload["per_seed"][0]
    for result in run["methods"].values():  # what each trained student writes on the test problems
        assert result["output_outputs"] > 0 and 0.0 <= result["output_with_revision"] <= 1.0
        assert result["output_revisions"] >= 0
    assert set(run["monitors"]) == {"paper", "min", "result", "length"}
    assert run["best_monitor"] in run["monitors"] and run["methods"]["motab_best_filtered"]["monitor"] == run["best_monitor"]
    best = run["monitors"][run["best_monitor"]]["breach_f1"]
    assert all(not (q["breach_f1"] > best) for q in run["monitors"].values())  # chosen by breach F1 on the pool
    filtered, paper = run["methods"]["motab_best_filtered"], run["methods"]["motab"]
    assert filtered["training_texts"] + filtered["dropped_unbreached_wrong"] == 12 and paper["training_texts"] == 12
    assert run["methods"]["motab_rkl"]["rollout_right_answer_share"] >= 0.0
    lines = (tmp_path / "motab_records.jsonl").read_text().splitlines()
    assert len(lines) == 12 * len({"paper", run["best_monitor"]})  # one record per question and monitor used
    assert {json.loads(line)["monitor"] for line in lines} == {"paper", run["best_monitor"]}


def test_miniature_benchmark_every_method(tmp_path, tiny_pair_paths):
    payload, data = _benchmark(tmp_path, tiny_pair_paths, "--seeds", "2")
    assert list(data["methods"]) == list(METHODS) and payload["seeds_done"] == 2
    for entry in data["methods"].values():
        assert 0.0 <= entry["score_mean"] <= 1.0 and len(entry["score_ci"]) == 2 and len(entry["scores"]) == 2
    assert (tmp_path / "motab_exposure_bias.png").is_file()
    assert data["monitors"]["paper"]["trajectories"] == 24


def test_composition_pairs_motab_with_plain_by_seed(tmp_path, tiny_config, tiny_checkpoint):
    from benchmarks.motab_composition import Args as CompositionArgs
    from benchmarks.motab_composition import main, summarize
    from tests.distill_backend.conftest import TINY_KWARGS

    runs = [{"rollout": r, "alpha": 1.0, "seed": s, "score": v}
            for r, s, v in [("plain", 0, 0.4), ("motab", 0, 0.5), ("plain", 1, 0.6), ("motab", 1, 0.6),
                            ("warm_start", 0, 0.3), ("warm_start", 1, 0.3)]]
    summary = summarize(CompositionArgs(alphas=("1",)), runs)
    assert summary["alpha_1"]["motab_minus_plain_mean"] == pytest.approx(0.05)
    assert summary["alpha_1"]["plain_mean"] == pytest.approx(0.5) and summary["warm_start_score_mean"] == 0.3

    out = tmp_path / "composition.json"
    result = main(["--seeds", "2", "--alphas", "1", "--total-updates", "1", "--hold-window", "1", "--final-eval-size",
                   "4", "--final-eval-k", "1", "--env-kwargs", json.dumps(TINY_KWARGS), "--motab-kwargs",
                   '{"eps0": 0.9}', "--out", str(out)])
    data = json.loads(out.read_text())
    assert data["alpha_1"]["paired_seeds"] == 2 and result["alpha_1"]["paired_seeds"] == 2
    assert sorted((r["rollout"], r["seed"]) for r in data["runs"]) == sorted(
        (r, s) for s in (0, 1) for r in ("warm_start", "plain", "motab"))
    motab_kwargs = json.loads(next(r for r in data["runs"] if r["rollout"] == "motab")["env_kwargs"])
    assert motab_kwargs["rollout"] == "motab" and motab_kwargs["motab"] == {"eps0": 0.9}



def test_composition_reuses_a_matching_sweep_and_refuses_another(tmp_path):
    """``--reuse``: the sweep's warm-start and fixed-alpha runs stand in for the plain arm only when
    they were made with the study's settings."""
    import dataclasses

    from benchmarks.motab_composition import Args as CompositionArgs
    from benchmarks.motab_composition import reused_runs, sweep_args

    args = CompositionArgs(seeds=2, alphas=("1",), total_updates=8, reuse=str(tmp_path / "sweep.json"))
    sweep = dataclasses.asdict(sweep_args(args, "plain"))
    sweep["env_kwargs"] = "{}"  # the sweep's own runs are plain by default
    runs = [{"spec": None, "seed": 0, "score": 0.3}, {"spec": "fixed:1", "seed": 0, "score": 0.5},
            {"spec": "fixed:1", "seed": 5, "score": 0.9}, {"spec": "fixed:0.5", "seed": 1, "score": 0.7}]
    (tmp_path / "sweep.json").write_text(json.dumps({"args": sweep, "runs": runs}))
    reused = reused_runs(args)
    assert sorted((r["rollout"], r["alpha"], r["seed"], r["score"]) for r in reused) == [
        ("plain", 1.0, 0, 0.5), ("warm_start", None, 0, 0.3)]
    (tmp_path / "sweep.json").write_text(json.dumps({"args": {**sweep, "hold_window": 2}, "runs": runs}))
    with pytest.raises(SystemExit, match="hold_window"):
        reused_runs(args)
