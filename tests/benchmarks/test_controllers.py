"""The controller study end to end on a tiny surrogate setting: sweep on other seeds, pre-training,
every controller, the statistics, the files, and the sim-to-real ratio."""

import json
import math

import numpy as np
import pytest

from agents.runner import RunConfig
from benchmarks import controllers

pytest.importorskip("stable_baselines3", reason="the study pre-trains PPO")

TINY = ["--env-kwargs", json.dumps({"total_updates": 16, "hold_window": 4}), "--seeds", "3", "--sweep-seeds", "2",
        "--pretrain-runs", "32", "--ppo-pretrain-runs", "32", "--pretrain-num-envs", "16",
        "--ppo-overrides", json.dumps({"n_steps": 4, "batch_size": 32}), "--workers", "1"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    out = root / "controllers_surrogate.json"
    payload = controllers.main(TINY + ["--out", str(out), "--runs-dir", str(root / "runs")])
    return root, out, payload


def test_the_study_runs_every_controller_and_writes_json_markdown_png(study):
    root, out, payload = study
    roles = {row["role"] for row in payload["controllers"]}
    assert roles == {"opsd", "best-fixed", "random", "ramp", "beta:immediate", "beta:discounted", "beta:discounted+gt",
                     "beta-pretrained", "beta-pretrained:online", "ppo-pretrained"}
    assert json.loads(out.read_text())["seeds"] == [0, 1, 2] and not payload["sweep_overlaps_evaluation"]
    sweep = json.loads(out.with_name("controllers_surrogate_sweep.json").read_text())
    assert sweep["seeds"] == [1000, 1001] and payload["best_fixed_alpha"] == sweep["alphas"][
        int(np.argmax(sweep["final_score_mean"]))]
    markdown = out.with_suffix(".md").read_text()
    for name in roles:
        assert f"| `{name}` |" in markdown
    assert "Reward ablation" in markdown and out.with_suffix(".png").stat().st_size > 10_000
    assert set(payload["pretrained"]) == {"beta", "ppo"}


def test_statistics_follow_from_the_runs(study):
    root, out, payload = study
    rows = {row["role"]: row for row in payload["controllers"]}
    opsd, best = rows["opsd"], rows["best-fixed"]
    runs = root / "runs" / "controllers_surrogate" / "runs"
    assert opsd["pi_vs_opsd"][0] == 0.5 and best["pi_vs_best_fixed"][0] == 0.5
    for row in rows.values():
        assert row["ci_low"] <= row["iqm"] <= row["ci_high"] and len(row["final_scores"]) == 3
        assert row["curve_updates"] == [0, 4, 8, 12, 16] and len(row["alpha_curve"]) == 4
        assert row["curve_mean"][-1] == pytest.approx(np.mean(row["final_scores"]))
        # sample efficiency recomputed from the logged curves: first update with score >= OPSD's final
        efficiency = row["sample_efficiency"]
        for seed, reached in zip(row["seeds"], efficiency["per_seed"]):
            run_dir = RunConfig(agent=row["agent"], seed=seed, out_dir=str(runs)).run_dir
            summary = json.loads((run_dir / "summary.json").read_text())
            target = opsd["final_scores"][row["seeds"].index(seed)]
            curve = [(0, summary["initial_score"])] + list(zip(summary["updates"], summary["scores"]))
            assert reached == next((u for u, s in curve if s >= target), None)
        counted = [16 if u is None else u for u in efficiency["per_seed"]]
        assert efficiency["mean"] == pytest.approx(np.mean(counted)) and efficiency["budget"] == 16
        assert efficiency["reached"] == sum(u is not None for u in efficiency["per_seed"])
    assert opsd["sample_efficiency"]["reached"] == 3  # OPSD reaches its own final score, at the latest at the end
    assert set(payload["goals"]) == set(rows) - {"opsd", "best-fixed"}
    assert payload["ablation"]["paper_order_low_to_high"] == ["beta:immediate", "opsd", "beta:discounted",
                                                              "beta:discounted+gt"]


def test_sim_to_real_of_a_result_against_itself_is_one(study, tmp_path):
    root, out, payload = study
    again = controllers.main(TINY + ["--out", str(tmp_path / "again.json"), "--runs-dir", str(tmp_path / "runs"),
                                     "--sweep", str(out.with_name("controllers_surrogate_sweep.json")),
                                     "--surrogate-result", str(out)])
    assert again["pretrained"] == payload["pretrained"]  # the surrogate result's controllers, not new ones
    ratios = again["sim_to_real"]
    assert set(ratios) == {"beta-pretrained", "beta-pretrained:online", "ppo-pretrained"}
    for entry in ratios.values():
        assert entry["real_gain"] == pytest.approx(entry["surrogate_gain"])
        if abs(entry["surrogate_gain"]) > 1e-12:
            assert entry["ratio"] == pytest.approx(1.0)
        assert entry["keeps_90_percent"] == (entry["surrogate_gain"] > 0)
    assert "Sim-to-real" in (tmp_path / "again.md").read_text() and again["same_episode_settings"]


def test_controllers_that_ran_the_same_student_are_named():
    from agents.records import RunSummary

    def run(agent, seed, scores, alphas):
        return RunSummary(agent, "env", seed, scores[-1], 0.3, max(scores), float(np.mean(alphas)), 0.1 * seed, 2,
                          False, 0.0, 1.0, 0.0, 1.0, "", alphas, scores, [4, 8])

    same = [[0.4, 0.9], [0.5, 0.8]]
    by_agent = {"best-fixed:sweep.json": [run("b", s, same[s], [0.75, 0.75]) for s in (0, 1)],
                "beta-pretrained:folder": [run("p", s, same[s], [0.8, 0.9]) for s in (0, 1)],
                "fixed:1.0": [run("o", 0, same[0], [1.0, 1.0]), run("o", 1, [0.5, 0.7], [1.0, 1.0])]}
    assert controllers.identical_runs(by_agent) == [["best-fixed", "beta-pretrained"]]
    del by_agent["beta-pretrained:folder"]
    assert controllers.identical_runs(by_agent) == []  # one seed differs: not the same runs


def test_the_real_backend_reports_its_distinct_exposure_levels():
    levels = controllers.exposure_levels_of("ATESD-Qwen3-v0", {})
    assert levels["segments_per_reference"] == [2, 3, 4]  # the tiny default task
    assert [0.75, 1.0] in levels["levels"] and len(levels["levels"]) == 7
    assert controllers.exposure_levels_of("ATESD-Surrogate-v0", {}) is None


def test_only_a_positive_surrogate_gain_can_be_kept():
    assert controllers.keeps_gain(0.95, 0.02) and not controllers.keeps_gain(0.85, 0.02)
    assert not controllers.keeps_gain(1.4, -0.2)  # lost more on the real backend than on the surrogate
    assert not controllers.keeps_gain(math.nan, 0.02) and not controllers.keeps_gain(1.0, 0.0)


def test_the_ablation_order_matches_the_paper_only_when_strictly_increasing():
    def row(name, iqm):
        return controllers.ControllerRow(name, name, 1, iqm, iqm, iqm, (0.5,) * 3, (0.5,) * 3,
                                         controllers.SampleEfficiency(0, 0, 0, 1, 1, 1, [0]), 0.5, [iqm], [0], [0],
                                         [iqm], [0.5])

    ordered = [row("beta:immediate", 0.1), row("opsd", 0.2), row("beta:discounted", 0.3), row("beta:discounted+gt", 0.4)]
    assert controllers.ablation(ordered)["matches_paper"]
    tied = [row(r.role, 0.2) for r in ordered]
    assert not controllers.ablation(tied)["matches_paper"]
    swapped = ordered[:2] + [row("beta:discounted", 0.45), ordered[3]]
    assert controllers.ablation(swapped)["observed_order_low_to_high"][-1] == "beta:discounted"
    assert controllers.ablation(ordered[:3]) is None


def test_sweep_seeds_are_read_from_either_sweep_format():
    assert controllers.sweep_seeds({"seeds": [1000, 1001]}) == [1000, 1001]
    assert controllers.sweep_seeds({"args": {"seeds": 5, "seed_offset": 0}}) == [0, 1, 2, 3, 4]  # fixed_exposure
    assert controllers.sweep_seeds({"alphas": [0.5]}) is None
    assert controllers._overlap([0, 1, 2, 3, 4], range(100, 105)) is False
    assert controllers._overlap(None, [0]) is None


def test_episode_settings_compare_the_budget_run_not_the_kwargs_given():
    """A real run that takes its budget from the model's recipe ran the same episodes as a surrogate
    run given that budget explicitly; another window or budget is another episode."""
    def result(env_kwargs, budget):
        return {"env_kwargs": env_kwargs, "controllers": [{"sample_efficiency": {"budget": budget}}]}

    surrogate = result({"total_updates": 400, "params": "tiny-qwen3"}, 400)
    assert controllers.same_episodes(surrogate, result({}, 400))
    assert controllers.same_episodes(surrogate, result({"hold_window": 4}, 400))
    assert not controllers.same_episodes(surrogate, result({"hold_window": 8}, 400))
    assert not controllers.same_episodes(surrogate, result({}, 200))
