"""Factory of ``ATESD-Qwen3-v0``: plain-data kwargs -> ``ExposureEnv`` over the real backend.

``gym.make("ATESD-Qwen3-v0", **kwargs)`` lands here (see ``exposure_env.registration``). Keys that
are :class:`~exposure_env.config.ExposureEnvConfig` fields configure the episode; the rest are
:class:`~distill_backend.config.BackendConfig` fields (plus the ``task`` / ``model_size`` shortcuts),
all plain data so env specs stay picklable. An episode's update budget left unset follows the
model's recipe (``total_updates`` of :data:`~distill_backend.config.TINY_RECIPE` /
:data:`~distill_backend.config.CHECKPOINT_RECIPE`).
"""

from __future__ import annotations

from typing import Any

from distill_backend.backend import Qwen3DistillBackend
from distill_backend.config import backend_config_from_kwargs
from exposure_env.config import split_env_kwargs
from exposure_env.env import ExposureEnv


def make_qwen3_env(**kwargs: Any) -> ExposureEnv:
    """``ExposureEnv`` over a :class:`Qwen3DistillBackend` built from ``kwargs``."""
    config = backend_config_from_kwargs(split_env_kwargs(kwargs)[1])
    env_config, _ = split_env_kwargs({"total_updates": config.recipe["total_updates"], **kwargs})
    return ExposureEnv(Qwen3DistillBackend(config), env_config)
