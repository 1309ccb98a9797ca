"""Runs that survive: a run killed (SIGKILL) or interrupted (Ctrl-C) and resumed ends with the same
decision log and summary as an uninterrupted run; run directories are never silently overwritten;
output paths are checked before any work."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from agents.cli import main
from agents.runner import CHECKPOINT_FILE, RunConfig, plan_start, run_controlled
from exposure_env.errors import ConfigError, OutputPathError
from tests.agents.kill_driver import masked, run_driver

KWARGS = {"total_updates": 120, "hold_window": 4}  # 30 decisions
ARGS = ["run", "--agent", "beta", "--env-kwargs", json.dumps(KWARGS), "--no-progress", "--checkpoint-every", "4"]


def outputs(run_dir):
    log = (run_dir / "decisions.jsonl").read_text()
    return masked(log), masked((run_dir / "summary.json").read_text()), len(log.splitlines())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run (in this process), moved to ``ref/`` so the test's run can use the same
    run directory."""
    root = tmp_path_factory.mktemp("reference")
    assert main([*ARGS, "--out", str(root / "out")]) == 0
    shutil.move(root / "out" / "beta_seed0", root / "ref")
    return root, outputs(root / "ref")


def test_sigkill_at_a_random_decision_then_resume_matches_the_uninterrupted_run(reference):
    root, expected = reference
    out = root / "out"
    shutil.rmtree(out, ignore_errors=True)
    decision = int(np.random.default_rng(13).integers(2, 31))  # 1-based; during this decision
    killed = run_driver([*ARGS, "--out", str(out)], decision=decision)
    assert killed.returncode == -9, killed.stderr
    partial = out / "beta_seed0.partial"
    assert (partial / CHECKPOINT_FILE).is_file() and not (out / "beta_seed0").exists()
    # the log holds every decision before the kill, some of them logged after the last checkpoint
    assert len((partial / "decisions.jsonl").read_text().splitlines()) == decision - 1
    with pytest.raises(OutputPathError, match="--resume"):
        main_config = dataclass_from_argv([*ARGS, "--out", str(out)])
        plan_start(main_config)
    assert main([*ARGS, "--out", str(out), "--resume"]) == 0
    assert outputs(out / "beta_seed0") == expected, f"killed during decision {decision}"
    assert sorted(p.name for p in out.iterdir()) == ["beta_seed0"]
    assert sorted(p.name for p in (out / "beta_seed0").iterdir()) == ["alpha.png", "decisions.jsonl", "summary.json"]


def test_ctrl_c_saves_after_the_current_decision_and_resume_matches(reference):
    root, expected = reference
    out = root / "out"
    shutil.rmtree(out, ignore_errors=True)
    interrupted = run_driver([*ARGS, "--out", str(out)], decision=11, signal_name="INT")
    assert interrupted.returncode == 130, interrupted.stderr
    assert "--resume" in interrupted.stderr and "decision 11 of 30" in interrupted.stderr
    partial = out / "beta_seed0.partial"
    assert len((partial / "decisions.jsonl").read_text().splitlines()) == 11  # the decision finished
    assert main([*ARGS, "--out", str(out), "--resume"]) == 0
    assert outputs(out / "beta_seed0") == expected


def dataclass_from_argv(argv):
    from agents.cli import build_parser
    from exposure_env.commandline import dataclass_from_namespace

    return dataclass_from_namespace(RunConfig, build_parser().parse_args(argv))


def _config(tmp_path, **fields):
    defaults = dict(agent="random", out_dir=str(tmp_path), env_kwargs={"total_updates": 16, "hold_window": 4},
                    progress_bar=False, plot=False)
    return RunConfig(**{**defaults, **fields})


def test_an_existing_run_is_refused_kept_or_replaced_only_when_complete(tmp_path, monkeypatch):
    first = run_controlled(_config(tmp_path))
    run_dir = tmp_path / "random_seed0"
    before = (run_dir / "summary.json").read_text()
    with pytest.raises(OutputPathError, match="--overwrite") as excinfo:
        run_controlled(_config(tmp_path, seed=0))
    assert str(run_dir) in str(excinfo.value)
    assert run_controlled(_config(tmp_path, resume=True)) == first  # finished: returned as it is

    # an overwrite that fails midway leaves the previous complete run in place
    import agents.runner as runner

    def broken_plot(summary, path):
        raise RuntimeError("disk full")

    monkeypatch.setattr(runner, "plot_run", broken_plot)
    with pytest.raises(RuntimeError, match="disk full"):
        run_controlled(_config(tmp_path, overwrite=True, plot=True))
    assert (run_dir / "summary.json").read_text() == before
    assert (tmp_path / "random_seed0.partial" / CHECKPOINT_FILE).is_file()
    monkeypatch.undo()
    # the failed overwrite can be resumed; its completion replaces the old run
    replaced = run_controlled(_config(tmp_path, resume=True, plot=True))
    assert replaced.final_score == first.final_score and (run_dir / "alpha.png").is_file()
    assert not (tmp_path / "random_seed0.partial").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["random_seed0"]


def test_resume_with_other_options_names_the_field(tmp_path):
    config = _config(tmp_path, checkpoint_every=1)
    with pytest.raises(KeyboardInterrupt):
        run_controlled(config, controller=_InterruptingRandom(after=2))
    with pytest.raises(ConfigError, match="seed") as excinfo:
        run_controlled(_config(tmp_path, checkpoint_every=1, resume=True, run_name="random_seed0", seed=1))
    assert "--overwrite" in str(excinfo.value)
    assert run_controlled(_config(tmp_path, checkpoint_every=1, resume=True)).num_decisions == 4


def test_a_run_whose_agent_file_changed_is_neither_reused_nor_resumed(tmp_path):
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps({"alphas": [0.25, 1.0], "final_score_mean": [0.9, 0.5]}))
    spec = f"best-fixed:{sweep}"
    first = run_controlled(_config(tmp_path, agent=spec, run_name="best"))
    assert first.mean_alpha == 0.25
    summary = json.loads((tmp_path / "best" / "summary.json").read_text())
    assert summary["agent_inputs"] == {"best_fixed_alpha": 0.25}
    assert run_controlled(_config(tmp_path, agent=spec, run_name="best", resume=True)) == first
    sweep.write_text(json.dumps({"alphas": [0.25, 1.0], "final_score_mean": [0.5, 0.9]}))  # the sweep grew
    with pytest.raises(ConfigError, match="agent inputs") as excinfo:
        run_controlled(_config(tmp_path, agent=spec, run_name="best", resume=True))
    assert "best_fixed_alpha" in str(excinfo.value) and "--overwrite" in str(excinfo.value)
    assert run_controlled(_config(tmp_path, agent=spec, run_name="best", overwrite=True)).mean_alpha == 1.0
    # a checkpointed, unfinished run is not resumed under another alpha either
    config = _config(tmp_path, agent=spec, run_name="cut", checkpoint_every=1)
    with pytest.raises(KeyboardInterrupt):
        run_controlled(config, controller=_InterruptingRandom(after=2, spec=spec))
    sweep.write_text(json.dumps({"alphas": [0.25, 1.0], "final_score_mean": [0.9, 0.5]}))
    with pytest.raises(ConfigError, match="agent inputs"):
        run_controlled(_config(tmp_path, agent=spec, run_name="cut", checkpoint_every=1, resume=True))


class _InterruptingRandom:
    """A controller (random unless ``spec`` says otherwise) whose ``act`` raises KeyboardInterrupt at
    decision ``after`` (a hard stop)."""

    def __new__(cls, after, spec="random"):
        from agents.registry import make_controller

        controller = make_controller(spec)
        original, calls = controller.act, [0]

        def act(obs):
            calls[0] += 1
            if calls[0] > after:
                raise KeyboardInterrupt
            return original(obs)

        controller.act = act
        return controller


def test_output_paths_are_checked_before_any_work(tmp_path, monkeypatch):
    import agents.runner as runner

    def no_env(*args, **kwargs):
        raise AssertionError("the env was built before the output paths were checked")

    monkeypatch.setattr(runner, "make_env_factory", no_env)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cases = [
        (dict(out_dir=str(blocker / "sub")), OutputPathError, str(blocker)),
        (dict(agent="beta", save_path=str(blocker / "policy.safetensors")), OutputPathError, "--save"),
        (dict(agent="beta", save_path=str(tmp_path)), OutputPathError, "is a directory"),
        (dict(agent="beta", save_path=str(tmp_path / "beta_seed0" / "p.safetensors")), OutputPathError, "inside"),
        (dict(save_path=str(tmp_path / "p.safetensors")), ConfigError, "--save"),
        (dict(agent="fixed:0.5", load_path=str(blocker)), ConfigError, "--load"),
    ]
    for fields, error, text in cases:
        with pytest.raises(error, match=text.replace("/", ".")):
            run_controlled(RunConfig(**{"agent": "random", "out_dir": str(tmp_path), "progress_bar": False,
                                        **fields}))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_cli_reports_a_refused_overwrite_in_one_line(tmp_path, capsys):
    argv = ["run", "--agent", "fixed:0.5", "--out", str(tmp_path), "--no-progress", "--no-plot",
            "--env-kwargs", '{"total_updates": 8}']
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overwrite" in err and str(tmp_path / "fixed_0.5_seed0") in err
    assert main([*argv, "--overwrite"]) == 0
