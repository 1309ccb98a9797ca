"""Configuration of :class:`exposure_env.env.ExposureEnv` (backend-independent)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from exposure_env.errors import check_choice, check_range
from exposure_env.rewards import REWARD_MODES
from exposure_env.types import TRACE_FIELDS


@dataclass(frozen=True)
class ExposureEnvConfig:
    """How a distillation run is turned into an episode.

    Defaults are ours (the ATESD paper does not publish them); each is documented here and in the
    README's table of defaults.
    """

    total_updates: int = 200
    """Update budget of one run (T). The episode terminates when it is spent."""
    hold_window: int = 4
    """H: student updates per env step, all with the same reveal ratio."""
    reward_mode: str = "discounted"
    """One of ``immediate``, ``discounted``, ``discounted+gt`` (see :mod:`exposure_env.rewards`)."""
    gamma: float = 0.9
    """Discount of per-update progress inside the credit window."""
    lambda_gt: float = 0.05
    """Weight of the teacher-grounded term in ``discounted+gt``."""
    progress_signal: str = "probe_nll"
    """Which per-update statistic is the learning-progress signal ``l`` (a decrease is progress)."""
    ema_decay: float = 0.9
    """Per-update decay of the observation's running averages."""
    divergence_penalty: float = 1.0
    """Reward given (as ``-divergence_penalty``) on the step where training diverges."""

    def __post_init__(self) -> None:
        check_range("total_updates", self.total_updates, 1, None, integer=True)
        check_range("hold_window", self.hold_window, 1, None, integer=True)
        check_choice("reward_mode", self.reward_mode, REWARD_MODES)
        check_range("gamma", self.gamma, 0.0, 1.0)
        check_range("lambda_gt", self.lambda_gt, 0.0, None)
        check_choice("progress_signal", self.progress_signal, ("probe_nll", "loss"))
        check_range("ema_decay", self.ema_decay, 0.0, 1.0, high_inclusive=False)
        check_range("divergence_penalty", self.divergence_penalty, 0.0, None)

    @property
    def num_decisions(self) -> int:
        """Env steps per episode (the last window may be shorter)."""
        return -(-self.total_updates // self.hold_window)


ENV_CONFIG_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ExposureEnvConfig))
assert set(("probe_nll", "loss")) <= set(TRACE_FIELDS)


def split_env_kwargs(kwargs: Mapping[str, Any]) -> tuple[ExposureEnvConfig, dict[str, Any]]:
    """Separate ``gym.make`` kwargs into the env config and the rest (for the backend)."""
    env_part = {k: v for k, v in kwargs.items() if k in ENV_CONFIG_FIELDS}
    rest = {k: v for k, v in kwargs.items() if k not in ENV_CONFIG_FIELDS}
    return ExposureEnvConfig(**env_part), rest
