"""Configuration of an ATESD episode (backend-independent): :class:`ExposureEnvConfig`.

It knows the reward settings (:class:`~exposure_env.rewards.RewardSettings`, which it extends) and
nothing about any backend; ``gym.make`` kwargs that are not its fields go to the backend.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from exposure_env.errors import check_choice, check_range
from exposure_env.rewards import RewardSettings
from exposure_env.types import DEFAULT_PROGRESS_SIGNAL, PROGRESS_SIGNALS


@dataclass(frozen=True)
class ExposureEnvConfig(RewardSettings):
    """How a distillation run is turned into an episode.

    Defaults are ours (the ATESD paper does not publish them). The reward fields (``reward_mode``,
    ``gamma``, ``lambda_gt``) are inherited from :class:`~exposure_env.rewards.RewardSettings`.
    """

    total_updates: int = 200
    """Update budget of one run (T). The episode terminates when it is spent."""
    hold_window: int = 4
    """H: student updates per env step, all with the same reveal ratio."""
    progress_signal: str = DEFAULT_PROGRESS_SIGNAL
    """Which per-update statistic is the learning-progress signal ``l`` (a decrease is progress):
    ``probe_nll`` or ``loss``."""
    ema_decay: float = 0.9
    """Per-update decay of the observation's running averages."""
    divergence_penalty: float = 1.0
    """Reward given (as ``-divergence_penalty``) on the step where training diverges."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("total_updates", self.total_updates, 1, None, integer=True)
        check_range("hold_window", self.hold_window, 1, None, integer=True)
        check_choice("progress_signal", self.progress_signal, PROGRESS_SIGNALS)
        check_range("ema_decay", self.ema_decay, 0.0, 1.0, high_inclusive=False)
        check_range("divergence_penalty", self.divergence_penalty, 0.0, None)

    @property
    def num_decisions(self) -> int:
        """Env steps per episode (the last window may be shorter)."""
        return -(-self.total_updates // self.hold_window)

    @property
    def reward_settings(self) -> RewardSettings:
        """The reward part of this config on its own."""
        return RewardSettings(self.reward_mode, self.gamma, self.lambda_gt)


ENV_CONFIG_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ExposureEnvConfig))


def split_env_kwargs(kwargs: Mapping[str, Any]) -> tuple[ExposureEnvConfig, dict[str, Any]]:
    """Separate ``gym.make`` kwargs into the env config and the rest (for the backend)."""
    env_part = {k: v for k, v in kwargs.items() if k in ENV_CONFIG_FIELDS}
    rest = {k: v for k, v in kwargs.items() if k not in ENV_CONFIG_FIELDS}
    return ExposureEnvConfig(**env_part), rest
