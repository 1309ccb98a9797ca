"""``SurrogateVectorEnv``: ``num_envs`` surrogate runs stepped as one batch of numpy arrays.

It runs the same :func:`~exposure_env.surrogate.transition` as the single env, and builds its
observations and rewards with the same pure functions (:func:`~exposure_env.schema.build_observation`,
:func:`~exposure_env.schema.advance_ema`, :func:`~exposure_env.rewards.reward_components`,
:func:`~exposure_env.rewards.combine_reward`), so no formula is written twice. It knows nothing
about any other backend.

Semantics (Gymnasium 1.x vector API):

- Autoreset is ``AutoresetMode.NEXT_STEP``: the step after a sub-env terminates, that sub-env
  ignores its action, starts a new run and returns the reset observation with reward 0,
  ``terminated = truncated = False``.
- ``infos`` is a dict of arrays with a leading ``num_envs`` axis: ``score``, ``mismatch``,
  ``updates_done``, ``reveal_ratio``, ``action_clipped``, ``diverged``, ``progress_before``,
  ``num_updates`` (updates run this step; 0 for a sub-env that was reset), ``reward_components``
  (dict of ``immediate``/``discounted``/``grounded`` arrays) and ``trace`` (dict of ``(num_envs,
  hold_window)`` arrays of every ``TRACE_FIELDS`` entry plus ``progress`` and ``grounded``; entries
  of a shorter last window and of a reset sub-env are NaN).
- Randomness: one generator for the whole batch, seeded by ``reset(seed=...)``. With
  ``num_envs = 1`` the first episode is identical to ``gym.make("ATESD-Surrogate-v0")`` reset with
  the same seed; later episodes differ (the single env re-seeds its backend from its own generator
  at each reset, the batch draws new students from the shared one).
- ``max_episode_steps`` (optional, as ``gym.make_vec`` passes it) truncates episodes after that
  many env steps, like ``TimeLimit`` on the single env.
- Divergence (collapse, non-finite statistics) terminates that sub-env with reward
  ``-divergence_penalty``, exactly like :class:`~exposure_env.env.ExposureEnv`.
- Bad actions: NaN/inf or a shape other than ``(num_envs, 1)`` / ``(num_envs,)`` raise
  :class:`~exposure_env.errors.InvalidActionError`; finite values outside [0, 1] are clipped and
  flagged in ``infos["action_clipped"]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from exposure_env.errors import InvalidActionError, ResetNeededError, check_range
from exposure_env.rewards import combine_reward, reward_components
from exposure_env.schema import EMA_SOURCES, advance_ema, build_observation, observation_space
from exposure_env.surrogate import (
    SurrogateState,
    Workspace,
    initial,
    observe,
    split_surrogate_kwargs,
    transition,
)
from exposure_env.types import TRACE_FIELDS

_FIELD_INDEX = {name: i for i, name in enumerate(TRACE_FIELDS)}
# Rows of the trace array that feed the EMAs after the reveal ratio (EMA_SOURCES[0]).
_EMA_ROWS = [_FIELD_INDEX[name] for name in EMA_SOURCES[1:]]
_CONFIDENCE = _FIELD_INDEX["confidence"]
_MISMATCH = _FIELD_INDEX["mismatch"]
_REF_LOGPROB = _FIELD_INDEX["teacher_ref_logprob"]


class SurrogateVectorEnv(VectorEnv):
    """A batch of ``ATESD-Surrogate-v0`` runs; see the module docstring for the semantics.

    ``SurrogateVectorEnv(num_envs, **kwargs)`` takes the same keyword arguments as
    ``gym.make("ATESD-Surrogate-v0", ...)``: ``ExposureEnvConfig`` fields plus ``params`` and
    ``difficulty_mix``.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, max_episode_steps: int | None = None, **kwargs: Any) -> None:
        check_range("num_envs", num_envs, 1, None, integer=True)
        if max_episode_steps is not None:
            check_range("max_episode_steps", max_episode_steps, 1, None, integer=True)
        self.num_envs = int(num_envs)
        self.max_episode_steps = max_episode_steps
        self.config, self.params = split_surrogate_kwargs(kwargs)
        self.single_observation_space = observation_space()
        self.single_action_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._rng: np.random.Generator | None = None
        self._state: SurrogateState | None = None
        self._workspace = Workspace()
        n = self.num_envs
        # Per sub-env end-of-window statistics the observation and the next reward are built from.
        self._updates = np.zeros(n, dtype=np.int64)
        self._steps = np.zeros(n, dtype=np.int64)  # env steps of the current episode (for truncation)
        self._autoreset = np.zeros(n, dtype=bool)
        self._ema = np.zeros((n, len(EMA_SOURCES)))
        self._score, self._mismatch = np.zeros(n), np.zeros(n)
        self._confidence, self._progress = np.zeros(n), np.zeros(n)

    # -- episode ----------------------------------------------------------------------------
    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed if isinstance(seed, int) or seed is None else None)
        self._rng = np.random.default_rng(seed)
        n = self.num_envs
        self._state = initial(self.params, self._rng, n)
        self._updates[:] = 0
        self._steps[:] = 0
        self._autoreset[:] = False
        alpha = np.full(n, self.params.reset_reveal_ratio)
        observed = observe(self.params, self._state, alpha, self._rng)
        self._set_stats(np.ones(n, dtype=bool), alpha, observed.stats, observed.score)
        info = {"score": self._score.copy(), "mismatch": self._mismatch.copy(),
                "updates_done": self._updates.copy()}
        return self._observation(), info

    def step(self, actions: Any):
        if self._state is None:
            raise ResetNeededError("call reset() before step()")
        alpha, clipped = self._parse_actions(actions)
        cfg, n = self.config, self.num_envs
        rewards = np.zeros(n)
        terminated = np.zeros(n, dtype=bool)
        diverged = np.zeros(n, dtype=bool)
        restart = self._autoreset
        remaining = cfg.total_updates - self._updates
        num_updates = np.where(restart, 0, np.minimum(cfg.hold_window, remaining))
        l_before = self._progress.copy()
        parts = {name: np.zeros(n) for name in ("immediate", "discounted", "grounded")}

        # Sub-envs run windows of at most two lengths (hold_window, and the remainder of the
        # budget); each length is one batched transition. Usually all rows share one length.
        first = int(num_updates[0])
        if (num_updates == first).all():
            groups = [(slice(None), first)] if first else []
        else:
            groups = [(np.flatnonzero(num_updates == length), length)
                      for length in np.unique(num_updates).tolist() if length]
        if len(groups) == 1 and groups[0][1] == cfg.hold_window and isinstance(groups[0][0], slice):
            traces = self._run(slice(None), cfg.hold_window, alpha, rewards, parts, terminated, diverged)
        else:  # shorter windows and reset rows are padded with NaN
            traces = np.full((len(TRACE_FIELDS), n, cfg.hold_window), np.nan)
            for rows, length in groups:
                traces[:, rows, :length] = self._run(rows, length, alpha, rewards, parts, terminated, diverged)

        if restart.any():
            self._restart(restart)
        self._steps += ~restart
        truncated = np.zeros(n, dtype=bool)
        if self.max_episode_steps is not None:
            truncated = (self._steps >= self.max_episode_steps) & ~terminated
        self._autoreset = terminated | truncated
        trace = {name: traces[i] for i, name in enumerate(TRACE_FIELDS)}
        trace["progress"] = trace[cfg.progress_signal]
        trace["grounded"] = trace["teacher_ref_logprob"]
        info = {
            "score": self._score.copy(), "mismatch": self._mismatch.copy(), "updates_done": self._updates.copy(),
            "reveal_ratio": np.where(restart, np.nan, alpha), "action_clipped": clipped & ~restart,
            "diverged": diverged, "progress_before": l_before, "num_updates": num_updates,
            "reward_components": parts, "trace": trace,
        }
        return self._observation(), rewards, terminated, truncated, info

    def _run(self, rows, length, alpha, rewards, parts, terminated, diverged) -> np.ndarray:
        """Advance the sub-envs ``rows`` (index array or ``slice(None)``) by one window of
        ``length`` updates, writing into the output arrays; returns the (F, rows, length) traces."""
        cfg, params, state = self.config, self.params, self._state
        sub = SurrogateState(state.logit[:, rows], state.shallow[rows])
        window = transition(params, sub, alpha[rows], length, self._rng, self._workspace)
        t = window.traces  # (F, b, length)
        score = window.score[:, -1]
        l_trace = t[_FIELD_INDEX[cfg.progress_signal]]
        comp = reward_components(self._progress[rows], l_trace, t[_REF_LOGPROB], cfg.gamma)
        # Non-finite statistics can only come from a non-finite latent state: within a window the
        # logits move linearly and the transient geometrically, so a finite end state means a
        # finite window, and the statistics are clipped functions of it. Checking the (D, b)
        # state is ~100x cheaper than the (F, b, n) traces.
        new = window.state
        bad = (score < params.collapse_score) | ~np.isfinite(new.logit.sum(axis=0) + new.shallow)
        rewards[rows] = np.where(bad, -cfg.divergence_penalty, combine_reward(cfg.reward_mode, comp, cfg.lambda_gt))
        for name, value in comp._asdict().items():
            parts[name][rows] = np.where(bad, 0.0, value)
        diverged[rows] = bad

        # A diverged sub-env keeps its last good statistics (as ExposureEnv does) and terminates.
        good = ~bad
        alpha_trace = np.broadcast_to(alpha[rows, None, None], (t.shape[1], 1, length))
        ema_traces = np.concatenate([alpha_trace, t[_EMA_ROWS].transpose(1, 0, 2)], axis=1)
        self._ema[rows] = np.where(good[:, None], advance_ema(self._ema[rows], ema_traces, cfg.ema_decay),
                                   self._ema[rows])
        state.logit[:, rows] = np.where(good, new.logit, sub.logit)
        state.shallow[rows] = np.where(good, new.shallow, sub.shallow)
        last = t[:, :, -1]
        for target, value in ((self._score, score), (self._mismatch, last[_MISMATCH]),
                              (self._confidence, last[_CONFIDENCE]), (self._progress, l_trace[:, -1])):
            target[rows] = np.where(good, value, target[rows])
        self._updates[rows] += np.where(good, length, 0)
        terminated[rows] = bad | (self._updates[rows] >= cfg.total_updates)
        return t

    def _restart(self, mask: np.ndarray) -> None:
        """Start new runs in the sub-envs of ``mask`` (the NEXT_STEP autoreset)."""
        count = int(mask.sum())
        fresh = initial(self.params, self._rng, count)
        self._state.logit[:, mask] = fresh.logit
        self._state.shallow[mask] = fresh.shallow
        self._updates[mask] = 0
        self._steps[mask] = 0
        alpha = np.full(count, self.params.reset_reveal_ratio)
        observed = observe(self.params, fresh, alpha, self._rng)
        self._set_stats(mask, alpha, observed.stats, observed.score)

    def _set_stats(self, mask: np.ndarray, alpha: np.ndarray, stats: np.ndarray, score: np.ndarray) -> None:
        """Set the end-of-window statistics and start the EMAs of the sub-envs in ``mask``."""
        self._ema[mask] = np.concatenate([alpha[None], stats[_EMA_ROWS]]).T
        self._score[mask] = score
        self._mismatch[mask] = stats[_MISMATCH]
        self._confidence[mask] = stats[_CONFIDENCE]
        self._progress[mask] = stats[_FIELD_INDEX[self.config.progress_signal]]

    # -- helpers ----------------------------------------------------------------------------
    def _observation(self) -> np.ndarray:
        progress = self._updates / self.config.total_updates
        return build_observation(progress, self._ema, self._confidence, self._score)

    def _parse_actions(self, actions: Any) -> tuple[np.ndarray, np.ndarray]:
        try:
            array = np.asarray(actions, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidActionError(
                f"actions must be reveal ratios of shape ({self.num_envs}, 1); received {actions!r}"
            ) from exc
        if array.shape not in ((self.num_envs, 1), (self.num_envs,)):
            raise InvalidActionError(
                f"actions must have shape ({self.num_envs}, 1) (one reveal ratio in [0, 1] per sub-env); "
                f"received shape {array.shape}"
            )
        alpha = array.reshape(self.num_envs)
        if not np.isfinite(alpha).all():
            raise InvalidActionError(f"actions must be finite reveal ratios in [0, 1]; received {alpha}")
        clipped_alpha = np.clip(alpha, 0.0, 1.0)
        return clipped_alpha, clipped_alpha != alpha

    def close_extras(self, **kwargs: Any) -> None:
        self._state = None
