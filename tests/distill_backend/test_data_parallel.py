"""Data-parallel runs (torch.distributed, gloo on the loopback interface) against one process.

``torchrun --nproc_per_node 2`` runs ``data_parallel_worker`` (a short ATESD-Qwen3-v0 run on the
tiny test model, then ``atesd run``) in a subprocess that the test shuts down; the same run in this
process is the reference with the same global batch. The rollouts and evaluation answers keep only
the most likely token, so they do not depend on the sampling stream and the runs compare value by
value; what remains is floating-point summation order (batch shapes differ per rank, and the sums
of two ranks are added after DDP's all-reduce). Tolerances: observations, rewards, per-update
statistics and parameters within 1e-5 absolute (1e-4 relative); the last update's gradients within
1e-7 absolute (their largest entry is ~1e-2). Measured here: see docs/scaling.md.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.distill_backend import data_parallel_worker as worker

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLOSE = dict(rtol=1e-4, atol=1e-5)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _loopback_env() -> dict[str, str]:
    return dict(os.environ, GLOO_SOCKET_IFNAME="lo", MASTER_ADDR="127.0.0.1", OMP_NUM_THREADS="1")


def _launch_two_processes(out: pathlib.Path) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
               "-m", "tests.distill_backend.data_parallel_worker", str(out)]
    process = subprocess.Popen(command, cwd=ROOT, env=_loopback_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=300)
    finally:  # torchrun and both workers share the session: nothing outlives the test
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    assert process.returncode == 0, output[-4000:]


@pytest.fixture(scope="session")
def two_process_dir(request, tiny_cache, tiny_checkpoint, tmp_path_factory):
    """The 2-process run's records, launched once per test session: with pytest-xdist the first
    worker to get here runs it and the others wait for it (pytest-xdist's recipe for a session
    fixture that must run once)."""
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp()
    if hasattr(request.config, "workerinput"):  # an xdist worker: its base temp is per worker
        shared = shared.parent
    out = shared / "data_parallel_two_processes"
    with FileLock(str(out) + ".lock"):
        if not (out / "complete").exists():
            _launch_two_processes(out)
            (out / "complete").touch()
    return out


@pytest.fixture(scope="module")
def single(tiny_cache, tiny_checkpoint, tmp_path_factory):
    """The same run in this process, without a process group: the reference."""
    return worker.run(tmp_path_factory.mktemp("single"), "single")


@pytest.fixture(scope="module")
def runs(two_process_dir, single):
    """(output directory, rank 0's record, rank 1's record, the reference record)."""
    return two_process_dir, torch.load(two_process_dir / "rank0.pt"), torch.load(two_process_dir / "rank1.pt"), single


def test_two_processes_equal_one_process_with_the_same_global_batch(runs):
    _, rank0, _, single = runs
    assert rank0["alphas"] == list(worker.ALPHAS) == single["alphas"]
    for key in ("obs", "rewards", "traces", "scores"):
        torch.testing.assert_close(torch.tensor(rank0[key]), torch.tensor(single[key]), **CLOSE, msg=key)
    # The statistics move (a test of constants would pass trivially).
    assert np.ptp(np.array(single["traces"])[:, 0]) > 1e-3
    for mine, theirs in zip(rank0["grads"], single["grads"]):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-7)
    assert max(float(g.abs().max()) for g in single["grads"]) > 1e-3
    for mine, theirs in zip(rank0["params"], single["params"]):
        torch.testing.assert_close(mine, theirs, **CLOSE)
    assert rank0["evaluation"] == single["evaluation"]
    assert rank0["patterned_evaluation"] == single["patterned_evaluation"]
    assert 0 < rank0["patterned_evaluation"]["average_at_k"] < 1


def test_every_rank_returns_the_same_observations_and_rewards_and_applies_rank_zeros_ratio(runs):
    _, rank0, rank1, _ = runs
    # Rank 1 reset with another seed and asked for 1 - alpha: it ran rank 0's run regardless.
    for key in ("obs", "rewards", "alphas", "traces", "scores", "evaluation", "patterned_evaluation"):
        assert rank0[key] == rank1[key], key
    for mine, theirs in zip(rank0["params"], rank1["params"]):
        assert torch.equal(mine, theirs)


def test_ranks_start_from_rank_zeros_weights_even_when_their_own_init_differs(runs):
    out = runs[0]
    rank0, rank1 = (torch.load(out / f"lora_rank{r}.pt") for r in (0, 1))
    assert rank0["obs"] == rank1["obs"] and rank0["rewards"] == rank1["rewards"]
    for key in ("grads", "params"):
        assert all(torch.equal(a, b) for a, b in zip(rank0[key], rank1[key])), key
    assert max(float(g.abs().max()) for g in rank0["grads"]) > 0


def test_each_rank_samples_with_its_own_stream_and_rank_zero_keeps_the_run_seed(runs):
    _, rank0, rank1, single = runs
    assert rank0["sampling_seed"] == single["sampling_seed"] == worker.SEED
    assert rank1["sampling_seed"] != worker.SEED


def test_only_rank_zero_writes_the_command_lines_outputs_and_prints(runs):
    out = runs[0]
    main = json.loads((out / "cli_rank0.json").read_text())
    replica = json.loads((out / "cli_rank1.json").read_text())
    assert main["code"] == replica["code"] == 0
    assert main["out_dirs"] == [str(out / "cli")] and "final score" in main["stdout"]
    assert replica["out_dirs"] != main["out_dirs"] and not pathlib.Path(replica["out_dirs"][0]).exists()
    assert replica["stdout"] == ""
    run_dir = out / "cli" / "fixed_0.5_seed0"
    assert sorted(p.name for p in run_dir.iterdir()) == ["alpha.png", "decisions.jsonl", "summary.json"]
    assert len((run_dir / "decisions.jsonl").read_text().splitlines()) == 1


def test_a_group_of_one_process_changes_no_bit(single, tmp_path):
    """The collectives, the global token normalisation and DDP reduce to the plain arithmetic: with
    a process group of one, the run equals the run without a group exactly."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        grouped = worker.run(tmp_path, "group_of_one")
    finally:
        dist.destroy_process_group()
    for key in ("obs", "rewards", "alphas", "traces", "scores", "evaluation", "patterned_evaluation"):
        assert grouped[key] == single[key], key
    for key in ("grads", "params"):
        assert all(torch.equal(a, b) for a, b in zip(grouped[key], single[key])), key


def test_shares_split_a_global_batch_and_refuse_one_smaller_than_the_world():
    from distill_backend.distributed import Replicas, rank_seed
    from exposure_env.errors import ConfigError
    from exposure_env.launch import LaunchPosition

    shares = [Replicas(LaunchPosition(rank, 3, rank), "cpu", False).shard(10) for rank in range(3)]
    assert [list(range(10))[s] for s in shares] == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]
    with pytest.raises(ConfigError, match="questions_per_update.*at least the number of data-parallel processes"):
        Replicas(LaunchPosition(0, 3, 0), "cpu", False).check_share("questions_per_update", 2)
    assert rank_seed(7, 0) == 7 and len({rank_seed(7, r) for r in range(4)}) == 4
