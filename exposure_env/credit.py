"""Credit for held decisions over a lookahead of ``L`` student updates (the ATESD paper's ``L``).

The env rewards a decision over its own window (``L`` = the hold window ``H``). ATESD credits a
decision made at update ``t0`` over the next ``L`` updates, which may span later windows held at
other reveal ratios. :class:`CreditLedger` keeps every decision whose lookahead is still open,
appends each new window's per-update trace (``info["trace"]["progress"]`` and ``["grounded"]``) to
all of them, and hands a decision back once ``L`` updates after it have been observed or the
episode has ended. A decision whose own window diverged (``info["diverged"]``) gets the env's
penalty as its credit and sees no later windows.

**Decisions still open when the episode ends** have seen ``n < L`` updates. Crediting them over the
shortened window would make late decisions' credits systematically smaller (fewer discounted terms),
a bias tied to training progress that a progress-aware policy would learn as "late decisions are
bad". ``CreditSettings.end_of_run`` picks the correction (:func:`complete_partial`):

- ``rescale`` (default): each component is scaled to the full lookahead by the weight mass it
  actually observed: ``G_lp`` by ``sum_{i<L} gamma**i / sum_{i<n} gamma**i``, ``immediate`` (an
  undiscounted sum of per-update changes) by ``L / n``; ``G_gt`` is already a discount-normalized
  mean and stays. When the per-update changes are stationary, a decision's expected credit is then
  the same at every position of the run. It keeps every decision (the late ones are where a
  schedule usually differs most) at the price of a larger variance for the last few.
- ``drop``: decisions whose lookahead did not fill get no credit at all (unbiased for the kept ones,
  but the policy never hears about the last ``ceil(L / H) - 1`` windows of a run).

A diverged decision keeps the penalty under both rules.

The credit is the reward function of :mod:`exposure_env.rewards` applied to the concatenated
traces, with the same :class:`~exposure_env.rewards.RewardSettings` the env's reward uses, so an
agent picks a mode, ``L`` and ``lambda_gt`` without writing the formula again. This module knows
the ``info`` keys of :mod:`exposure_env.episode`; it knows nothing about policies or backends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple

import numpy as np

from exposure_env.errors import check_choice, check_range
from exposure_env.rewards import RewardComponents, RewardSettings, discount_weights

END_OF_RUN_RULES: tuple[str, ...] = ("rescale", "drop")


@dataclass(frozen=True)
class CreditSettings(RewardSettings):
    """Reward settings plus the lookahead a decision is credited over."""

    lookahead: int | None = None
    """L: student updates a decision is credited over (may span later windows). ``None``: the
    decision's own window (L = the env's hold window H), i.e. exactly the env's reward."""
    end_of_run: str = "rescale"
    """How decisions still open at the end of an episode (fewer than L updates seen) are credited:
    ``rescale`` (each component scaled to the full lookahead by the discount mass it observed, so
    the expected credit does not depend on a decision's position) or ``drop`` (no credit). See the
    module docstring."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lookahead is not None:
            check_range("lookahead", self.lookahead, 1, None, integer=True)
        check_choice("end_of_run", self.end_of_run, END_OF_RUN_RULES)


class CompletedDecision(NamedTuple):
    """A decision whose credit is final."""

    payload: Any
    """What the agent registered with the decision (e.g. its observation and policy sample)."""
    credit: float
    """Lookahead return in the configured reward mode (the env's penalty if the window diverged;
    rescaled to the full lookahead if the episode ended first, see ``end_of_run``)."""
    updates_seen: int
    """Updates the credit was computed from (``L``, fewer at the end of an episode, 0 after a
    divergence)."""


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

    :param settings: reward mode, gamma and lambda_gt of the credit (and ``end_of_run`` when it
        is a :class:`CreditSettings`; plain :class:`RewardSettings` rescale).
    :param lookahead: L, in student updates.
    """

    def __init__(self, settings: RewardSettings, lookahead: int) -> None:
        check_range("lookahead", lookahead, 1, None, integer=True)
        self.settings = settings
        self.lookahead = int(lookahead)
        self.end_of_run = getattr(settings, "end_of_run", "rescale")
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
            if self.end_of_run == "drop":
                done = [d for d in done if self._finished(d)]
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
        parts = self.settings.components(decision.l_before, l_trace, g_trace)
        if length < self.lookahead:
            parts = complete_partial(parts, length, self.lookahead, self.settings.gamma)
        return CompletedDecision(decision.payload, float(self.settings.reward(parts)), length)

    def clear(self) -> None:
        self.open = []

    def state_dict(self) -> dict[str, Any]:
        """The lookahead and the open decisions (one dict of fields each, payloads as registered),
        for a checkpoint of the agent that owns the ledger."""
        return {"lookahead": self.lookahead, "open": [dict(vars(d)) for d in self.open]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (payloads as the owner rebuilt them)."""
        self.lookahead = int(state["lookahead"])
        self.open = [_OpenDecision(**fields) for fields in state["open"]]

def complete_partial(parts: RewardComponents, seen: int, lookahead: int, gamma: float) -> RewardComponents:
    """The components of a lookahead cut after ``seen < lookahead`` updates, scaled to the full
    lookahead by the weight mass observed (the ``rescale`` rule of the module docstring): the
    discounted sum ``G_lp`` by ``sum_{i<L} gamma**i / sum_{i<n} gamma**i``, the undiscounted
    ``immediate`` by ``L / n``; ``G_gt`` (a normalized mean) as it is."""
    full, observed = discount_weights(float(gamma), lookahead).sum(), discount_weights(float(gamma), seen).sum()
    return RewardComponents(parts.immediate * (lookahead / seen), parts.discounted * (full / observed), parts.grounded)
