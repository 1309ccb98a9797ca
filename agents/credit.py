"""Credit assignment for held decisions: the paper's discounted lookahead over L student updates.

The env rewards a decision over its own window (lookahead = hold window H). ATESD credits a
decision made at update ``t0`` over the next ``L`` updates, which may span later windows (held at
other reveal ratios). The ledger keeps every decision whose lookahead is still open, appends each
new window's per-update trace (``info["trace"]["progress"]`` and ``["grounded"]``) to all of them,
and hands a decision back as *completed* once ``L`` updates after it have been observed or the
episode has ended (then with the updates it got). The credit itself comes from
:mod:`exposure_env.rewards` (``reward_components`` + ``combine_reward``), so the formulas exist once.

This module knows the info keys of ``ExposureEnv.step`` and nothing about policies or backends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple

import numpy as np

from exposure_env.rewards import combine_reward, reward_components


class CompletedDecision(NamedTuple):
    """A decision whose credit is final."""

    obs: np.ndarray
    """Observation the decision was taken on."""
    sample: float
    """The policy's raw sample (before clipping to the alpha bounds): what ``log_prob`` scores."""
    credit: float
    """Lookahead return of the configured reward mode."""
    updates_seen: int
    """Updates the credit covers (``L``, or fewer at the end of an episode)."""


@dataclass
class _OpenDecision:
    obs: np.ndarray
    sample: float
    l_before: float
    progress: list[np.ndarray] = field(default_factory=list)
    grounded: list[np.ndarray] = field(default_factory=list)
    updates_seen: int = 0
    override: float | None = None  # set when the decision's own window diverged


class CreditLedger:
    """Open decisions waiting for their lookahead to fill.

    :param reward_mode: one of :data:`exposure_env.rewards.REWARD_MODES`.
    :param lookahead: L, in student updates.
    :param gamma: per-update discount inside the lookahead.
    :param lambda_gt: weight of the teacher-grounded term (``discounted+gt`` only).
    """

    def __init__(self, reward_mode: str, lookahead: int, gamma: float, lambda_gt: float) -> None:
        self.reward_mode = reward_mode
        self.lookahead = lookahead
        self.gamma = gamma
        self.lambda_gt = lambda_gt
        self.open: list[_OpenDecision] = []

    def record(self, obs: np.ndarray, sample: float, reward: float, info: Mapping[str, Any],
               episode_over: bool) -> list[CompletedDecision]:
        """Register the decision of this step, feed its window to every open decision, and return
        the decisions completed by it (all of them if the episode is over)."""
        trace = info.get("trace") or {}
        decision = _OpenDecision(np.asarray(obs, dtype=np.float32).copy(), float(sample),
                                 float(info["progress_before"]))
        if not trace:
            # A diverged window has no trace: the decision gets the env's (penalty) reward as is.
            decision.override = float(reward)
        self.open.append(decision)
        if trace:
            progress = np.asarray(trace["progress"], dtype=np.float64)
            grounded = np.asarray(trace["grounded"], dtype=np.float64)
            for item in self.open:
                if item.override is None and item.updates_seen < self.lookahead:
                    item.progress.append(progress)
                    item.grounded.append(grounded)
                    item.updates_seen += len(progress)
        if episode_over:
            done, self.open = self.open, []
        else:
            done = [d for d in self.open if d.override is not None or d.updates_seen >= self.lookahead]
            self.open = [d for d in self.open if not (d.override is not None or d.updates_seen >= self.lookahead)]
        return [self._complete(d) for d in done if d.override is not None or d.updates_seen > 0]

    def _complete(self, decision: _OpenDecision) -> CompletedDecision:
        if decision.override is not None:
            return CompletedDecision(decision.obs, decision.sample, decision.override, 0)
        length = min(decision.updates_seen, self.lookahead)
        l_trace = np.concatenate(decision.progress)[:length]
        g_trace = np.concatenate(decision.grounded)[:length]
        parts = reward_components(decision.l_before, l_trace, g_trace, self.gamma)
        credit = float(combine_reward(self.reward_mode, parts, self.lambda_gt))
        return CompletedDecision(decision.obs, decision.sample, credit, length)

    def clear(self) -> None:
        self.open = []
