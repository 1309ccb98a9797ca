"""The ``atesd`` command: ``atesd run`` (one controlled run), ``atesd compare`` (agents x seeds),
``atesd warmstart`` (build or inspect the tiny default's cached warm-start checkpoint) and
``atesd calibrate`` (fit the surrogate to traces of real runs).

Examples::

    atesd run --env ATESD-Surrogate-v0 --agent beta --seed 0 --out runs/
    atesd run --env ATESD-Surrogate-v0 --agent ppo --train-episodes 40 --env-kwargs '{"total_updates": 100}'
    atesd compare --env ATESD-Surrogate-v0 --agents beta,fixed:1.0,fixed:0.5,random --seeds 10 --out runs/cmp
    atesd compare ... --executor ray --address auto   # the same sweep as Ray tasks on a running cluster
    atesd warmstart                      # build (or find) the tiny default's warm start, print its report
    atesd calibrate --traces runs/ --level-steps 2 3 4 --out my_surrogate.json
    torchrun --nproc_per_node 4 -m agents.cli run --env ATESD-Qwen3-v0 ...   # one run, data-parallel

``atesd compare`` repeated on the same ``--out`` reuses the runs that finished (an interrupted sweep
resumes); Ctrl-C stops it, summarizes what finished and prints the command that resumes it. Under
``torchrun`` / ``accelerate launch`` every process runs the same ``atesd run`` in lock-step (see
``distill_backend.distributed``); only rank 0 writes outputs and prints.

Every subcommand's options are the fields of its config dataclass (``RunConfig``, ``CompareConfig``,
``WarmstartCommand``, ``CalibrateCommand``), with their docstrings as help and their defaults; ``atesd run --help`` lists
them. SB3 agents (ppo, sac, a2c, td3, ppo-beta) first train for ``--train-episodes`` full runs on
seeds disjoint from the evaluated one, then act deterministically in one evaluated run. The ATESD agent
(``beta``...) learns online inside the evaluated run, as in the paper; ``--load``/``--save`` carry
its policy across runs.

An ``atesd run`` is checkpointed as it goes (``--checkpoint-every``): after a kill or Ctrl-C the same
command plus ``--resume`` continues it; a run directory that holds a run is replaced only with
``--overwrite``. Errors a user can fix (bad options, missing or unreadable files, a corrupt
checkpoint, an unknown env id, CUDA asked for on a machine without it) end the command with one line
that names the option or path and what to do, and exit code 2; Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import gymnasium as gym

from agents.compare import CompareConfig, markdown_table, run_compare
from agents.plots import plot_calibration
from agents.runner import CHECKPOINT_FILE, RunConfig, RunInterrupted, run_controlled
from exposure_env.calibration import CalibrateCommand, calibrate, evaluate, format_evaluation, format_report
from exposure_env.commandline import add_dataclass_arguments, dataclass_from_namespace
from exposure_env.errors import AtesdError, ConfigError
from exposure_env.io import write_json
from exposure_env.launch import launch_position

# Field -> flag names where the flag is shorter than the field (the rest are the field names).
RUN_FLAGS = {"env_id": "env", "out_dir": "out", "run_name": "name", "load_path": "load", "save_path": "save",
             "progress_bar": "progress"}
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
COMPARE_FLAGS = {"env_id": "env", "out_dir": "out"}


@dataclass(frozen=True)
class WarmstartCommand:
    """One ``atesd warmstart``."""

    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """JSON object of ATESD-Qwen3-v0 backend kwargs that shape the recipe (warmstart, task,
    model_size); the default recipe without it."""
    inspect: bool = False
    """Only print the report of an already cached checkpoint (an error if none is cached)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atesd", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    add_dataclass_arguments(sub.add_parser("run", help="one controlled run with log, plot and summary"),
                            RunConfig, RUN_FLAGS)
    add_dataclass_arguments(sub.add_parser("compare", help="agents x seeds with IQM, CIs, P(improvement)"),
                            CompareConfig, COMPARE_FLAGS)
    add_dataclass_arguments(sub.add_parser("warmstart", help="build or inspect the cached warm start of "
                                           "ATESD-Qwen3-v0's tiny default"), WarmstartCommand)
    add_dataclass_arguments(sub.add_parser("calibrate", help="fit the surrogate's parameters to traces of real runs"),
                            CalibrateCommand)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    command = f"atesd {args.command}"
    try:
        if args.command == "run":
            return _run(dataclass_from_namespace(RunConfig, args))
        if args.command == "compare":
            return _compare(dataclass_from_namespace(CompareConfig, args), argv)
        if args.command == "calibrate":
            return _calibrate(dataclass_from_namespace(CalibrateCommand, args))
        return _warmstart(dataclass_from_namespace(WarmstartCommand, args))
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the boundary: errors a user can fix become one line, the rest re-raise
        message = user_error_message(exc)
        if message is None:
            raise
        print(f"{command}: error: {message}", file=sys.stderr)
        return EXIT_ERROR


def user_error_message(exc: BaseException) -> str | None:
    """One line for an error a user can fix (ours, or a dependency's file and env-id errors), naming
    the path or field and what to do; None for anything else (a bug: let its traceback show)."""
    if isinstance(exc, AtesdError):
        return " ".join(str(exc).split())
    if isinstance(exc, OSError):
        path = exc.filename if exc.filename is not None else ""
        reason = exc.strerror or str(exc)
        return f"{path}: {reason}; check the path and its permissions" if path else f"{reason}; check the paths given"
    if isinstance(exc, gym.error.Error):
        return f"{exc} (gymnasium); check --env and --env-kwargs"
    return None


def _run(config: RunConfig) -> int:
    position = launch_position()
    if position.launched and config.resume:
        raise ConfigError("--resume", "a run in one process (a data-parallel run cannot be resumed yet)",
                          f"{position.world_size} processes")
    if not position.is_main:
        return _run_replica(config)
    try:
        summary = run_controlled(config)
    except RunInterrupted as exc:
        print(f"atesd run: {exc}. Continue it with the same command plus --resume.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        saved = config.work_dir / CHECKPOINT_FILE
        hint = (f"its last checkpoint is {saved}: the same command plus --resume continues from there"
                if saved.is_file() else "no checkpoint was saved yet: the same command plus --resume starts it over")
        print(f"atesd run: interrupted; {hint}.", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"{summary.agent} seed {summary.seed}: final score {summary.final_score:.4f} "
          f"(initial {summary.initial_score:.4f}), mean alpha {summary.mean_alpha:.3f}, "
          f"controller/env time {summary.controller_share:.2%}; outputs in {Path(summary.run_dir)}")
    return 0


def _run_replica(config: RunConfig) -> int:
    """A data-parallel replica other than rank 0 (``torchrun`` / ``accelerate launch``): the same run
    in lock-step with rank 0, whose outputs are the run's; this one's go to a temporary directory
    that is removed, and it prints nothing."""
    with tempfile.TemporaryDirectory(prefix="atesd-replica-") as scratch:
        run_controlled(dataclasses.replace(config, out_dir=scratch, run_name=None, tensorboard=False,
                                           progress_bar=False, plot=False, save_path=None))
    return 0


def _compare(config: CompareConfig, argv: Sequence[str]) -> int:
    """Run the sweep and print its table; an incomplete sweep exits non-zero (130 after Ctrl-C, 1
    with failed runs) and says how to resume it."""
    result = run_compare(config)
    if result.agents:
        print(markdown_table(result))
        print(f"wrote {config.out_dir}/{config.stem}.json, .md, .png ({result.wall_time_s:.0f} s)")
    if result.complete:
        return 0
    for name, reason in result.failed_runs.items():
        print(f"atesd compare: run {name} failed: {reason}", file=sys.stderr)
    finished = sum(row.n for row in result.agents)
    planned = len(config.agents) * config.seeds
    state = "interrupted" if result.interrupted else "incomplete"
    print(f"atesd compare: {state}: {finished} of {planned} runs finished ({result.reused_runs} reused from an "
          f"earlier call){'' if result.agents else '; nothing written'}. To resume (finished runs are kept, the "
          f"others run), repeat the command: atesd {shlex.join(argv)}", file=sys.stderr)
    return 130 if result.interrupted else 1


def _warmstart(command: WarmstartCommand) -> int:
    # The command line is the application layer: this one subcommand reaches the real backend, and
    # only here (imported on use), so `atesd run` on the surrogate never imports torch's model stack.
    from distill_backend.config import backend_config_from_kwargs
    from distill_backend.warmstart import (
        REPORT_FILE,
        cache_problem,
        ensure_warmstart,
        format_report,
        load_report,
        warmstart_dir,
    )

    recipe = backend_config_from_kwargs(dict(command.env_kwargs)).warmstart
    path = warmstart_dir(recipe)
    if command.inspect and not (path / REPORT_FILE).is_file():
        raise ConfigError("--inspect", "the key of an already built warm start", recipe.cache_key(),
                          hint=f"nothing cached at {path}; run `atesd warmstart` without --inspect to build it")
    problem = cache_problem(path) if path.exists() else "not built yet"
    if command.inspect and problem:
        raise ConfigError("--inspect", "the key of a usable cached warm start", recipe.cache_key(),
                          hint=f"the cache at {path} is unusable ({problem}); run `atesd warmstart` to rebuild it")
    if problem:
        print(f"building the warm start into {path} (cached for later runs)", file=sys.stderr)
    path = ensure_warmstart(recipe, progress=True)
    print(format_report(load_report(path)))
    print(f"checkpoint: {path}")
    return 0


def _calibrate(command: CalibrateCommand) -> int:
    result = evaluate(command) if command.evaluate else calibrate(command)
    out = Path(command.out)
    trajectories = result.pop("trajectories")
    write_json(out, result)
    plot_calibration(trajectories, out.with_suffix(".png"))
    print(format_evaluation(result["evaluated"]) if command.evaluate else format_report(result["report"]))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
