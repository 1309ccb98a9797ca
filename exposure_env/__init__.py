"""exposure_env: reasoning distillation as a Gymnasium control problem.

The seam of the project. It defines what a training backend reports (:mod:`exposure_env.types`),
what a controller observes (:mod:`exposure_env.schema`), how it is rewarded
(:mod:`exposure_env.rewards`), the environment (:class:`ExposureEnv`), and a cheap numpy surrogate
of a distillation run (:mod:`exposure_env.surrogate`). It depends on numpy, gymnasium and scipy
only, and never imports torch: importing it registers ``ATESD-Surrogate-v0`` and
``ATESD-Qwen3-v0`` and nothing heavier.
"""

from exposure_env.config import ExposureEnvConfig, split_env_kwargs
from exposure_env.env import ExposureEnv, parse_reveal_ratio
from exposure_env.errors import (
    AtesdError,
    BackendUnavailableError,
    ConfigError,
    DatasetError,
    InvalidActionError,
    ResetNeededError,
)
from exposure_env.registration import QWEN3_ID, REGISTERED_IDS, SURROGATE_ID, register_envs
from exposure_env.rewards import REWARD_MODES, discounted_progress, grounded_score, window_reward
from exposure_env.schema import OBSERVATION_FIELDS, OBSERVATION_NAMES, observation_space
from exposure_env.types import TRACE_FIELDS, TrainingBackend, TrainingStats, UpdateTrace, WindowResult
from exposure_env.wrappers import symmetric_actions

register_envs()

__all__ = [
    "AtesdError",
    "BackendUnavailableError",
    "ConfigError",
    "DatasetError",
    "ExposureEnv",
    "ExposureEnvConfig",
    "InvalidActionError",
    "OBSERVATION_FIELDS",
    "OBSERVATION_NAMES",
    "QWEN3_ID",
    "REGISTERED_IDS",
    "REWARD_MODES",
    "ResetNeededError",
    "SURROGATE_ID",
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
