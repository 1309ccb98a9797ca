"""``ExposureEnv``: one distillation run as a Gymnasium episode."""

from __future__ import annotations

import math
from typing import Any, Mapping, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from exposure_env.config import ExposureEnvConfig
from exposure_env.errors import InvalidActionError, ResetNeededError
from exposure_env.rewards import combine_reward, reward_components
from exposure_env.schema import EMA_SOURCES, advance_ema, build_observation, observation_space
from exposure_env.types import TRACE_FIELDS, TrainingBackend, TrainingStats, WindowResult


def parse_reveal_ratio(action: Any) -> tuple[float, bool]:
    """Turn an action into a reveal ratio in [0, 1]; returns ``(ratio, was_clipped)``.

    Accepts a float or an array with exactly one element (shape ``()`` or ``(1,)``). NaN, inf,
    other shapes and non-numeric input raise :class:`InvalidActionError`; finite values outside
    [0, 1] are clipped, and the clip is reported so a caller can see it.
    """
    if type(action) is np.ndarray and action.shape == (1,) and action.dtype.kind == "f":
        value = float(action[0])  # fast path: what agents and the env checker send
        if math.isfinite(value):
            clipped = min(1.0, max(0.0, value))
            return clipped, clipped != value
    try:
        array = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidActionError(
            f"action must be a reveal ratio: a float or an array of shape (1,) in [0, 1]; received {action!r}"
        ) from exc
    if array.shape not in ((), (1,)):
        raise InvalidActionError(
            f"action must have shape (1,) (one reveal ratio in [0, 1]); received shape {array.shape}"
        )
    value = float(array.reshape(()))
    if not math.isfinite(value):
        raise InvalidActionError(f"action must be a finite reveal ratio in [0, 1]; received {value}")
    clipped = min(1.0, max(0.0, value))
    return clipped, clipped != value


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

    Every step: ``reveal_ratio`` (applied), ``action_clipped``, ``score``, ``mismatch``,
    ``updates_done``, ``progress_before`` (``l_0``), ``trace`` (dict of per-update arrays, including
    ``progress`` and ``grounded``), ``reward_components`` (``immediate``, ``discounted``,
    ``grounded``), ``diverged`` and ``divergence_reason``. ``reset`` returns the same keys for
    ``score``, ``mismatch`` and ``updates_done``.

    ## Arguments

    ``ExposureEnv(backend, config)``: any :class:`~exposure_env.types.TrainingBackend` and an
    :class:`~exposure_env.config.ExposureEnvConfig` (``total_updates=200``, ``hold_window=4``,
    ``reward_mode="discounted"``, ``gamma=0.9``, ``lambda_gt=0.05``, ``progress_signal="probe_nll"``,
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
        self._stats: TrainingStats | None = None
        self._ema = np.zeros(len(EMA_SOURCES))
        self._done = True

    # -- episode ----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        # A seed given here reseeds the run; otherwise each new episode draws its run seed from
        # the env's generator, so successive episodes differ but a seeded env stays reproducible.
        run_seed = seed if seed is not None else int(self.np_random.integers(0, 2**31 - 1))
        stats = self.backend.reset(run_seed)
        self._check_finite(stats)
        self._stats = stats
        self._ema = np.array([getattr(stats, name) for name in EMA_SOURCES], dtype=np.float64)
        self._done = False
        return self._observation(), self._base_info(stats)

    def step(self, action: Any):
        if self._stats is None:
            raise ResetNeededError("call reset() before step()")
        if self._done:
            raise ResetNeededError("the episode has ended (terminated); call reset() before step()")
        reveal_ratio, clipped = parse_reveal_ratio(action)
        cfg = self.config
        num_updates = min(cfg.hold_window, cfg.total_updates - self._stats.updates_done)
        before = self._stats
        l_before = float(getattr(before, cfg.progress_signal))
        result: WindowResult = self.backend.run_window(reveal_ratio, num_updates)
        # One (len(TRACE_FIELDS), n) array serves the finiteness check, the EMAs and the info.
        traces = np.array(result.trace, dtype=np.float64)

        diverged, reason = result.diverged, result.divergence_reason
        if not diverged and not (np.isfinite(traces).all() and _stats_finite(result.stats)):
            diverged, reason = True, "non-finite statistics"
        if diverged:
            self._done = True
            info = self._base_info(before)
            info.update(reveal_ratio=reveal_ratio, action_clipped=clipped, diverged=True,
                        divergence_reason=reason, progress_before=l_before, trace={},
                        reward_components={})
            return self._observation(), -float(cfg.divergence_penalty), True, False, info

        l_trace = traces[_TRACE_INDEX[cfg.progress_signal]]
        g_trace = traces[_TRACE_INDEX["teacher_ref_logprob"]]
        parts = reward_components(l_before, l_trace, g_trace, cfg.gamma)
        reward = float(combine_reward(cfg.reward_mode, parts, cfg.lambda_gt))

        ema_traces = np.empty((len(EMA_SOURCES), traces.shape[1]))
        ema_traces[0] = reveal_ratio
        ema_traces[1:] = traces[_EMA_ROWS]
        self._ema = advance_ema(self._ema, ema_traces, cfg.ema_decay)
        self._stats = result.stats
        terminated = result.stats.updates_done >= cfg.total_updates
        self._done = terminated

        info = self._base_info(result.stats)
        trace_info = dict(zip(TRACE_FIELDS, traces))
        trace_info["progress"] = l_trace
        trace_info["grounded"] = g_trace
        info.update(reveal_ratio=reveal_ratio, action_clipped=clipped, diverged=False,
                    divergence_reason="", progress_before=l_before, trace=trace_info,
                    reward_components={"immediate": float(parts.immediate),
                                       "discounted": float(parts.discounted),
                                       "grounded": float(parts.grounded)})
        return self._observation(), reward, terminated, False, info

    # -- checkpointing ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume this episode later: backend state plus the env's EMAs."""
        if self._stats is None:
            raise ResetNeededError("call reset() before state_dict()")
        return {
            "backend": self.backend.state_dict(),
            "stats": self._stats._asdict(),
            "ema": self._ema.copy(),
            "done": self._done,
            "np_random_state": self.np_random.bit_generator.state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.backend.load_state_dict(state["backend"])
        self._stats = TrainingStats(**state["stats"])
        self._ema = np.array(state["ema"], dtype=np.float64)
        self._done = bool(state["done"])
        self.np_random.bit_generator.state = state["np_random_state"]

    def close(self) -> None:
        self.backend.close()
        super().close()

    # -- helpers ----------------------------------------------------------------------------
    def _observation(self) -> np.ndarray:
        stats = self._stats
        assert stats is not None
        progress = stats.updates_done / self.config.total_updates
        return build_observation(progress, self._ema, stats.confidence, stats.score)

    @staticmethod
    def _base_info(stats: TrainingStats) -> dict[str, Any]:
        return {"score": float(stats.score), "mismatch": float(stats.mismatch),
                "updates_done": int(stats.updates_done)}

    @staticmethod
    def _check_finite(stats: TrainingStats) -> None:
        bad = [name for name, value in stats._asdict().items() if not math.isfinite(float(value))]
        if bad:
            raise RuntimeError(f"backend reset returned non-finite statistics: {', '.join(bad)}")


_TRACE_INDEX = {name: i for i, name in enumerate(TRACE_FIELDS)}
_EMA_ROWS = [_TRACE_INDEX[name] for name in EMA_SOURCES[1:]]


def _stats_finite(stats: TrainingStats) -> bool:
    return all(math.isfinite(value) for value in stats)
