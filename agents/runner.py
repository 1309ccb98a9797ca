"""``atesd run``: one controlled run with its decision log, plot and summary, that survives a kill.

``run_controlled`` builds the env and the controller from strings, optionally trains the controller
first (SB3 agents and ``beta-carry``: ``train_episodes`` runs on seeds disjoint from the evaluated
one), then runs one evaluated episode (:func:`agents.episode.rollout`) with a progress bar, writing

- ``decisions.jsonl``: one line per decision with the window's full per-update trace, flushed as it
  happens;
- ``summary.json``: final score, mean alpha, timings;
- ``alpha.png``: the reveal ratio over updates with the score curve;
- ``tensorboard/`` with ``tensorboard=True``; the controller's checkpoint with ``save_path``.

Where the outputs go. A run is written into ``<out>/<name>.partial`` and moved to ``<out>/<name>``
only once it is complete, so ``<out>/<name>`` always holds one complete run (never a mix of two):

- a run directory that already holds a run is never overwritten silently: the run refuses to
  start, unless ``resume`` (continue an unfinished run; a finished one is returned as it is) or
  ``overwrite`` (start over; a finished run it replaces stays in place until the new one completes);
- ``out_dir``, ``save_path`` and ``load_path`` are checked before any work starts.

Checkpoints. ``<name>.partial/checkpoint.safetensors`` (:mod:`agents.checkpoint`: no pickle) holds the
whole run: the env's state (``ExposureEnv.state_dict()``, the backend's included), the
controller's complete state, the episode loop's progress, the decision log's length, the global
RNG states (``random``, numpy, torch) and the timings so far. It is written atomically after
training (if any), every ``checkpoint_every`` decisions, after the last decision, and at Ctrl-C:
the first Ctrl-C lets the current decision finish, saves, and stops with
:class:`RunInterrupted`; a second one stops at once (the last checkpoint stays). ``resume`` restores
all of it (the decision log is cut back to the checkpoint's length) and continues, ending with the
same ``decisions.jsonl`` and ``summary.json`` as an uninterrupted run except the wall-clock fields.
Training before the evaluated run is not checkpointed: a run killed while training trains again.

It knows env ids and the Gymnasium API, never a backend.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import math
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

import gymnasium as gym
import numpy as np

import exposure_env  # noqa: F401 - registers the env ids
from agents.base import Controller, RunContext
from agents.checkpoint import read_checkpoint, read_metadata, write_checkpoint
from agents.episode import EpisodeProgress, StepRecord, rollout
from agents.plots import plot_run
from agents.records import RunSummary
from agents.registry import make_controller, spec_inputs
from exposure_env.errors import CheckpointError, ConfigError, OutputPathError, check_range, store_integers
from exposure_env.io import to_plain, write_json
from exposure_env.registration import REGISTERED_IDS, SURROGATE_ID
from exposure_env.schema import OBSERVATION_NAMES

LOGGER = logging.getLogger(__name__)

# Training runs of controllers that train before the evaluated run use seeds from here on, so they
# never replay the evaluated run (seeds of evaluated runs are small integers).
TRAIN_SEED_OFFSET = 1_000_000
PARTIAL_SUFFIX = ".partial"
CHECKPOINT_FILE = "checkpoint.safetensors"
LOG_FILE = "decisions.jsonl"
SUMMARY_FILE = "summary.json"
RUN_CHECKPOINT_KIND = "run"
# The options that define a run: a resumed run must be started with the same values.
RUN_IDENTITY_FIELDS: tuple[str, ...] = ("env_id", "agent", "seed", "env_kwargs", "train_episodes")


@dataclass(frozen=True)
class RunConfig:
    """One ``atesd run``."""

    env_id: str = SURROGATE_ID
    """Registered env id (``ATESD-Surrogate-v0`` or ``ATESD-Qwen3-v0``)."""
    agent: str = "beta"
    """Agent spec (see :mod:`agents.registry`)."""
    seed: int = 0
    """Seed of the evaluated run (env reset and controller exploration)."""
    out_dir: str = "runs"
    """Parent directory; the run writes into ``out_dir/run_name`` (``out_dir/run_name.partial`` until it
    is complete)."""
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Plain-data keyword arguments for ``gym.make`` (env config and backend fields)."""
    train_episodes: int = 20
    """Training runs before the evaluated one, for agents that train first (SB3); ignored by the
    ATESD agent (it learns online) and the baselines."""
    run_name: str | None = None
    """Sub-directory name; default ``<agent>_seed<seed>`` with unsafe characters replaced."""
    tensorboard: bool = False
    """Also write TensorBoard scalars to ``<run>/tensorboard``."""
    progress_bar: bool = True
    """Show a tqdm bar over decisions."""
    plot: bool = True
    """Write ``alpha.png``."""
    load_path: str | None = None
    """Controller checkpoint to load before the run (carry-over learning; agents with learned state only)."""
    save_path: str | None = None
    """Where to save the controller after the run (default: not saved; agents with learned state only)."""
    checkpoint_every: int = 10
    """Save a run checkpoint every this many decisions (0: only after training, after the last
    decision and at Ctrl-C). A checkpoint holds the backend's weights and optimizer state: on a large
    model, raise it."""
    resume: bool = False
    """Continue the unfinished run in the run directory from its checkpoint (a finished run is
    returned as it is; with nothing saved the run starts from scratch). The other options must be
    the ones the run was started with."""
    overwrite: bool = False
    """Start over even though the run directory holds a run (a finished run it replaces is kept until
    the new one completes)."""

    def __post_init__(self) -> None:
        store_integers(self)
        check_range("seed", self.seed, 0, None, integer=True)
        check_range("train_episodes", self.train_episodes, 0, None, integer=True)
        check_range("checkpoint_every", self.checkpoint_every, 0, None, integer=True)
        if self.resume and self.overwrite:
            raise ConfigError("resume/overwrite", "at most one of them", (self.resume, self.overwrite),
                              hint="--resume continues the saved run, --overwrite discards it")

    @property
    def run_dir(self) -> Path:
        """Where the complete run lives."""
        name = self.run_name or f"{self.agent}_seed{self.seed}"
        safe = "".join(c if c.isalnum() or c in "-_.=+" else "_" for c in name)
        return Path(self.out_dir) / safe

    @property
    def work_dir(self) -> Path:
        """Where the run is written until it is complete (its checkpoint lives here)."""
        return self.run_dir.with_name(self.run_dir.name + PARTIAL_SUFFIX)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run after saving a checkpoint; ``resume`` continues it."""

    def __init__(self, work_dir: Path, decisions: int, total: int) -> None:
        self.work_dir, self.decisions, self.total = work_dir, decisions, total
        super().__init__(f"interrupted after decision {decisions} of {total}; checkpoint saved in {work_dir}")

    def __reduce__(self) -> tuple[Any, ...]:  # crosses process boundaries (compare's workers)
        return type(self), (self.work_dir, self.decisions, self.total)


def make_env_factory(env_id: str, env_kwargs: Mapping[str, Any]) -> Callable[[], gym.Env]:
    kwargs = dict(env_kwargs)
    return lambda: gym.make(env_id, **kwargs)


# -- before any work ------------------------------------------------------------------------------
class _Start(NamedTuple):
    """How a run starts: from scratch, from a checkpoint, or not at all (already finished)."""

    checkpoint: Mapping[str, Any] | None
    finished: RunSummary | None


def check_env_id(env_id: str) -> None:
    """Raise :class:`ConfigError` unless ``env_id`` is registered with Gymnasium. Gymnasium's
    ``"module:EnvId-v0"`` form is accepted: the module is imported first (it registers the id)."""
    module, _, name = env_id.rpartition(":")
    try:
        if module:
            importlib.import_module(module)
        gym.spec(name)
    except (gym.error.Error, ImportError) as exc:
        raise ConfigError("env_id (--env)", "a registered env id (" + ", ".join(REGISTERED_IDS)
                          + ", or one registered with gymnasium)", env_id) from exc


def _check_writable_dir(directory: Path, what: str) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".atesd-write-check-"):
            pass
    except OSError as exc:
        raise OutputPathError(f"{what} {directory}: cannot write there ({exc.strerror or exc}); "
                              "choose a writable directory") from exc


def check_outputs(config: RunConfig, controller: Controller) -> None:
    """Check the output and input paths before any work: ``out_dir`` and ``save_path`` writable,
    ``load_path`` a checkpoint, and ``save``/``load`` only for agents with learned state."""
    _check_writable_dir(Path(config.out_dir), "out_dir (--out)")
    for flag, path in (("save_path (--save)", config.save_path), ("load_path (--load)", config.load_path)):
        if path and not getattr(controller, "has_state", False):
            raise ConfigError(flag, "unset for an agent without learned state (only beta..., ppo, sac, a2c, td3 and "
                              "ppo-beta save and load checkpoints)", config.agent,
                              hint=f"{config.agent} is fully described by its spec; drop {flag.split()[-1][1:-1]}")
    if config.save_path:
        save = Path(config.save_path)
        if save.is_dir():
            raise OutputPathError(f"save_path (--save) {save}: is a directory; give a file path")
        for run_dir in (config.run_dir, config.work_dir):
            if save.resolve().is_relative_to(run_dir.resolve()):
                raise OutputPathError(f"save_path (--save) {save}: inside the run directory {run_dir}, which is "
                                      "replaced as a whole; save the controller outside it")
        _check_writable_dir(save.parent, "save_path (--save): folder")
    if config.load_path:
        read_metadata(config.load_path)


def _read_summary(run_dir: Path, config: RunConfig) -> RunSummary:
    names = {f.name for f in dataclasses.fields(RunSummary)}
    try:
        payload = json.loads((run_dir / SUMMARY_FILE).read_text())
        summary = RunSummary(**{k: v for k, v in payload.items() if k in names})
    except (OSError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{run_dir / SUMMARY_FILE}: unreadable run summary ({exc}); --overwrite to run again") \
            from exc
    check_agent_inputs(payload.get("agent_inputs"), config.agent, run_dir / SUMMARY_FILE)
    return summary


def check_agent_inputs(recorded: Mapping[str, Any] | None, agent: str, where: Path) -> None:
    """Refuse to reuse a run whose agent read other inputs than ``agent`` reads now
    (:func:`agents.registry.spec_inputs`: a best-fixed sweep that now names another alpha, a
    pre-trained checkpoint that was replaced). Runs written before inputs were recorded (``None``)
    cannot be checked and are reused with a warning."""
    current = to_plain(spec_inputs(agent))
    if recorded is None:
        if current:
            LOGGER.warning("%s: made before agent inputs were recorded; cannot check that %s still reads %s",
                           where, agent, current)
        return
    if to_plain(recorded) != current:
        raise ConfigError("agent inputs", f"{current} (what {agent} reads now)", to_plain(recorded),
                          hint=f"{where} was made when the agent's file said otherwise; run it again "
                               "(--overwrite for atesd run, --rerun for atesd compare) or restore the file")


def _non_empty(directory: Path) -> bool:
    return directory.is_dir() and any(directory.iterdir())


def plan_start(config: RunConfig) -> _Start:
    """Decide from what is on disk how the run starts; refuse to touch a run without ``resume`` or
    ``overwrite`` (see the module docstring)."""
    final, work = config.run_dir, config.work_dir
    checkpoint_file = work / CHECKPOINT_FILE
    if final.exists() and not final.is_dir():
        raise OutputPathError(f"run directory {final}: exists and is not a directory; choose another --name or --out")
    if config.overwrite:
        if work.exists():
            shutil.rmtree(work)
        return _Start(None, None)
    if _non_empty(work):
        if config.resume:
            if checkpoint_file.is_file():
                return _Start(_read_run_checkpoint(checkpoint_file, config), None)
            if (work / SUMMARY_FILE).is_file():  # complete, stopped just before it was moved into place
                _publish(work, final)
                return _Start(None, _read_summary(final, config))
            LOGGER.warning("%s holds no checkpoint (the run stopped before its first one): starting the run over",
                           work)
            shutil.rmtree(work)
            return _Start(None, None)
        saved = "a checkpoint" if checkpoint_file.is_file() else "no checkpoint yet"
        raise OutputPathError(f"{work} holds an unfinished run ({saved}); pass --resume to continue it, "
                              "--overwrite to start over, or choose another --name/--out")
    if _non_empty(final):
        if config.resume and (final / SUMMARY_FILE).is_file():
            return _Start(None, _read_summary(final, config))
        what = "a finished run" if (final / SUMMARY_FILE).is_file() else "files but no summary.json"
        raise OutputPathError(f"run directory {final} already holds {what}; pass --overwrite to replace it (it is "
                              "kept until the new run completes)" + (", --resume to keep it" if what[0] == "a" else "")
                              + ", or choose another --name/--out")
    return _Start(None, None)


def _identity(config: RunConfig) -> dict[str, Any]:
    return to_plain({name: getattr(config, name) for name in RUN_IDENTITY_FIELDS}
                    | {"agent_inputs": spec_inputs(config.agent)})


def _read_run_checkpoint(path: Path, config: RunConfig) -> Mapping[str, Any]:
    state = read_checkpoint(path, RUN_CHECKPOINT_KIND)
    saved, current = state["identity"], _identity(config)
    for name in RUN_IDENTITY_FIELDS:
        if saved.get(name) != current[name]:
            raise ConfigError(name, f"{saved.get(name)!r} (the value the checkpointed run was started with)",
                              current[name], hint=f"resume with the run's options, or --overwrite to start over "
                              f"({path})")
    check_agent_inputs(saved.get("agent_inputs"), config.agent, path)
    return state


# -- the run --------------------------------------------------------------------------------------
def run_controlled(config: RunConfig, controller: Controller | None = None) -> RunSummary:
    """Run one controlled episode and write its log, plot and summary (see the module docstring)."""
    start = time.perf_counter()
    check_env_id(config.env_id)
    controller = controller if controller is not None else make_controller(config.agent, seed=config.seed)
    check_outputs(config, controller)
    plan = plan_start(config)
    if plan.finished is not None:
        return plan.finished
    saved = plan.checkpoint
    work = config.work_dir
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = CheckpointWriter(work / CHECKPOINT_FILE, config)
    make_env = make_env_factory(config.env_id, config.env_kwargs)
    if saved is not None:
        controller.load_state_dict(saved["controller"])
        checkpoint.train_time_s, checkpoint.elapsed_before = saved["train_time_s"], saved["elapsed_s"]
    else:
        if config.load_path:
            controller.load(config.load_path)
        if controller.trains_before_run:
            t0 = time.perf_counter()
            controller.train(make_env, config.train_episodes, seed=TRAIN_SEED_OFFSET + config.seed)
            checkpoint.train_time_s = time.perf_counter() - t0
    checkpoint.started = start

    env = make_env()
    progress = EpisodeProgress(seed=config.seed)
    logger: DecisionLogger | None = None
    try:
        if saved is not None and saved["progress"]["obs"] is not None:
            progress = EpisodeProgress.from_state_dict(saved["progress"])
            env.reset(seed=config.seed)  # the wrappers' bookkeeping; the state is then replaced
            env.unwrapped.load_state_dict(saved["env"])
            _restore_wrappers(env, progress.step)
        if saved is not None:
            _set_global_rng_state(saved["rng"])
        logger = DecisionLogger(work, config, saved["log"] if saved is not None else None)
        if saved is None:
            checkpoint.save(env, controller, progress, logger)  # after training: a kill now does not train again
        with StopRequest() as stop:
            def on_step(record: StepRecord) -> None:
                logger.log(record)
                every = config.checkpoint_every
                if progress.done or stop.requested or (every and progress.step % every == 0):
                    checkpoint.save(env, controller, progress, logger)
                if stop.requested and not progress.done:
                    assert progress.context is not None
                    raise RunInterrupted(work, progress.step, progress.context.num_decisions)

            episode = rollout(env, controller, config.seed, on_step=on_step, on_reset=logger.begin, progress=progress)
    finally:
        if logger is not None:
            logger.close()
        env.close()

    summary = RunSummary(
        agent=config.agent, env_id=config.env_id, seed=config.seed, final_score=episode.final_score,
        initial_score=episode.initial_score, best_score=max(episode.scores, default=episode.initial_score),
        mean_alpha=float(np.mean(episode.alphas)) if episode.alphas else math.nan,
        total_reward=episode.total_reward, num_decisions=len(episode.alphas), diverged=episode.diverged,
        controller_time_s=episode.controller_time_s, env_time_s=episode.env_time_s,
        train_time_s=checkpoint.train_time_s, wall_time_s=checkpoint.elapsed(), run_dir=str(config.run_dir),
        alphas=episode.alphas, scores=episode.scores, updates=episode.updates,
    )
    payload = dataclasses.asdict(summary) | {"controller_share": summary.controller_share,
                                             "env_kwargs": dict(config.env_kwargs),
                                             "agent_inputs": checkpoint.identity["agent_inputs"],
                                             "controller_end_stats": dict(episode.end_stats)}
    if config.plot:
        plot_run(summary, work / "alpha.png")
    if config.save_path:
        controller.save(config.save_path)
    write_json(work / SUMMARY_FILE, payload)  # last: a summary marks the directory complete
    (work / CHECKPOINT_FILE).unlink(missing_ok=True)
    _publish(work, config.run_dir)
    return summary


def _publish(work: Path, final: Path) -> None:
    """Move the complete run ``work`` to ``final``; a run already there is removed only afterwards."""
    aside = None
    if final.exists():
        aside = final.with_name(f".{final.name}.replaced-{os.getpid()}")
        os.replace(final, aside)
    os.replace(work, final)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def _restore_wrappers(env: gym.Env, decisions: int) -> None:
    """Wrapper bookkeeping of a resumed episode: a ``TimeLimit`` has seen ``decisions`` steps."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            env._elapsed_steps = decisions
        env = env.env


def _global_rng_state() -> dict[str, Any]:
    """The process-wide RNGs: ``random``, numpy's legacy global generator and torch's (if loaded)."""
    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state()}
    torch = sys.modules.get("torch")  # not imported: no torch RNG can have been used
    if torch is not None:
        state["torch"] = torch.get_rng_state()
        if torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_global_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch = sys.modules.get("torch")
    if torch is not None and "torch" in state:
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointWriter:
    """Writes the run checkpoint (see the module docstring) and keeps the run's timings."""

    def __init__(self, path: Path, config: RunConfig) -> None:
        self.path, self.config = path, config
        self.identity = _identity(config)
        """What the run is, its agent's inputs included, as read when the run (or its resumption) began."""
        self.train_time_s = 0.0
        self.elapsed_before = 0.0
        """Wall time spent in earlier processes of this run (up to their last checkpoint)."""
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def save(self, env: gym.Env, controller: Controller, progress: EpisodeProgress,
             logger: "DecisionLogger") -> None:
        state = {
            "identity": self.identity,
            "env": env.unwrapped.state_dict() if progress.obs is not None else None,
            "controller": controller.state_dict(),
            "progress": progress.state_dict(),
            "log": logger.position(),
            "rng": _global_rng_state(),
            "train_time_s": self.train_time_s,
            "elapsed_s": self.elapsed(),
        }
        write_checkpoint(self.path, RUN_CHECKPOINT_KIND, state)


class StopRequest:
    """Ctrl-C during the evaluated episode: the first one sets ``requested`` (the loop saves and
    stops after the current decision), a second one raises ``KeyboardInterrupt`` at once. Only in
    the main thread, and only when no other SIGINT handler was installed."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> "StopRequest":
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\natesd run: Ctrl-C: finishing the current decision, then saving a checkpoint "
              "(press Ctrl-C again to stop at once and keep the previous checkpoint)", file=sys.stderr)

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class DecisionLogger:
    """JSONL (flushed per line), optional TensorBoard and a tqdm bar for one run. Resumed with the
    ``position`` of a checkpoint, it cuts the log back to that length first."""

    def __init__(self, run_dir: Path, config: RunConfig, position: Mapping[str, int] | None = None) -> None:
        self.config = config
        path = run_dir / LOG_FILE
        self.lines = 0
        if position is None:
            self.file = open(path, "wb")
        else:
            size = path.stat().st_size if path.is_file() else -1
            if size < int(position["bytes"]):
                raise CheckpointError(f"{path}: {'missing' if size < 0 else f'{size} bytes'}, shorter than the "
                                      f"{position['bytes']} bytes the checkpoint logged; the run directory was "
                                      "changed: --overwrite to start over")
            self.file = open(path, "r+b")
            self.file.truncate(int(position["bytes"]))
            self.file.seek(int(position["bytes"]))
            self.lines = int(position["lines"])
        self.writer = None
        if config.tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # optional extra, imported on demand

            # purge_step drops the events a killed process logged after its last checkpoint
            purge = None if position is None else int(position["updates_done"]) + 1
            self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=purge)
        self.bar = None
        self._updates_done = 0 if position is None else int(position["updates_done"])

    def position(self) -> dict[str, int]:
        """How far the log is written: bytes, lines and the updates of its last line."""
        return {"bytes": self.file.tell(), "lines": self.lines, "updates_done": self._updates_done}

    def begin(self, context: RunContext) -> None:
        """The episode was reset (or resumed): start the progress bar over its decisions."""
        if self.config.progress_bar:
            from tqdm.auto import tqdm  # optional extra, imported on demand

            self.bar = tqdm(total=context.num_decisions, initial=self.lines, unit="decision",
                            desc=f"{self.config.agent} seed {self.config.seed}")

    def log(self, record: StepRecord) -> None:
        line = decision_line(record)
        self.file.write((json.dumps(to_plain(line), allow_nan=False) + "\n").encode("utf-8"))
        self.file.flush()
        self.lines += 1
        self._updates_done = int(line["updates_done"])
        if self.writer is not None:
            step = line["updates_done"]
            for key in ("alpha", "reward", "score", "mismatch"):
                self.writer.add_scalar(f"run/{key}", line[key], step)
            for key, value in line["controller"].items():
                self.writer.add_scalar(f"controller/{key}", value, step)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(alpha=f"{record.alpha:.2f}", score=f"{line['score']:.3f}")

    def close(self) -> None:
        self.file.close()
        if self.writer is not None:
            self.writer.close()
        if self.bar is not None:
            self.bar.close()


def decision_line(record: StepRecord) -> dict[str, Any]:
    """The JSON object logged for one decision: scalars, plus the window's per-update ``trace``
    (one list per statistic) and its means (``trace_mean``)."""
    info = record.info
    line: dict[str, Any] = {
        "step": record.step, "alpha": record.alpha, "reward": record.reward,
        "terminated": record.terminated, "truncated": record.truncated,
        "obs": {name: float(v) for name, v in zip(OBSERVATION_NAMES, record.obs)},
    }
    for key in ("score", "mismatch", "updates_done", "progress_before", "action_clipped", "diverged",
                "divergence_reason"):
        if key in info:
            line[key] = info[key]
    line["reward_components"] = dict(info["reward_components"])
    trace = info["trace"]
    # Every per-update statistic of the window, so a log is a trace a surrogate can be fitted to.
    line["trace"] = {k: [float(x) for x in np.asarray(v).reshape(-1)] for k, v in trace.items()}
    line["trace_mean"] = {k: float(np.mean(v)) for k, v in trace.items() if len(v)}
    line["controller"] = {k: float(v) for k, v in record.controller_stats.items()}
    line["controller_time_s"] = record.controller_time_s
    line["env_time_s"] = record.env_time_s
    return line
