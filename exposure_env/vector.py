"""``SurrogateVectorEnv``: ``num_envs`` surrogate runs stepped as one batch of numpy arrays.

It runs the same :func:`~exposure_env.surrogate.transition` as the single env and the same episode
kernel (:mod:`exposure_env.episode`), so actions, observations, rewards, episode ends and ``info``
keys are those of ``gym.make("ATESD-Surrogate-v0")``. What is its own: the batch's shared RNG, the
autoreset rule and sub-envs whose windows differ in length. It knows nothing about any other backend.

Semantics (Gymnasium 1.x vector API):

- Autoreset is ``AutoresetMode.NEXT_STEP``: the step after a sub-env terminates, that sub-env
  ignores its action, starts a new run and returns the reset observation with reward 0,
  ``terminated = truncated = False``.
- ``infos`` has the keys of the single env (:class:`~exposure_env.episode.StepInfo`), each an array
  with a leading ``num_envs`` axis; ``trace`` is an :class:`~exposure_env.types.UpdateTrace` of
  ``(num_envs, hold_window)`` arrays. Entries of a shorter last window and of a sub-env that was
  reset this step are NaN (``reveal_ratio`` too; ``num_updates`` is 0 for a reset sub-env).
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

from exposure_env import episode
from exposure_env.errors import ResetNeededError, check_range
from exposure_env.rewards import RewardComponents
from exposure_env.schema import observation_space
from exposure_env.surrogate import (
    SurrogateState,
    Workspace,
    collapse_reason,
    collapsed,
    initial,
    observe,
    split_surrogate_kwargs,
    transition,
)
from exposure_env.types import TRACE_FIELDS, UpdateTrace


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
        self._latent: SurrogateState | None = None
        self._episode: episode.EpisodeState | None = None
        self._workspace = Workspace()
        self._steps = np.zeros(self.num_envs, dtype=np.int64)  # env steps of the current episode
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._no_reasons = np.full(self.num_envs, "", dtype=object)
        self._collapse_reason = collapse_reason(self.params)

    # -- episode ----------------------------------------------------------------------------
    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed if isinstance(seed, int) or seed is None else None)
        self._rng = np.random.default_rng(seed)
        self._latent, self._episode = self._new_runs(self.num_envs)
        self._steps[:] = 0
        self._autoreset[:] = False
        return episode.observation(self._episode), episode.reset_info(self._episode, self.config)

    def step(self, actions: Any):
        if self._episode is None:
            raise ResetNeededError("call reset() before step()")
        action = episode.parse_actions(actions, self.num_envs)
        restart = self._autoreset
        lengths = episode.window_lengths(self._episode, self.config)
        lengths[restart] = 0
        if not restart.any() and (lengths == lengths[0]).all():
            step = self._advance(slice(None), int(lengths[0]), action)  # the usual case: one batch
        else:
            step = self._advance_groups(lengths, action, restart)
        self._episode = step.state
        self._steps += ~restart
        terminated = step.terminated
        truncated = np.zeros(self.num_envs, dtype=bool)
        if self.max_episode_steps is not None:
            truncated = (self._steps >= self.max_episode_steps) & ~terminated
        self._autoreset = terminated | truncated
        return step.observation, step.reward, terminated, truncated, episode.step_info(step, self.config)

    def _advance(self, rows: Any, length: int, action: episode.Action) -> episode.Step:
        """One window of ``length`` updates for the sub-envs ``rows`` (index array or ``slice(None)``)."""
        latent = self._latent
        sub = latent if isinstance(rows, slice) else SurrogateState(latent.logit[:, rows], latent.shallow[rows])
        if not isinstance(rows, slice):
            action = episode.Action(action.alpha[rows], action.clipped[rows])
        window = transition(self.params, sub, action.alpha, length, self._rng, self._workspace)
        score = window.score[:, -1]
        down = collapsed(self.params, score)
        reasons = self._no_reasons[rows] if not np.count_nonzero(down) else np.where(down, self._collapse_reason, "")
        state = self._episode if isinstance(rows, slice) else self._episode.rows(rows)
        step = episode.advance(state, action, episode.Window(UpdateTrace(window.traces), score, down,
                                                             reasons.astype(object)), self.config)
        # A diverged sub-env keeps its last good latent state, as its episode state (the kernel's rule).
        good = ~step.diverged
        if good.all():
            new_logit, new_shallow = window.state
        else:
            new_logit = np.where(good, window.state.logit, sub.logit)
            new_shallow = np.where(good, window.state.shallow, sub.shallow)
        if isinstance(rows, slice):
            self._latent = SurrogateState(new_logit, new_shallow)
        else:
            latent.logit[:, rows] = new_logit
            latent.shallow[rows] = new_shallow
        return step

    def _advance_groups(self, lengths: np.ndarray, action: episode.Action, restart: np.ndarray) -> episode.Step:
        """Sub-envs desynchronised by a divergence or a reset: one batched window per window length,
        and new runs for the sub-envs in ``restart``; the per-group steps merged into one."""
        n, cfg = self.num_envs, self.config
        state = self._episode
        reward, terminated, diverged = np.zeros(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        reasons = self._no_reasons.copy()
        parts = RewardComponents(np.zeros(n), np.zeros(n), np.zeros(n))
        progress_before = state.progress.copy()
        num_updates = np.zeros(n, dtype=np.int64)
        traces = np.full((len(TRACE_FIELDS), n, cfg.hold_window), np.nan)
        for length in np.unique(lengths[lengths > 0]).tolist():
            rows = np.flatnonzero(lengths == length)
            step = self._advance(rows, length, action)
            state = state.replace_rows(rows, step.state)
            reward[rows], terminated[rows], diverged[rows] = step.reward, step.terminated, step.diverged
            reasons[rows] = step.reasons
            for total, part in zip(parts, step.components):
                total[rows] = part
            num_updates[rows] = length
            traces[:, rows, :length] = step.trace.values
        if restart.any():
            latent, fresh = self._new_runs(int(restart.sum()))
            self._latent.logit[:, restart] = latent.logit
            self._latent.shallow[restart] = latent.shallow
            state = state.replace_rows(restart, fresh)
            self._steps[restart] = 0
            progress_before[restart] = np.nan
        alpha = np.where(restart, np.nan, action.alpha)
        return episode.Step(state, episode.observation(state), reward, terminated, diverged, reasons, parts,
                            progress_before, episode.Action(alpha, action.clipped & ~restart), num_updates,
                            UpdateTrace(traces, cfg.progress_signal))

    def _new_runs(self, count: int) -> tuple[SurrogateState, episode.EpisodeState]:
        """``count`` fresh students and their episode states (reset statistics at the initial ratio)."""
        latent = initial(self.params, self._rng, count)
        alpha = np.full(count, self.params.initial_reveal_ratio)
        observed = observe(self.params, latent, alpha, self._rng)
        return latent, episode.start(observed.stats, observed.score, alpha, self.config)

    def close_extras(self, **kwargs: Any) -> None:
        self._episode = None
        self._latent = None
