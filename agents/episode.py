"""The episode loop: one controller steering one episode of an ATESD env (training runs included).

:func:`rollout` resets the env, tells the controller what run it steers (:class:`~agents.base.RunContext`
from the reset ``info``), then alternates ``act`` / ``env.step`` / ``observe`` until the episode ends,
timing the controller and the env separately. Callers watch it through ``on_reset`` / ``on_step``
(the decision log, a progress bar). It knows the Gymnasium API and the controller protocol; it does
not know any backend, any particular controller, or files.
"""

from __future__ import annotations

import time
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


def rollout(env: gym.Env, controller: Controller, seed: int,
            on_step: Callable[[StepRecord], None] | None = None,
            on_reset: Callable[[RunContext], None] | None = None) -> EpisodeResult:
    """Run one episode of ``env`` (reset with ``seed``) under ``controller``."""
    obs, info = env.reset(seed=seed)
    context = RunContext.from_reset(seed, info)
    controller.begin_run(context)
    if on_reset is not None:
        on_reset(context)
    initial_score = float(info["score"])
    alphas: list[float] = []
    scores: list[float] = []
    updates: list[int] = []
    total_reward, controller_time, env_time = 0.0, 0.0, 0.0
    done, step, diverged = False, 0, False
    while not done:
        t0 = time.perf_counter()
        action = controller.act(obs)
        t1 = time.perf_counter()
        next_obs, reward, terminated, truncated, info = env.step(action)
        t2 = time.perf_counter()
        stats = controller.observe(Transition(obs, action, float(reward), next_obs, terminated, truncated, info))
        t3 = time.perf_counter()
        controller_time += (t1 - t0) + (t3 - t2)
        env_time += t2 - t1
        done = bool(terminated or truncated)
        diverged = diverged or bool(info["diverged"])
        total_reward += float(reward)
        alphas.append(float(info["reveal_ratio"]))
        scores.append(float(info["score"]))
        updates.append(int(info["updates_done"]))
        if on_step is not None:
            on_step(StepRecord(step, alphas[-1], np.asarray(obs), float(reward), bool(terminated),
                               bool(truncated), info, stats, (t1 - t0) + (t3 - t2), t2 - t1))
        obs = next_obs
        step += 1
    end_stats = controller.end_run()
    return EpisodeResult(context, scores[-1] if scores else initial_score, initial_score, total_reward, alphas,
                         scores, updates, controller_time, env_time, diverged, end_stats)
