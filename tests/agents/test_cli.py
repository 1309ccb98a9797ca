import json

import pytest

from agents.cli import main
from tests.agents.conftest import surrogate_available

pytestmark = pytest.mark.skipif(not surrogate_available(), reason="exposure_env.surrogate is not importable yet")
TINY = '{"total_updates": 40, "hold_window": 4}'


def test_run_writes_log_plot_and_summary(tmp_path, capsys):
    code = main(["run", "--env", "ATESD-Surrogate-v0", "--agent", "beta", "--seed", "0", "--out", str(tmp_path),
                 "--env-kwargs", TINY, "--no-progress", "--save", str(tmp_path / "beta.pt"), "--tensorboard"])
    assert code == 0
    run_dir = tmp_path / "beta_seed0"
    lines = [json.loads(line) for line in (run_dir / "decisions.jsonl").read_text().splitlines()]
    assert len(lines) == 10
    first = lines[0]
    for key in ("alpha", "obs", "reward", "score", "mismatch", "updates_done", "progress_before",
                "reward_components", "trace_mean", "controller", "controller_time_s", "env_time_s"):
        assert key in first, key
    assert set(first["obs"]) >= {"progress", "alpha_ema", "score"}
    assert set(first["trace"]) >= {"probe_nll", "loss", "teacher_ref_logprob", "progress", "grounded"}
    assert all(len(v) == 4 for v in first["trace"].values())  # one value per update of the window
    assert "beta_a" in first["controller"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["num_decisions"] == 10 and summary["final_score"] == lines[-1]["score"]
    assert summary["alphas"] == [line["alpha"] for line in lines]
    assert (run_dir / "alpha.png").stat().st_size > 1000
    assert any((run_dir / "tensorboard").iterdir())
    assert (tmp_path / "beta.pt").exists()
    # Carry-over: a second run starts from the saved policy.
    assert main(["run", "--agent", "beta", "--seed", "1", "--out", str(tmp_path), "--env-kwargs", TINY,
                 "--no-progress", "--no-plot", "--load", str(tmp_path / "beta.pt")]) == 0
    assert "final score" in capsys.readouterr().out


def test_run_with_an_sb3_agent(tmp_path):
    pytest.importorskip("stable_baselines3")
    code = main(["run", "--agent", "a2c", "--train-episodes", "2", "--out", str(tmp_path), "--env-kwargs", TINY,
                 "--no-progress", "--no-plot"])
    assert code == 0
    summary = json.loads((tmp_path / "a2c_seed0" / "summary.json").read_text())
    assert summary["train_time_s"] > 0 and summary["controller_end_stats"]["timesteps_trained"] == 20


def test_bad_agent_spec_is_a_clean_cli_error(tmp_path, capsys):
    assert main(["run", "--agent", "fixed:1.7", "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "fixed:1.7" in err and "[0, 1]" in err


def test_compare_writes_json_and_markdown(tmp_path):
    out = tmp_path / "cmp"
    code = main(["compare", "--agents", "fixed:1.0,random", "--seeds", "2", "--workers", "2",
                 "--env-kwargs", TINY, "--out", str(out)])
    assert code == 0
    result = json.loads((out / "compare.json").read_text())
    assert result["reference"] == "fixed:1.0" and result["seeds"] == [0, 1]
    for agent in ("fixed:1.0", "random"):
        row = result["agents"][agent]
        for key in ("iqm", "ci_low", "ci_high", "prob_improvement_vs_opsd", "pi_ci_low", "pi_ci_high",
                    "final_scores", "mean_alpha"):
            assert key in row, key
        assert row["ci_low"] <= row["iqm"] <= row["ci_high"] and len(row["final_scores"]) == 2
    assert result["agents"]["fixed:1.0"]["prob_improvement_vs_opsd"] == 0.5
    markdown = (out / "compare.md").read_text()
    assert "| `random` |" in markdown and "IQM" in markdown
    assert (out / "compare.png").exists()
    assert len(list((out / "runs").glob("*/decisions.jsonl"))) == 4


def test_beta_carry_trains_on_other_seeds_before_the_evaluated_run(tmp_path):
    from agents.registry import make_controller
    from agents.runner import RunConfig, run_controlled

    controller = make_controller("beta-carry", batch_size=4)
    summary = run_controlled(RunConfig(agent="beta-carry", env_kwargs={"total_updates": 40, "hold_window": 4},
                                       train_episodes=3, out_dir=str(tmp_path), progress_bar=False, plot=False),
                             controller=controller)
    # 3 training runs + the evaluated run of 10 decisions each, batches of 4
    assert controller.num_updates == 10 and summary.train_time_s > 0


@pytest.mark.slow
def test_run_on_the_real_tiny_backend(tmp_path):
    pytest.importorskip("distill_backend.env_factory", reason="the real backend is not importable")
    code = main(["run", "--env", "ATESD-Qwen3-v0", "--agent", "beta", "--out", str(tmp_path), "--no-progress",
                 "--env-kwargs", '{"total_updates": 4, "hold_window": 2}'])
    assert code == 0
    summary = json.loads((tmp_path / "beta_seed0" / "summary.json").read_text())
    assert summary["num_decisions"] == 2 and (tmp_path / "beta_seed0" / "alpha.png").exists()
