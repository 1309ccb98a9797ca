"""``atesd compare`` survives: a repeated sweep reuses its finished runs, a run that fails or kills
its worker loses only itself, and Ctrl-C stops the sweep promptly, keeps what finished and says how to
resume. The process pool here; the same behaviour on Ray in ``test_compare_ray.py``."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

from agents.compare import CompareConfig, run_compare
from exposure_env.errors import ConfigError
from tests.agents.fault_envs import ENV_ID

ROOT = pathlib.Path(__file__).resolve().parents[2]
AGENTS = ("fixed:1.0", "fixed:0.5")
SHORT = dict(total_updates=16, hold_window=4)


def sweep(out: pathlib.Path, **overrides) -> CompareConfig:
    fields = dict(env_id=ENV_ID, agents=AGENTS, seeds=3, out_dir=str(out), env_kwargs=SHORT, workers=2,
                  n_resamples=200)
    return CompareConfig(**{**fields, **overrides})


def summaries(out: pathlib.Path) -> dict[str, float]:
    """Run directory name -> modification time of its summary.json."""
    return {p.parent.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*/summary.json")}


def test_a_repeated_sweep_reuses_its_finished_runs_and_runs_only_the_missing_ones(tmp_path):
    # In this process (workers=1): which runs to do is decided before any executor runs them.
    first = run_compare(sweep(tmp_path, workers=1))
    assert first.complete and first.reused_runs == 0 and len(summaries(tmp_path)) == 6
    # As if killed before it finished: a run only moves into place once complete.
    shutil.rmtree(tmp_path / "runs" / "fixed_0.5_seed1")
    before = summaries(tmp_path)
    second = run_compare(sweep(tmp_path, workers=1))
    after = summaries(tmp_path)
    assert second.complete and second.reused_runs == 5
    assert {name: after[name] for name in before} == before  # the finished runs were not run again
    assert "fixed_0.5_seed1" in after
    assert [row.final_scores for row in second.agents] == [row.final_scores for row in first.agents]
    rerun = run_compare(sweep(tmp_path, workers=1, rerun=True))
    assert rerun.reused_runs == 0 and all(summaries(tmp_path)[n] > after[n] for n in after)


def test_finished_runs_of_another_sweep_are_refused_not_reused(tmp_path):
    run_compare(sweep(tmp_path, seeds=1, workers=1))
    with pytest.raises(ConfigError, match="summary.json was made by another sweep"):
        run_compare(sweep(tmp_path, seeds=1, workers=1, env_kwargs=dict(SHORT, total_updates=20)))


def test_finished_runs_whose_sweep_file_changed_are_refused_not_reused(tmp_path):
    source = tmp_path / "sweep.json"
    source.write_text(json.dumps({"alphas": [0.5, 1.0], "final_score_mean": [0.9, 0.5]}))
    config = sweep(tmp_path / "out", agents=("fixed:1.0", f"best-fixed:{source}"), seeds=1, workers=1)
    best = lambda result: next(row for row in result.agents if row.agent.startswith("best-fixed"))  # noqa: E731
    assert best(run_compare(config)).mean_alpha == 0.5
    assert run_compare(config).reused_runs == 2
    source.write_text(json.dumps({"alphas": [0.5, 1.0], "final_score_mean": [0.5, 0.9]}))
    with pytest.raises(ConfigError, match="agent inputs"):
        run_compare(config)
    again = run_compare(dataclasses.replace(config, rerun=True))
    assert again.reused_runs == 0 and best(again).mean_alpha == 1.0


def test_a_run_that_raises_is_reported_and_the_sweep_goes_on(tmp_path):
    result = run_compare(sweep(tmp_path, workers=1, env_kwargs=dict(SHORT, fail_seed=2)))
    assert set(result.failed_runs) == {"fixed_1.0_seed2", "fixed_0.5_seed2"}
    assert all("RuntimeError: injected failure at seed 2" in why for why in result.failed_runs.values())
    assert [row.n for row in result.agents] == [2, 2] and not result.complete
    table = (tmp_path / "compare.md").read_text()
    assert "Incomplete: 4 of 6 runs finished; missing: fixed_1.0_seed2, fixed_0.5_seed2." in table


def test_a_run_that_kills_its_worker_loses_only_itself_and_is_run_again_on_resume(tmp_path):
    kill_file = tmp_path / "kill"
    kill_file.touch()
    config = sweep(tmp_path / "out", env_kwargs=dict(SHORT, kill_seed=1, kill_file=str(kill_file)))
    result = run_compare(config)
    assert set(result.failed_runs) == {"fixed_1.0_seed1", "fixed_0.5_seed1"}
    assert all("worker process died (signal SIGKILL)" in why for why in result.failed_runs.values())
    assert [row.seeds for row in result.agents] == [[0, 2], [0, 2]]
    assert json.loads((tmp_path / "out" / "compare.json").read_text())["failed_runs"] == result.failed_runs
    kill_file.unlink()
    resumed = run_compare(config)
    assert resumed.complete and resumed.reused_runs == 4 and [row.n for row in resumed.agents] == [3, 3]


def interrupt_compare(out: pathlib.Path, extra: list[str], env: dict[str, str] | None = None,
                      runs_before_interrupt: int = 1, timeout: float = 120.0) -> tuple[subprocess.CompletedProcess, float, int]:
    """``atesd compare`` in a subprocess (its own session) on slow runs, SIGINT to that process once
    ``runs_before_interrupt`` runs have finished. Returns the finished process, the seconds from the
    signal to its exit, and how many runs had finished when the signal was sent."""
    command = [sys.executable, "-m", "agents.cli", "compare", "--env", ENV_ID, "--agents", ",".join(AGENTS),
               "--seeds", "4", "--out", str(out), "--n-resamples", "200", "--env-kwargs",
               json.dumps(dict(SHORT, step_sleep=0.25)), *extra]
    # A child inherits an ignored SIGINT (test runners' workers may ignore it) and Python then keeps
    # ignoring it: give the command the default disposition, as a terminal would.
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, preexec_fn=_default_sigint, env=env)
    try:
        deadline = time.monotonic() + timeout
        while len(summaries(out)) < runs_before_interrupt:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no run finished in time"
            time.sleep(0.1)
        finished_at_signal = len(summaries(out))
        os.kill(process.pid, signal.SIGINT)
        sent = time.monotonic()
        stdout, stderr = process.communicate(timeout=60)
        stopped_after = time.monotonic() - sent
        # (multiprocessing's resource tracker exits once it sees the parent gone: give it a moment)
        gone_by = time.monotonic() + 5.0
        while not no_process_left(process.pid) and time.monotonic() < gone_by:
            time.sleep(0.1)
        assert no_process_left(process.pid), f"a process outlived the interrupted sweep: {stderr[-2000:]}"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr), stopped_after, finished_at_signal


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def no_process_left(group: int) -> bool:
    """No live process of the process group ``group`` remains (zombies waiting to be reaped by init
    count as gone). Reads /proc (Linux)."""
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, pgrp = stat.read_text().rpartition(")")[2].split()[:3]
        except (OSError, ValueError):
            continue
        if int(pgrp) == group and state != "Z":
            return False
    return True


def check_interrupted_then_resumed(out: pathlib.Path, extra: list[str], env: dict[str, str] | None = None,
                                   after_interrupt=None) -> None:  # noqa: ANN001
    done, stopped_after, finished_at_signal = interrupt_compare(out, extra, env)
    if after_interrupt is not None:
        after_interrupt()
    # 8 runs of 4 decisions x 0.25 s each on 2 workers take ~4 s more: it stopped, not finished.
    assert done.returncode == 130, done.stderr[-2000:]
    assert stopped_after < 10.0
    assert "interrupted" in done.stderr and "To resume" in done.stderr and "atesd compare --env" in done.stderr
    result = json.loads((out / "compare.json").read_text())
    aggregated = sum(row["n"] for row in result["agents"].values())
    assert result["interrupted"] and finished_at_signal <= aggregated < 8
    assert len(result["unfinished_runs"]) == 8 - aggregated
    # A Ray task at its very end may still write its summary while its job is being ended; the
    # process pool's workers are gone before the table is written.
    finished = summaries(out)
    assert aggregated <= len(finished) <= aggregated + (0 if "ray" not in extra else 2)
    resumed = subprocess.run(done.args, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    result = json.loads((out / "compare.json").read_text())
    assert result["reused_runs"] == len(finished) and not result["interrupted"]
    assert sum(row["n"] for row in result["agents"].values()) == 8


def test_ctrl_c_stops_the_process_pool_promptly_keeps_what_finished_and_resumes(tmp_path):
    check_interrupted_then_resumed(tmp_path, ["--workers", "2"])


@pytest.mark.parametrize(("fields", "message"), [
    ({"executor": "dask"}, "executor must be one of 'process', 'ray'; received 'dask'"),
    ({"address": "auto"}, "address must be only given with executor 'ray'; received 'auto'"),
    ({"torch_threads": 0}, "torch_threads must be an integer in"),
    ({"stats_seed": -1}, "stats_seed must be an integer in"),
])
def test_bad_sweep_options_are_config_errors_naming_the_field(fields, message):
    with pytest.raises(ConfigError, match=message):
        CompareConfig(**fields)
