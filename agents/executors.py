"""Where the runs of a sweep execute: in this process, in local worker processes, or as Ray tasks.

:func:`execute` takes the runs still to do (index -> :class:`~agents.runner.RunConfig`) and returns
an :class:`Outcome`: the summaries of the runs that finished, why the others failed, and whether
Ctrl-C stopped the sweep. Every executor keeps the same contract:

- a run that raises, or whose worker process dies (killed, out of memory), is reported as failed
  and loses only itself: the other runs go on (a dead local worker is replaced);
- Ctrl-C (SIGINT) stops the sweep promptly: running runs are ended (local workers terminated; Ray
  tasks end with the sweep's Ray job, or are cancelled in a Ray session the caller opened), queued
  ones never start, and the executor returns what had finished;
- each finished run has already written its own directory (``summary.json`` last), so what finished
  is on disk whatever happens to the sweep afterwards.

The executors:

- ``process`` (default): a pool of ``workers`` local processes (``spawn``: they start clean, without
  the parent's threads), each running one run at a time and talking to the parent over its own
  pipe, so a dying worker breaks nothing but its own run (``concurrent.futures`` would mark the
  whole pool broken). Workers ignore SIGINT: the terminal's Ctrl-C reaches the parent, which ends
  them. With ``workers=1`` the runs execute in this process, one after the other.
- ``ray``: one Ray task per run (1 CPU each, no automatic retry, so a crash is reported once), on a
  local Ray instance of ``workers`` CPUs that the sweep starts and stops, or on the cluster at
  ``address`` (every node needs this package installed).

Nothing here decides which runs to do: skipping the runs that already finished (resume) belongs to
the caller (:func:`agents.compare.run_compare`), the same for every executor. This module knows
run configs and run summaries, not statistics or output files.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections import deque
from multiprocessing import connection
from typing import Any, Callable, Mapping, NamedTuple

from agents.records import RunSummary
from agents.runner import RunConfig, run_controlled
from exposure_env.errors import BackendUnavailableError, check_choice

EXECUTORS: tuple[str, ...] = ("process", "ray")

OnRunEnd = Callable[[int, "RunSummary | None", str], None]
"""Called as each run ends: its index, its summary (None when it failed) and why it failed ('')."""

STOP_GRACE_S = 3.0
"""How long an ended worker gets to exit before it is killed."""


class Outcome(NamedTuple):
    """What an executor did with the runs it was given."""

    finished: dict[int, RunSummary]
    """Summaries of the runs that finished, by index."""
    failed: dict[int, str]
    """Why each failed run failed (its exception, or how its worker died), by index."""
    interrupted: bool
    """True when Ctrl-C stopped the sweep (runs in neither dict did not finish)."""


def run_job(config: RunConfig, torch_threads: int) -> RunSummary:
    """One run in a worker (local process or Ray task), with ``torch_threads`` intra-op threads."""
    try:
        import torch

        torch.set_num_threads(torch_threads)
    except ImportError:  # pragma: no cover - torch is part of the agents extra
        pass
    return run_controlled(config)


def execute(jobs: Mapping[int, RunConfig], executor: str = "process", workers: int = 2, torch_threads: int = 1,
            address: str | None = None, on_end: OnRunEnd | None = None) -> Outcome:
    """Run ``jobs`` with ``executor`` (see the module docstring); ``on_end`` hears of each run's end."""
    check_choice("executor", executor, EXECUTORS)
    report = on_end or (lambda index, summary, error: None)
    if not jobs:
        return Outcome({}, {}, False)
    if executor == "ray":
        return _run_ray(jobs, workers, torch_threads, address, report)
    if workers == 1:
        return _run_here(jobs, report)
    return _run_processes(jobs, workers, torch_threads, report)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


# -- in this process ---------------------------------------------------------------------------
def _run_here(jobs: Mapping[int, RunConfig], report: OnRunEnd) -> Outcome:
    """One run after the other in this process (its torch threads are left alone)."""
    finished, failed = {}, {}
    try:
        for index, job in jobs.items():
            try:
                finished[index] = run_controlled(job)
                report(index, finished[index], "")
            except Exception as exc:  # noqa: BLE001 - a failed run is reported, the sweep goes on
                failed[index] = _describe(exc)
                report(index, None, failed[index])
    except KeyboardInterrupt:
        return Outcome(finished, failed, True)
    return Outcome(finished, failed, False)


# -- local worker processes --------------------------------------------------------------------
def _worker_main(conn: connection.Connection, torch_threads: int) -> None:
    """A worker: run each ``(index, RunConfig)`` received, answer ``(index, summary, error)``; stop
    on ``None`` or when the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        index, job = message
        try:
            conn.send((index, run_job(job, torch_threads), ""))
        except Exception as exc:  # noqa: BLE001 - report it and serve the next run
            conn.send((index, None, _describe(exc)))


class _Worker:
    """One local worker process, its pipe, and the run it is busy with (None when idle)."""

    def __init__(self, context: Any, torch_threads: int) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child, torch_threads), name="atesd-compare-worker")
        self.process.start()
        child.close()
        self.index: int | None = None

    def give(self, index: int, job: RunConfig) -> None:
        self.index = index
        self.conn.send((index, job))

    def answer(self) -> tuple[int, RunSummary | None, str, bool]:
        """``(index, summary, error, alive)`` of the run that just ended (the worker died if not alive)."""
        index = self.index
        assert index is not None
        self.index = None
        try:
            if self.conn.poll():
                _, summary, error = self.conn.recv()
                return index, summary, error, True
        except (EOFError, OSError):
            pass
        self.process.join(STOP_GRACE_S)
        code = self.process.exitcode
        how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        return index, None, f"its worker process died ({how})", False

    def stop(self) -> None:
        """End the worker: politely when idle, at once when busy."""
        if self.process.is_alive():
            if self.index is None:
                try:
                    self.conn.send(None)
                except OSError:
                    pass
                self.process.join(STOP_GRACE_S)
            if self.process.is_alive():
                self.process.terminate()
                self.process.join(STOP_GRACE_S)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
        self.conn.close()


def _run_processes(jobs: Mapping[int, RunConfig], workers: int, torch_threads: int, report: OnRunEnd) -> Outcome:
    context = multiprocessing.get_context("spawn")
    queue = deque(jobs.items())
    pool: list[_Worker] = []
    finished: dict[int, RunSummary] = {}
    failed: dict[int, str] = {}
    try:
        while queue or any(w.index is not None for w in pool):
            for worker in pool:
                if worker.index is None and queue:
                    worker.give(*queue.popleft())
            while queue and len(pool) < workers:
                pool.append(_Worker(context, torch_threads))
                pool[-1].give(*queue.popleft())
            busy = [w for w in pool if w.index is not None]
            ready = set(connection.wait([w.conn for w in busy] + [w.process.sentinel for w in busy]))
            for worker in busy:
                if worker.conn not in ready and worker.process.sentinel not in ready:
                    continue
                index, summary, error, alive = worker.answer()
                if summary is not None:
                    finished[index] = summary
                else:
                    failed[index] = error
                report(index, summary, error)
                if not alive:  # replaced on the next round if runs remain
                    worker.stop()
                    pool.remove(worker)
    except KeyboardInterrupt:
        return Outcome(finished, failed, True)
    finally:
        for worker in pool:
            worker.stop()
    return Outcome(finished, failed, False)


# -- Ray ---------------------------------------------------------------------------------------
def _ray():  # noqa: ANN202 - the ray module
    try:
        import ray
    except ImportError as exc:
        raise BackendUnavailableError("executor 'ray' needs Ray: pip install -e '.[ray]'") from exc
    return ray


def _ray_reason(ray: Any, exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(cause, BaseException):
        return _describe(cause)
    first = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {first[0] if first else ''}"


def _run_ray(jobs: Mapping[int, RunConfig], workers: int, torch_threads: int, address: str | None,
             report: OnRunEnd) -> Outcome:
    ray = _ray()
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, logging_level="WARNING")
        else:  # a private local instance, ended with the sweep
            ray.init(num_cpus=workers, include_dashboard=False, logging_level="WARNING")
    finished: dict[int, RunSummary] = {}
    failed: dict[int, str] = {}
    pending: list = []
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(run_job)
        index_of = {task.remote(job, torch_threads): index for index, job in jobs.items()}
        pending = list(index_of)
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=0.5)  # short waits: Ctrl-C gets through
            for ref in done:
                index = index_of[ref]
                try:
                    finished[index] = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    failed[index] = _ray_reason(ray, exc)
                report(index, finished.get(index), failed.get(index, ""))
    except KeyboardInterrupt:
        if not started_here:  # the caller's Ray session goes on: end this sweep's tasks in it
            for ref in pending:
                ray.cancel(ref, force=True)
        # Otherwise ray.shutdown() below ends this driver's job, and Ray ends the job's tasks with it
        # (cancelling them first raced with their completion in Ray 2.60 and aborted the driver).
        return Outcome(finished, failed, True)
    finally:
        if started_here:
            ray.shutdown()
    return Outcome(finished, failed, False)
