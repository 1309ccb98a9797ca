"""The controller protocol every agent implements.

A controller steers one distillation run (one episode of an ATESD env) through the reveal ratio.
:func:`agents.episode.rollout` drives it like this::

    obs, info = env.reset(seed=seed)
    controller.begin_run(RunContext.from_reset(seed, info))
    while not done:
        action = controller.act(obs)                       # reveal ratio, shape (1,)
        next_obs, reward, terminated, truncated, info = env.step(action)
        stats = controller.observe(Transition(obs, action, reward, next_obs, terminated, truncated, info))
        obs = next_obs
    controller.end_run()

Controllers that must be trained *before* the evaluated run (the SB3 agents) say so with
``trains_before_run = True`` and implement ``train``; the ATESD agent and the baselines do not (the
ATESD agent learns online inside ``observe``).

State and checkpoints (the contract ``atesd run --save/--load/--resume`` relies on):

- ``state_dict()`` returns everything the controller needs to continue exactly where it is: weights,
  optimizer, RNG states, unfinished learning (open decisions, a partial batch, the sample between
  ``act`` and ``observe``). Values are plain data, numpy arrays and torch tensors, so
  :mod:`agents.checkpoint` can store them without pickle. ``load_state_dict(state)`` restores it
  into a controller built from the same spec; the next call is then the one that would have
  followed. The runner puts this state into its run checkpoint (``--resume``).
- ``save(path)`` writes ``state_dict()`` to one checkpoint file (safetensors + JSON, atomically);
  ``load(path)`` reads such a file (never a pickle) and restores it. A controller built from a spec
  and then ``load``-ed continues the saved learning (carry-over, ``--save``/``--load``). Controllers
  with ``has_state = True`` (the Beta agents, SB3) implement both through
  :class:`agents.checkpoint.Checkpointed`. The baselines (``has_state = False``) are fully
  described by their spec: their ``save`` and ``load`` raise :class:`~exposure_env.errors.ConfigError`,
  while their ``state_dict`` still carries run state such as the random controller's generator.

This module sees only the Gymnasium API and ``exposure_env`` types; it knows nothing about any
particular controller or backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from exposure_env.errors import ConfigError

# Named scalars a controller reports for the decision log (e.g. Beta concentrations, policy loss).
ControllerStats = Mapping[str, float]
EnvFactory = Callable[[], gym.Env]


class Transition(NamedTuple):
    """One env step as the controller saw it."""

    obs: np.ndarray
    action: np.ndarray
    reward: float
    next_obs: np.ndarray
    terminated: bool
    truncated: bool
    info: Mapping[str, Any]


class RunContext(NamedTuple):
    """What a controller may know about the run it is about to steer (from the reset ``info``)."""

    seed: int
    total_updates: int
    hold_window: int
    num_decisions: int

    @classmethod
    def from_reset(cls, seed: int, info: Mapping[str, Any]) -> "RunContext":
        """The context of a run whose ``env.reset(seed=seed)`` returned ``info``."""
        return cls(int(seed), int(info["total_updates"]), int(info["hold_window"]), int(info["num_decisions"]))


@runtime_checkable
class Controller(Protocol):
    """What the runner, the CLI and the benchmarks need from any controller."""

    name: str
    trains_before_run: bool
    has_state: bool
    """True when the controller has learned state that ``save``/``load`` carry across runs."""

    def begin_run(self, context: RunContext) -> None:
        """Start steering a new run (reseed exploration, clear per-run state)."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        """The reveal ratio to hold for the next window: float32 array of shape (1,) in [0, 1]."""

    def observe(self, transition: Transition) -> ControllerStats:
        """Learn from (or just record) one step; returns scalars worth logging (may be empty)."""

    def end_run(self) -> ControllerStats:
        """The run ended; finish pending learning and return scalars worth logging."""

    def train(self, make_env: EnvFactory, episodes: int, seed: int) -> None:
        """Train before the evaluated run (only called when ``trains_before_run``)."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly from here (see the module docstring)."""

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""

    def save(self, path: str | Path) -> None:
        """Write ``state_dict()`` to a checkpoint file at ``path`` (atomically, no pickle)."""

    def load(self, path: str | Path) -> None:
        """Restore what ``save`` wrote (a :class:`~exposure_env.errors.CheckpointError` names the
        path when the file is missing, corrupt or not a checkpoint of this controller)."""


class StatelessController:
    """Defaults shared by controllers without learning state: the baselines."""

    name = "stateless"
    trains_before_run = False
    has_state = False

    def begin_run(self, context: RunContext) -> None:
        self.context = context

    def observe(self, transition: Transition) -> ControllerStats:
        return {}

    def end_run(self) -> ControllerStats:
        return {}

    def train(self, make_env: EnvFactory, episodes: int, seed: int) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        return None

    def save(self, path: str | Path) -> None:
        raise ConfigError("save", "a call on an agent with learned state (beta..., ppo, sac, a2c, td3, ppo-beta)",
                          self.name, hint=f"{self.name} has no learned state: it is fully described by its spec")

    def load(self, path: str | Path) -> None:
        raise ConfigError("load", "a call on an agent with learned state (beta..., ppo, sac, a2c, td3, ppo-beta)",
                          self.name, hint=f"{self.name} has no learned state to load: it is fully described by its spec")


def as_action(alpha: float) -> np.ndarray:
    """The env action for a reveal ratio."""
    return np.array([alpha], dtype=np.float32)
