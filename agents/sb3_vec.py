"""Stable-Baselines3's ``VecEnv`` over a Gymnasium vector env such as the native batched surrogate.

SB3 trains on its own ``VecEnv`` API; ``gym.make_vec("ATESD-Surrogate-v0", num_envs=N,
vectorization_mode="vector_entry_point")`` is a Gymnasium 1.x ``VectorEnv``. Wrapping it in SB3's
``DummyVecEnv`` would step N single envs one by one and lose the batching; this adapter keeps one
batched step per SB3 step. What differs between the two APIs, and how it is bridged:

- **Autoreset.** Gymnasium's ``AutoresetMode.NEXT_STEP`` (the surrogate's): when sub-env ``i``
  ends at step ``t`` it returns its last observation; at step ``t + 1`` it ignores its action and
  returns the first observation of a new run with reward 0. SB3 expects the *same-step* rule: at
  step ``t`` it gets ``done[i] = True``, the new run's first observation in ``obs[i]`` and the last
  one in ``infos[i]["terminal_observation"]``, and step ``t + 1`` is a real step of the new run.
  The adapter starts the new runs at once with a partial reset
  (``reset(options={"reset_mask": done})``), so no step is wasted and no fake transition with
  reward 0 reaches SB3's buffers.
- **Truncation.** ``infos[i]["TimeLimit.truncated"]`` is ``truncated and not terminated`` (SB3
  bootstraps truncated episodes from the value of the terminal observation).
- **Actions.** With ``symmetric=True`` the action space is ``Box(-1, 1)`` (what SB3's Gaussian and
  squashed policies expect) and ``a`` becomes the reveal ratio ``(a + 1) / 2``, the map
  :func:`exposure_env.symmetric_actions` applies to a single env; ``symmetric=False`` keeps
  ``Box(0, 1)`` (PPO with a Beta policy).
- **Seeding.** SB3's ``seed(s)`` seeds the next ``reset`` with ``s``; a reset without a seed uses the
  last seed plus one, so training stays reproducible (a fresh OS seed would not be).
- ``infos[i]`` also carries the sub-env's ``score``, the ``reveal_ratio`` applied and whether the
  run ``diverged``; :class:`RunRecorder` turns them into a training curve.

The wrapped env must support the partial reset (``SurrogateVectorEnv`` does). Importing this module
imports Stable-Baselines3; :mod:`agents.sb3_agents` imports it lazily. It knows nothing about any
controller.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn


class GymnasiumVecEnvAdapter(VecEnv):
    """SB3 ``VecEnv`` view of a Gymnasium ``VectorEnv`` with next-step autoreset (module docstring).

    :param venv: the vector env (e.g. ``SurrogateVectorEnv``); the adapter closes it on ``close()``.
    :param symmetric: expose the action as ``Box(-1, 1)`` and map it to ``[0, 1]``.
    :param seed: seed of the first reset when SB3 does not give one.
    """

    def __init__(self, venv: gym.vector.VectorEnv, symmetric: bool = True, seed: int = 0) -> None:
        self.venv = venv
        self.symmetric = bool(symmetric)
        single = venv.single_action_space
        action_space = spaces.Box(np.float32(-1.0), np.float32(1.0), shape=single.shape, dtype=np.float32) \
            if self.symmetric else single
        self._next_seed = int(seed)
        self._actions: np.ndarray | None = None
        super().__init__(venv.num_envs, venv.single_observation_space, action_space)

    # -- SB3 VecEnv API ---------------------------------------------------------------------------
    def reset(self) -> VecEnvObs:
        seed = self._seeds[0] if self._seeds[0] is not None else self._next_seed
        obs, _ = self.venv.reset(seed=int(seed))
        self._next_seed = int(seed) + 1
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return np.asarray(obs, dtype=np.float32)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        actions = np.asarray(self._actions, dtype=np.float64).reshape(self.num_envs, -1)
        alpha = (actions + 1.0) / 2.0 if self.symmetric else actions
        obs, reward, terminated, truncated, infos = self.venv.step(alpha)
        obs = np.array(obs, dtype=np.float32)  # a copy: rows of ended runs are replaced below
        terminated, truncated = np.asarray(terminated, dtype=bool), np.asarray(truncated, dtype=bool)
        dones = terminated | truncated
        scores = np.asarray(infos["score"], dtype=np.float64)
        diverged = np.asarray(infos.get("diverged", np.zeros(self.num_envs)), dtype=bool).reshape(-1)
        out_infos: list[dict[str, Any]] = [
            {"TimeLimit.truncated": bool(truncated[i] and not terminated[i]), "score": float(scores[i]),
             "reveal_ratio": float(alpha[i, 0]), "diverged": bool(diverged[i])}
            for i in range(self.num_envs)]
        if dones.any():
            for i in np.flatnonzero(dones).tolist():
                out_infos[i]["terminal_observation"] = obs[i].copy()
            fresh, _ = self.venv.reset(options={"reset_mask": dones})
            obs[dones] = np.asarray(fresh, dtype=np.float32)[dones]
        return obs, np.asarray(reward, dtype=np.float32), dones, out_infos

    def close(self) -> None:
        self.venv.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self.venv, attr_name, None) if attr_name != "render_mode" else None
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self.venv, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        result = getattr(self.venv, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]


class RunRecorder(BaseCallback):
    """SB3 callback that summarizes training on an adapted vector env, one record per ``every``
    finished runs (the Beta pre-training's unit, a generation of runs): the runs finished so far,
    their mean final score and divergences, and the mean reveal ratio and reward of the steps since
    the last record. ``on_record`` receives each record (a dict) as it is made."""

    def __init__(self, every: int, on_record: Callable[[dict[str, float]], None]) -> None:
        super().__init__()
        if every < 1:
            raise ValueError(f"every: a positive number of runs; received {every!r}")
        self.every, self.on_record = int(every), on_record
        self.runs_done = 0
        self._start = time.perf_counter()
        self._clear()

    def _clear(self) -> None:
        self._scores: list[float] = []
        self._diverged = 0
        self._alpha_sum = self._reward_sum = 0.0
        self._steps = 0

    def _on_step(self) -> bool:
        infos, dones = self.locals["infos"], np.asarray(self.locals["dones"], dtype=bool)
        self._alpha_sum += sum(info["reveal_ratio"] for info in infos)
        self._reward_sum += float(np.sum(self.locals["rewards"]))
        self._steps += len(infos)
        for i in np.flatnonzero(dones).tolist():
            self._scores.append(infos[i]["score"])
            self._diverged += int(infos[i]["diverged"])
        if len(self._scores) >= self.every:
            self.runs_done += len(self._scores)
            self.on_record({"runs_done": self.runs_done, "final_score": float(np.mean(self._scores)),
                            "mean_alpha": self._alpha_sum / self._steps, "reward_mean": self._reward_sum / self._steps,
                            "diverged_runs": self._diverged, "timesteps": int(self.num_timesteps),
                            "policy_updates": int(getattr(self.model, "_n_updates", 0)),
                            "wall_time_s": time.perf_counter() - self._start})
            self._clear()
        return True
