"""Calibration of the surrogate to traces: reading decision logs, the fit, its scores and splits."""

from __future__ import annotations

import gzip
import json
import math

import gymnasium as gym
import numpy as np
import pytest

import exposure_env  # noqa: F401
from exposure_env import calibration as cal
from exposure_env.surrogate import SurrogateParams

TRUTH = SurrogateParams(level_steps=(2, 3, 4), init_ability_low=-0.4, init_ability_high=-0.4, init_jitter=0.0,
                        learning_rate=0.06, shallow_gain=0.05, learning_noise=0.002,
                        observation_noise=(0.002,) * 8)


def _write_run(path, spec: str, seed: int, params=TRUTH, total_updates: int = 40, hold_window: int = 4) -> None:
    from agents.registry import make_controller
    from agents.runner import decision_line, rollout

    env = gym.make("ATESD-Surrogate-v0", params=params.to_dict(), total_updates=total_updates,
                   hold_window=hold_window)
    lines: list[str] = []
    rollout(env, make_controller(spec, seed=seed), seed, on_step=lambda r: lines.append(json.dumps(decision_line(r))))
    name = f"{spec.replace(':', '_')}_seed{seed}.jsonl.gz"
    with gzip.open(path / name, "wt") as handle:
        handle.write("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    folder = tmp_path_factory.mktemp("traces")
    for spec in ("fixed:0", "fixed:0.5", "fixed:1", "linear:0:1"):
        for seed in (0, 1):
            _write_run(folder, spec, seed)
    return cal.load_traces([folder])


def test_reads_labels_seeds_and_every_statistic(synthetic):
    assert sorted({(r.label, r.seed) for r in synthetic}) == sorted(
        (s, k) for s in ("fixed:0", "fixed:0.5", "fixed:1", "linear:0:1") for k in (0, 1))
    run = next(r for r in synthetic if r.label == "linear:0:1")
    assert run.stats.shape == (8, 40) and run.num_updates == 40 and len(run.score) == 11
    assert np.all(np.diff(run.window_alpha) >= 0) and np.ptp(run.window_alpha) > 0.5  # the ramp's own alphas
    assert cal.is_fixed(synthetic[0]) and not cal.is_fixed(run)


def test_reads_what_atesd_run_writes(tmp_path):
    from agents.cli import main

    assert main(["run", "--agent", "fixed:0.5", "--seed", "3", "--out", str(tmp_path), "--no-progress", "--no-plot",
                 "--env-kwargs", '{"total_updates": 12, "hold_window": 4}']) == 0
    (run,) = cal.load_traces([tmp_path])
    assert run.label == "fixed:0.5" and run.seed == 3 and run.stats.shape == (8, 12)


@pytest.mark.parametrize("mutate, message", [
    (lambda row: row.pop("trace"), "missing field 'trace'"),
    (lambda row: row["trace"].pop("probe_nll"), "trace lacks probe_nll"),
    (lambda row: row["trace"]["loss"].__setitem__(0, float("nan")), "non-finite values in loss"),
    (lambda row: row.__setitem__("alpha", "high"), "alpha and score must be finite numbers"),
])
def test_bad_lines_name_the_file_and_line(tmp_path, mutate, message):
    _write_run(tmp_path, "fixed:0.5", 0, total_updates=12)
    path = next(tmp_path.iterdir())
    rows = [json.loads(line) for line in gzip.open(path, "rt")]
    mutate(rows[1])
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(cal.TraceError, match=rf"bad.jsonl: line 2: .*{message}"):
        cal.read_trace(bad)


def test_empty_runs_unreadable_json_and_missing_paths_are_reported(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(cal.TraceError, match="empty.jsonl: the run has no completed update"):
        cal.read_trace(empty)
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n")
    with pytest.raises(cal.TraceError, match="broken.jsonl: line 1: not valid JSON"):
        cal.read_trace(broken)
    with pytest.raises(cal.TraceError, match="no such trace file"):
        cal.load_traces([tmp_path / "missing"])
    (tmp_path / "nothing_here").mkdir()
    with pytest.raises(cal.TraceError, match="nothing_here: no \\*.jsonl"):
        cal.load_traces([tmp_path / "nothing_here"])


def test_bounded_two_column_least_squares_matches_a_general_solver():
    from scipy.optimize import lsq_linear

    rng = np.random.default_rng(0)
    for _ in range(50):
        design = rng.normal(size=(2, 30))
        target = rng.normal(size=30) * 3
        bounds = ((-0.2, 0.5), (0.0, np.inf)) if rng.random() < 0.5 else ((-np.inf, np.inf), (-1.0, 0.1))
        ours = cal._bounded_lstsq_2(design, target, bounds)
        reference = lsq_linear(design.T, target, bounds=tuple(np.array(bounds).T)).x
        assert np.sum((design.T @ ours - target) ** 2) <= np.sum((design.T @ reference - target) ** 2) + 1e-9


def test_readout_parameters_round_trip():
    coefficients = cal.readout_coefficients(TRUTH)
    recovered = TRUTH.replace(**cal.readout_params(coefficients))
    assert recovered == TRUTH


def test_the_truth_scores_near_perfectly_and_a_wrong_model_does_not(synthetic):
    good = cal.evaluate_fit(TRUTH, synthetic)
    assert good.r2["probe_nll"] > 0.95 and good.r2["score"] > 0.95 and good.r2["teacher_ref_logprob"] > 0.95
    wrong = cal.evaluate_fit(TRUTH.replace(learning_rate=0.0), synthetic)
    assert wrong.r2["score"] < good.r2["score"] - 0.3


def test_fit_recovers_dynamics_that_predict_unseen_schedules(synthetic):
    """Fitted on the fixed-alpha runs only, from the hand-set defaults, the fit predicts the ramp."""
    train, test = cal.split_by_schedule(synthetic)
    assert {r.label for r in test} == {"linear:0:1"}
    result = cal.fit(train, base=SurrogateParams(level_steps=(2, 3, 4)), config=cal.FitConfig(restarts=0, max_nfev=60))
    start = cal.evaluate_fit(SurrogateParams(level_steps=(2, 3, 4), init_ability_low=0.0, init_ability_high=0.0,
                                             init_jitter=0.0), test)
    held_out = cal.evaluate_fit(result.params, test)
    assert held_out.r2["probe_nll"] > 0.9 and held_out.r2["score"] > 0.9
    assert held_out.r2["score"] > start.r2["score"]
    assert all(math.isfinite(x) and x >= 0 for x in result.params.observation_noise)


def test_splits_hold_out_schedules_and_seeds(synthetic):
    train, test = cal.split_by_seed(synthetic, test_share=0.5)
    assert {r.seed for r in train} == {0} and {r.seed for r in test} == {1}
    train, test = cal.split_by_schedule(synthetic)
    assert all(cal.is_fixed(r) for r in train) and not any(cal.is_fixed(r) for r in test)


def test_atesd_calibrate_writes_loadable_params_a_report_and_a_plot(synthetic, tmp_path, capsys):
    from agents.cli import main

    folder = synthetic[0].source.rsplit("/", 1)[0]
    out = tmp_path / "fit.json"
    assert main(["calibrate", "--traces", folder, "--level-steps", "2", "3", "4", "--restarts", "0",
                 "--max-nfev", "20", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert set(data["report"]["splits"]) == {"by_schedule", "by_seed"} and "probe_nll" in capsys.readouterr().out
    env = gym.make("ATESD-Surrogate-v0", params=data["params"])
    env.reset(seed=0)
    assert env.unwrapped.backend.params.level_steps == (2.0, 3.0, 4.0)
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert main(["calibrate", "--out", str(out)]) == 2  # no traces: a ConfigError naming the field
    assert "traces must be one or more trace files" in capsys.readouterr().err


def test_atesd_calibrate_evaluate_scores_given_params_on_new_runs(synthetic, tmp_path, capsys):
    """``--evaluate``: the truth scores near perfectly on its own runs, the hand-set default does not,
    and nothing is fitted (the parameters written are the ones given)."""
    from agents.cli import main

    folder = synthetic[0].source.rsplit("/", 1)[0]
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({"params": TRUTH.to_dict()}))
    scores = {}
    for name, spec in (("truth", str(truth)), ("default", "default")):
        out = tmp_path / f"{name}.json"
        assert main(["calibrate", "--traces", folder, "--evaluate", spec, "--out", str(out)]) == 0
        data = json.loads(out.read_text())
        scores[name] = data["evaluated"]["r2"]["probe_nll"]
        assert "final score" in capsys.readouterr().out and out.with_suffix(".png").is_file()
        if name == "truth":
            assert SurrogateParams.from_dict(data["params"]) == TRUTH
    assert scores["truth"] > 0.9 > scores["default"]
