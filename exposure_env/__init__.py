"""exposure_env: reasoning distillation as a Gymnasium control problem.

The seam of the project. It defines what a training backend reports (:mod:`exposure_env.types`),
what a controller observes (:mod:`exposure_env.schema`), how it is rewarded and credited
(:mod:`exposure_env.rewards`, :mod:`exposure_env.credit`), the episode kernel every env runs
(:mod:`exposure_env.episode`), the environments (:class:`ExposureEnv`,
:class:`~exposure_env.vector.SurrogateVectorEnv`), and a cheap numpy surrogate of a distillation run
(:mod:`exposure_env.surrogate`). At the bottom of the dependency graph it also holds the small
helpers every package shares: error classes (:mod:`exposure_env.errors`), atomic files and JSON
results (:mod:`exposure_env.io`), confidence intervals (:mod:`exposure_env.stats`) and command lines
built from config dataclasses (:mod:`exposure_env.commandline`). It depends on numpy, gymnasium and
scipy only, and never imports torch: importing it registers ``ATESD-Surrogate-v0`` and
``ATESD-Qwen3-v0`` and nothing heavier.
"""

from exposure_env.config import ExposureEnvConfig, split_env_kwargs
from exposure_env.credit import CompletedDecision, CreditLedger, CreditSettings
from exposure_env.env import ExposureEnv, parse_reveal_ratio
from exposure_env.episode import RESET_INFO_KEYS, STEP_INFO_KEYS, ResetInfo, StepInfo
from exposure_env.errors import (
    AtesdError,
    BackendUnavailableError,
    ConfigError,
    DatasetError,
    InvalidActionError,
    NotReadyError,
    ResetNeededError,
)
from exposure_env.registration import QWEN3_ID, REGISTERED_IDS, SURROGATE_ID, register_envs
from exposure_env.rewards import REWARD_MODES, RewardSettings, discounted_progress, grounded_score, window_reward
from exposure_env.schema import OBSERVATION_FIELDS, OBSERVATION_NAMES, observation_space
from exposure_env.types import (
    INITIAL_REVEAL_RATIO,
    TRACE_FIELDS,
    TrainingBackend,
    TrainingStats,
    UpdateTrace,
    WindowResult,
)
from exposure_env.wrappers import symmetric_actions

register_envs()

__all__ = [
    "AtesdError",
    "BackendUnavailableError",
    "CompletedDecision",
    "ConfigError",
    "CreditLedger",
    "CreditSettings",
    "DatasetError",
    "ExposureEnv",
    "ExposureEnvConfig",
    "INITIAL_REVEAL_RATIO",
    "InvalidActionError",
    "NotReadyError",
    "OBSERVATION_FIELDS",
    "OBSERVATION_NAMES",
    "QWEN3_ID",
    "REGISTERED_IDS",
    "RESET_INFO_KEYS",
    "REWARD_MODES",
    "ResetInfo",
    "ResetNeededError",
    "RewardSettings",
    "STEP_INFO_KEYS",
    "SURROGATE_ID",
    "StepInfo",
    "TRACE_FIELDS",
    "TrainingBackend",
    "TrainingStats",
    "UpdateTrace",
    "WindowResult",
    "discounted_progress",
    "grounded_score",
    "observation_space",
    "parse_reveal_ratio",
    "split_env_kwargs",
    "symmetric_actions",
    "window_reward",
]
