"""The episode loop: one controller steering one episode of an ATESD env (training runs included).

:func:`rollout` resets the env, tells the controller what run it steers (:class:`~agents.base.RunContext`
from the reset ``info``), then alternates ``act`` / ``env.step`` / ``observe`` until the episode ends,
timing the controller and the env separately. Callers watch it through ``on_reset`` / ``on_step``
(the decision log, a progress bar, checkpoints). The loop's own state is an :class:`EpisodeProgress`,
so a checkpointed run continues where it stopped. It knows the Gymnasium API and the controller
protocol; it does not know any backend, any particular controller, or files.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple

import gymnasium as gym
import numpy as np

from agents.base import Controller, ControllerStats, RunContext, Transition


class StepRecord(NamedTuple):
    """One decision as logged."""

    step: int
    alpha: float
    obs: np.ndarray
    reward: float
    terminated: bool
    truncated: bool
    info: Mapping[str, Any]
    controller_stats: ControllerStats
    controller_time_s: float
    env_time_s: float


class EpisodeResult(NamedTuple):
    """What one rollout produced."""

    context: RunContext
    final_score: float
    initial_score: float
    total_reward: float
    alphas: list[float]
    scores: list[float]
    updates: list[int]
    controller_time_s: float
    env_time_s: float
    diverged: bool
    end_stats: ControllerStats


@dataclass
class EpisodeProgress:
    """Where a rollout stands between two decisions: the loop's own state, in plain data.

    :func:`rollout` fills it as it goes; a caller that checkpoints a run stores it next to the
    env's and the controller's states and hands it back to :func:`rollout` to continue the episode
    (``obs`` set: the episode has started, no reset)."""

    seed: int = 0
    context: RunContext | None = None
    obs: np.ndarray | None = None
    """The observation the next decision is taken on (None before reset)."""
    initial_score: float = math.nan
    step: int = 0
    """Decisions taken."""
    done: bool = False
    diverged: bool = False
    total_reward: float = 0.0
    alphas: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    updates: list[int] = field(default_factory=list)
    controller_time_s: float = 0.0
    env_time_s: float = 0.0

    def state_dict(self) -> dict[str, Any]:
        """Plain data (numbers, lists, one array) for a checkpoint."""
        state = dataclasses.asdict(self)
        state["context"] = None if self.context is None else self.context._asdict()
        return state

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> "EpisodeProgress":
        values = dict(state)
        if values.get("context") is not None:
            values["context"] = RunContext(**values["context"])
        if values.get("obs") is not None:
            values["obs"] = np.asarray(values["obs"])
        return cls(**values)


def rollout(env: gym.Env, controller: Controller, seed: int,
            on_step: Callable[[StepRecord], None] | None = None,
            on_reset: Callable[[RunContext], None] | None = None,
            progress: EpisodeProgress | None = None) -> EpisodeResult:
    """Run one episode of ``env`` (reset with ``seed``) under ``controller``.

    With a ``progress`` whose episode has started (restored from a checkpoint, together with the
    env's and the controller's states), the episode continues from there: no reset and no
    ``begin_run``; ``on_reset`` is still called with the run's context. ``progress`` is updated
    before every ``on_step`` call, so a callback that checkpoints sees the state after the decision.
    """
    progress = progress if progress is not None else EpisodeProgress(seed=seed)
    if progress.obs is None:
        obs, info = env.reset(seed=seed)
        progress.seed, progress.obs = int(seed), obs
        progress.context = RunContext.from_reset(seed, info)
        progress.initial_score = float(info["score"])
        controller.begin_run(progress.context)
    assert progress.context is not None
    if on_reset is not None:
        on_reset(progress.context)
    while not progress.done:
        obs = progress.obs
        t0 = time.perf_counter()
        action = controller.act(obs)
        t1 = time.perf_counter()
        next_obs, reward, terminated, truncated, info = env.step(action)
        t2 = time.perf_counter()
        stats = controller.observe(Transition(obs, action, float(reward), next_obs, terminated, truncated, info))
        t3 = time.perf_counter()
        progress.controller_time_s += (t1 - t0) + (t3 - t2)
        progress.env_time_s += t2 - t1
        progress.done = bool(terminated or truncated)
        progress.diverged = progress.diverged or bool(info["diverged"])
        progress.total_reward += float(reward)
        progress.alphas.append(float(info["reveal_ratio"]))
        progress.scores.append(float(info["score"]))
        progress.updates.append(int(info["updates_done"]))
        progress.obs = next_obs
        progress.step += 1
        if on_step is not None:
            on_step(StepRecord(progress.step - 1, progress.alphas[-1], np.asarray(obs), float(reward),
                               bool(terminated), bool(truncated), info, stats, (t1 - t0) + (t3 - t2), t2 - t1))
    end_stats = controller.end_run()
    p = progress
    return EpisodeResult(p.context, p.scores[-1] if p.scores else p.initial_score, p.initial_score, p.total_reward,
                         p.alphas, p.scores, p.updates, p.controller_time_s, p.env_time_s, p.diverged, end_stats)
