"""Credit for held decisions over a lookahead of ``L`` student updates (the ATESD paper's ``L``).

The env rewards a decision over its own window (``L`` = the hold window ``H``). ATESD credits a
decision made at update ``t0`` over the next ``L`` updates, which may span later windows held at
other reveal ratios. :class:`CreditLedger` keeps every decision whose lookahead is still open,
appends each new window's per-update trace (``info["trace"]["progress"]`` and ``["grounded"]``) to
all of them, and hands a decision back once ``L`` updates after it have been observed or the
episode has ended (then with the updates it got). A decision whose own window diverged
(``info["diverged"]``) gets the env's penalty as its credit and sees no later windows.

The credit is the reward function of :mod:`exposure_env.rewards` applied to the concatenated
traces, with the same :class:`~exposure_env.rewards.RewardSettings` the env's reward uses, so an
agent picks a mode, ``L`` and ``lambda_gt`` without writing the formula again. This module knows
the ``info`` keys of :mod:`exposure_env.episode`; it knows nothing about policies or backends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple

import numpy as np

from exposure_env.errors import check_range
from exposure_env.rewards import RewardSettings


@dataclass(frozen=True)
class CreditSettings(RewardSettings):
    """Reward settings plus the lookahead a decision is credited over."""

    lookahead: int | None = None
    """L: student updates a decision is credited over (may span later windows). ``None``: the
    decision's own window (L = the env's hold window H), i.e. exactly the env's reward."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lookahead is not None:
            check_range("lookahead", self.lookahead, 1, None, integer=True)


class CompletedDecision(NamedTuple):
    """A decision whose credit is final."""

    payload: Any
    """What the agent registered with the decision (e.g. its observation and policy sample)."""
    credit: float
    """Lookahead return in the configured reward mode (the env's penalty if the window diverged)."""
    updates_seen: int
    """Updates the credit covers (``L``, fewer at the end of an episode, 0 after a divergence)."""


@dataclass
class _OpenDecision:
    payload: Any
    l_before: float
    progress: list[np.ndarray] = field(default_factory=list)
    grounded: list[np.ndarray] = field(default_factory=list)
    updates_seen: int = 0
    penalty: float | None = None  # set when the decision's own window diverged


class CreditLedger:
    """Open decisions waiting for their lookahead to fill.

    :param settings: reward mode, gamma and lambda_gt of the credit.
    :param lookahead: L, in student updates.
    """

    def __init__(self, settings: RewardSettings, lookahead: int) -> None:
        check_range("lookahead", lookahead, 1, None, integer=True)
        self.settings = settings
        self.lookahead = int(lookahead)
        self.open: list[_OpenDecision] = []

    def record(self, payload: Any, reward: float, info: Mapping[str, Any],
               episode_over: bool) -> list[CompletedDecision]:
        """Register the decision of this step (``reward`` and ``info`` as ``env.step`` returned them),
        feed its window to every open decision, and return the decisions it completes (all of them
        if the episode is over)."""
        decision = _OpenDecision(payload, float(info["progress_before"]))
        if info["diverged"]:
            decision.penalty = float(reward)
        self.open.append(decision)
        if not info["diverged"]:
            trace = info["trace"]
            progress = np.asarray(trace["progress"], dtype=np.float64)
            grounded = np.asarray(trace["grounded"], dtype=np.float64)
            for item in self.open:
                if item.penalty is None and item.updates_seen < self.lookahead:
                    item.progress.append(progress)
                    item.grounded.append(grounded)
                    item.updates_seen += len(progress)
        if episode_over:
            done, self.open = self.open, []
        else:
            done = [d for d in self.open if self._finished(d)]
            self.open = [d for d in self.open if not self._finished(d)]
        return [self._complete(d) for d in done if d.penalty is not None or d.updates_seen > 0]

    def _finished(self, decision: _OpenDecision) -> bool:
        return decision.penalty is not None or decision.updates_seen >= self.lookahead

    def _complete(self, decision: _OpenDecision) -> CompletedDecision:
        if decision.penalty is not None:
            return CompletedDecision(decision.payload, decision.penalty, 0)
        length = min(decision.updates_seen, self.lookahead)
        l_trace = np.concatenate(decision.progress)[:length]
        g_trace = np.concatenate(decision.grounded)[:length]
        credit = float(self.settings.reward(self.settings.components(decision.l_before, l_trace, g_trace)))
        return CompletedDecision(decision.payload, credit, length)

    def clear(self) -> None:
        self.open = []
