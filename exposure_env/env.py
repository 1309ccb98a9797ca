"""``ExposureEnv``: one distillation run as a Gymnasium episode, over any :class:`TrainingBackend`.

A thin adapter: it asks the backend for windows and leaves everything else (actions, observation,
reward, episode end, info) to the episode kernel :mod:`exposure_env.episode` at batch size one.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from exposure_env import episode
from exposure_env.config import ExposureEnvConfig
from exposure_env.errors import ResetNeededError
from exposure_env.schema import observation_space
from exposure_env.types import TrainingBackend, UpdateTrace, stats_values


def parse_reveal_ratio(action: Any) -> tuple[float, bool]:
    """The reveal ratio of a single env's action and whether it was clipped (see
    :func:`exposure_env.episode.parse_actions`)."""
    parsed = episode.parse_actions(action)
    return float(parsed.alpha[0]), bool(parsed.clipped[0])


# The window flags of a single run that did not diverge (read-only: shared by every step).
_FALSE = np.zeros(1, dtype=bool)
_NO_REASON = np.array([""], dtype=object)
_FALSE.setflags(write=False)
_NO_REASON.setflags(write=False)


class ExposureEnv(gym.Env):
    """A self-distillation run whose teacher exposure (reveal ratio) is the action.

    ## Description

    On-policy self-distillation trains a student on its own rollouts against a teacher that is the
    same model conditioned on the reference solution. ATESD lets a controller choose how much of the
    reference the teacher sees. Each env step the agent picks a reveal ratio ``alpha``; the backend
    runs ``hold_window`` student updates with the teacher seeing ``floor(alpha * m)`` of the ``m``
    reference segments plus the final answer; the env reports training statistics and a
    learning-progress reward. One episode is one run of ``total_updates`` updates. The backend is
    either the numpy surrogate (``ATESD-Surrogate-v0``) or real Qwen3 training (``ATESD-Qwen3-v0``);
    the agent cannot tell them apart.

    ## Action Space

    ``Box(0, 1, (1,), float32)``: the reveal ratio, held for ``hold_window`` updates. Finite values
    outside [0, 1] are clipped (``info["action_clipped"]``); NaN, inf or a wrong shape raise
    ``InvalidActionError``.

    ## Observation Space

    ``Box((8,), float32)``; EMAs are per update with decay ``ema_decay``.

    | Num | Name                        | Min  | Max | Meaning                                              |
    |-----|-----------------------------|------|-----|------------------------------------------------------|
    | 0   | progress                    | 0    | 1   | updates done / ``total_updates``                     |
    | 1   | alpha_ema                   | 0    | 1   | EMA of the applied reveal ratio                      |
    | 2   | loss_ema                    | 0    | 100 | EMA of the distillation loss                         |
    | 3   | mismatch_ema                | 0    | 1   | EMA of top-1 teacher/student disagreement            |
    | 4   | probe_nll_ema               | 0    | 100 | EMA of student NLL of probe reference solutions      |
    | 5   | confidence                  | 0    | 1   | student's mean top-1 probability, last update        |
    | 6   | teacher_ref_logprob_ema     | -100 | 0   | EMA of teacher log-prob of the reference solution    |
    | 7   | score                       | 0    | 1   | latest evaluation (expected accuracy / Average@k)    |

    The schema is declared once in :mod:`exposure_env.schema`.

    ## Rewards

    With ``l_i`` the progress signal (probe NLL by default) after update ``i`` of the window,
    ``l_0`` its value before, and ``g_i`` the teacher's mean log-prob of the reference solution at the current exposure:

    - ``immediate``:     ``r = l_0 - l_H``
    - ``discounted``:    ``r = sum_{i=1..H} gamma**(i-1) * max(0, l_{i-1} - l_i)`` (default)
    - ``discounted+gt``: ``r = discounted + lambda_gt * sum_i gamma**(i-1) g_i / sum_i gamma**(i-1)``

    The env credits a decision over its own window (lookahead ``L = H``). ``info["trace"]`` carries
    the per-update values so an agent can credit a decision over a longer lookahead that spans
    later windows, as the paper does. On divergence the reward is ``-divergence_penalty``.

    ## Starting State

    ``reset(seed)`` resets the backend to its initial student (for the real backend: the warm-start
    checkpoint; for the surrogate: a randomly drawn competence profile), measures the initial
    statistics, and starts every EMA at its initial value.

    ## Episode End

    ``terminated`` is True when the update budget is spent or when training diverges (non-finite
    statistics, collapse). ``truncated`` is always False from the env itself; wrap it in
    ``TimeLimit`` (``gym.make(..., max_episode_steps=N)``) for a shorter horizon.

    ## Info

    Declared once in :mod:`exposure_env.episode` (:class:`~exposure_env.episode.ResetInfo`,
    :class:`~exposure_env.episode.StepInfo`); the vector env returns the same keys as arrays.
    ``reset``: ``score``, ``mismatch``, ``updates_done``, ``total_updates``, ``hold_window``,
    ``num_decisions``. ``step``: those plus ``reveal_ratio`` (applied), ``action_clipped``,
    ``num_updates``, ``progress_before`` (``l_0``), ``trace`` (the window's
    :class:`~exposure_env.types.UpdateTrace`: every per-update statistic plus ``progress`` and
    ``grounded``), ``reward_components`` (``immediate``, ``discounted``, ``grounded``),
    ``diverged`` and ``divergence_reason``.

    ## Arguments

    ``ExposureEnv(backend, config)``: any :class:`~exposure_env.types.TrainingBackend` and an
    :class:`~exposure_env.config.ExposureEnvConfig` (``total_updates=200``, ``hold_window=4``,
    ``reward_mode="discounted"``, ``gamma=0.9``, ``lambda_gt=0.005``, ``progress_signal="probe_nll"``,
    ``ema_decay=0.9``, ``divergence_penalty=1.0``). Through ``gym.make`` these are plain keyword
    arguments, next to the backend's own.

    ## Version History

    - v0: initial version.
    """

    metadata = {"render_modes": []}

    def __init__(self, backend: TrainingBackend, config: ExposureEnvConfig | None = None) -> None:
        super().__init__()
        self.backend = backend
        self.config = config if config is not None else ExposureEnvConfig()
        self.action_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.observation_space = observation_space()
        self._state: episode.EpisodeState | None = None
        self._done = True

    # -- episode ----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        # A seed given here reseeds the run; otherwise each new episode draws its run seed from
        # the env's generator, so successive episodes differ but a seeded env stays reproducible.
        run_seed = seed if seed is not None else int(self.np_random.integers(0, 2**31 - 1))
        stats = self.backend.reset(run_seed)
        bad = [name for name, value in stats._asdict().items() if not math.isfinite(float(value))]
        if bad:
            raise RuntimeError(f"backend reset returned non-finite statistics: {', '.join(bad)}")
        self._state = episode.start(stats_values(stats)[:, None], np.array([stats.score]),
                                    np.array([stats.reveal_ratio]), self.config)
        self._done = False
        return episode.observation(self._state)[0], episode.reset_info(self._state, self.config, 0)

    def step(self, action: Any):
        state = self._state
        if state is None:
            raise ResetNeededError("call reset() before step()")
        if self._done:
            raise ResetNeededError("the episode has ended (terminated); call reset() before step()")
        parsed = episode.parse_actions(action)
        num_updates = min(self.config.hold_window, self.config.total_updates - int(state.updates_done[0]))
        result = self.backend.run_window(float(parsed.alpha[0]), num_updates)
        if result.stats.reveal_ratio != parsed.alpha[0]:
            # The backend applied another ratio (a data-parallel replica applies rank 0's): the
            # observation and the log carry the ratio that was applied.
            parsed = episode.Action(np.array([result.stats.reveal_ratio]), parsed.clipped)
        if result.diverged:
            diverged, reason = np.array([True]), np.array([result.divergence_reason], dtype=object)
        else:
            diverged, reason = _FALSE, _NO_REASON
        window = episode.Window(UpdateTrace(result.trace.values[:, None, :]), np.array([result.stats.score]),
                                diverged, reason)
        step = episode.advance(state, parsed, window, self.config)
        self._state = step.state
        terminated = bool(step.terminated[0])
        self._done = terminated
        return step.observation[0], float(step.reward[0]), terminated, False, episode.step_info(step, self.config, 0)

    # -- checkpointing ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume this episode later: the backend's state and the env's."""
        if self._state is None:
            raise ResetNeededError("call reset() before state_dict()")
        return {
            "backend": self.backend.state_dict(),
            "episode": {name: array.copy() for name, array in self._state._asdict().items()},
            "done": self._done,
            "np_random_state": self.np_random.bit_generator.state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.backend.load_state_dict(state["backend"])
        self._state = episode.EpisodeState(**{name: np.array(value) for name, value in state["episode"].items()})
        self._done = bool(state["done"])
        self.np_random.bit_generator.state = state["np_random_state"]

    def close(self) -> None:
        self.backend.close()
        super().close()
