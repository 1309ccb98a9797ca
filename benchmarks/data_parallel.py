"""Data-parallel speed: updates per second of one run with 1 vs N processes at an equal global batch.

Question: how many student updates per second does ``Qwen3DistillBackend.run_window`` make on the
tiny default when ``torchrun`` runs it in ``N`` processes (gloo, CPU) instead of one, with the same
global batch (``questions_per_update`` x ``rollouts_per_question``, split across the processes)?

Each measurement is one ``torchrun --nproc_per_node P`` launch of this script in worker mode (the
1-process launch takes the single-process path: no process group). Every process builds the
backend from the cached tiny default, resets, runs one untimed warm-up window, then times
``windows`` calls of ``run_window(alpha, hold_window)`` (evaluation off: ``eval_every=0``; the
probe statistics are measured after every update as in the env's default). Rank 0 reports the
updates per second. Launches alternate between the process counts for ``repeats`` rounds, so slow
phases of a shared machine hit both; the result is the per-round ratio with a 95% t-interval.

What to expect on a 2-core machine: two processes have at most two cores between them, and the
machine's other load takes its share; the collectives (one DDP all-reduce of the gradients plus a
few small reductions per update) are small for a 0.5M-parameter model. The result names the cores
and the 1-minute load average at the start and end.

Run: ``python -m benchmarks.data_parallel`` (writes ``benchmarks/results/data_parallel.json``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from exposure_env.commandline import parse_dataclass
from exposure_env.io import write_json
from exposure_env.stats import t_interval


@dataclass(frozen=True)
class Args:
    """Command-line arguments (each field is a ``--flag``)."""

    out: str = "benchmarks/results/data_parallel.json"
    """Where to write the JSON result (atomically)."""
    processes: tuple[int, ...] = (1, 2)
    """Process counts to compare (the first is the baseline)."""
    repeats: int = 3
    """Rounds; each round launches every process count once."""
    windows: int = 3
    """Timed windows per launch."""
    hold_window: int = 4
    """Updates per window (the env default)."""
    reveal_ratio: float = 0.75
    """Reveal ratio of the timed windows."""
    questions_per_update: int = 16
    """Global questions per update (the backend default)."""
    rollouts_per_question: int = 4
    """Rollouts per question (the backend default)."""
    threads: int = 1
    """torch intra-op threads per process."""
    seed: int = 0
    """Run seed."""
    worker: str = ""
    """Internal: run as a torchrun worker and write rank 0's timing to this path."""


def backend_kwargs(args: Args) -> dict[str, Any]:
    return dict(device="cpu", eval_every=0, questions_per_update=args.questions_per_update,
                rollouts_per_question=args.rollouts_per_question)


def worker(args: Args) -> None:
    """One process of a launch: time ``run_window`` on the tiny default, rank 0 writes the result."""
    import torch

    from distill_backend.backend import Qwen3DistillBackend
    from distill_backend.config import backend_config_from_kwargs

    torch.set_num_threads(args.threads)
    backend = Qwen3DistillBackend(backend_config_from_kwargs(backend_kwargs(args)))
    backend.reset(args.seed)
    backend.run_window(args.reveal_ratio, 1)  # warm-up: first-call allocations, DDP's bucket rebuild
    start = time.perf_counter()
    for _ in range(args.windows):
        backend.run_window(args.reveal_ratio, args.hold_window)
    elapsed = time.perf_counter() - start
    replicas = backend.replicas
    if replicas.rank == 0:
        updates = args.windows * args.hold_window
        Path(args.worker).write_text(json.dumps({"processes": replicas.world_size, "updates": updates,
                                                 "seconds": elapsed, "updates_per_s": updates / elapsed}))
    backend.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(args: Args, processes: int, scratch: Path) -> dict[str, Any]:
    """One ``torchrun`` launch of ``processes`` workers on the loopback interface; rank 0's timing."""
    result = scratch / f"p{processes}_{time.monotonic_ns()}.json"
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in asdict(args).items()
             if name not in ("processes", "out", "worker")]
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(processes),
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
               "-m", "benchmarks.data_parallel", *flags, f"--worker={result}"]
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS=str(args.threads))
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"torchrun with {processes} processes failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    timing = json.loads(result.read_text())
    timing["launch_wall_s"] = time.perf_counter() - start
    return timing


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_dataclass(Args, argv, __doc__)
    if args.worker:
        worker(args)
        return {}
    start, load_start = time.perf_counter(), os.getloadavg()[0]
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="atesd-data-parallel-") as scratch:
        for round_index in range(args.repeats):
            order = args.processes if round_index % 2 == 0 else tuple(reversed(args.processes))
            timings = {p: launch(args, p, Path(scratch)) for p in order}
            rounds.append({str(p): timings[p] for p in args.processes})
            print(f"round {round_index}: " + ", ".join(f"{p} processes {timings[p]['updates_per_s']:.3f} updates/s"
                                                        for p in args.processes), file=sys.stderr)
    base = str(args.processes[0])
    per_count = {}
    for p in args.processes:
        rates = np.array([r[str(p)]["updates_per_s"] for r in rounds])
        ratios = rates / np.array([r[base]["updates_per_s"] for r in rounds])
        per_count[str(p)] = {"updates_per_s": t_interval(rates)._asdict(), "speedup_vs_first": t_interval(ratios)._asdict(),
                             "per_round_updates_per_s": rates.tolist()}
    payload = {
        "question": "updates/s of one run, N processes (torchrun, gloo, CPU) vs 1, equal global batch",
        "args": asdict(args), "backend_kwargs": backend_kwargs(args),
        "global_batch": f"{args.questions_per_update} questions x {args.rollouts_per_question} rollouts",
        "cpu_count": os.cpu_count(), "load_average_1min": {"start": load_start, "end": os.getloadavg()[0]},
        "results": per_count, "rounds": rounds, "wall_time_s": time.perf_counter() - start,
    }
    write_json(args.out, payload)
    print(json.dumps(per_count, indent=1))
    return payload


if __name__ == "__main__":
    main()
