"""``atesd compare --executor ray``: the sweep as Ray tasks, on a local Ray instance the sweep starts
(and stops) itself, or on an existing one (``--address``), with the process pool's guarantees: a
dead worker loses only its run, a repeated command resumes, Ctrl-C stops promptly. Skipped without
Ray. Every Ray instance here is local, listens on the loopback interface only and is shut down by
the test."""

from __future__ import annotations

import os
import time

import pytest

# Before Ray is imported: a local-only node on 127.0.0.1 (Ray otherwise binds the machine's address).
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
os.environ.update(LOOPBACK)
ray = pytest.importorskip("ray")

from agents.compare import run_compare  # noqa: E402
from tests.agents.test_compare import SHORT, check_interrupted_then_resumed, summaries, sweep  # noqa: E402


def test_a_sweep_on_its_own_local_ray_instance_starts_and_stops_it(tmp_path):
    if ray.is_initialized():
        pytest.skip("another test left Ray running in this process")
    result = run_compare(sweep(tmp_path, executor="ray", seeds=2))
    assert result.complete and [row.n for row in result.agents] == [2, 2] and len(summaries(tmp_path)) == 4
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray instance of 2 CPUs for this module's tests; its address for ``--address``."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def test_a_ray_task_that_kills_its_worker_loses_only_its_run_and_a_repeat_resumes(ray_address, tmp_path):
    kill_file = tmp_path / "kill"
    kill_file.touch()
    config = sweep(tmp_path / "out", executor="ray", env_kwargs=dict(SHORT, kill_seed=1, kill_file=str(kill_file)))
    result = run_compare(config)
    assert set(result.failed_runs) == {"fixed_1.0_seed1", "fixed_0.5_seed1"}
    assert all("WorkerCrashedError" in why for why in result.failed_runs.values())
    assert [row.seeds for row in result.agents] == [[0, 2], [0, 2]]
    kill_file.unlink()
    resumed = run_compare(config)
    assert resumed.complete and resumed.reused_runs == 4 and [row.n for row in resumed.agents] == [3, 3]
    assert ray.is_initialized()  # a Ray instance the sweep did not start is left running


def test_ctrl_c_stops_a_ray_sweep_on_an_existing_cluster_promptly_and_a_repeat_resumes(ray_address, tmp_path):
    def cluster_released() -> None:  # the interrupted sweep's running tasks ended with it
        deadline = time.monotonic() + 20.0
        while ray.available_resources().get("CPU", 0.0) < 2.0:
            assert time.monotonic() < deadline, ray.available_resources()
            time.sleep(0.2)

    check_interrupted_then_resumed(tmp_path, ["--executor", "ray", "--address", ray_address],
                                   env=dict(os.environ, **LOOPBACK), after_interrupt=cluster_released)
