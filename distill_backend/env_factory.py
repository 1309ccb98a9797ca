"""Factory of ``ATESD-Qwen3-v0``: plain-data kwargs -> ``ExposureEnv`` over the real backend.

``gym.make("ATESD-Qwen3-v0", **kwargs)`` lands here (see ``exposure_env.registration``). Keys that
are :class:`~exposure_env.config.ExposureEnvConfig` fields configure the episode; the rest are
:class:`~distill_backend.config.BackendConfig` fields (plus the ``task`` / ``model_size`` shortcuts),
all plain data so env specs stay picklable.
"""

from __future__ import annotations

from typing import Any

from distill_backend.backend import Qwen3DistillBackend
from distill_backend.config import backend_config_from_kwargs
from exposure_env.config import split_env_kwargs
from exposure_env.env import ExposureEnv


def make_qwen3_env(**kwargs: Any) -> ExposureEnv:
    """``ExposureEnv`` over a :class:`Qwen3DistillBackend` built from ``kwargs``."""
    env_config, rest = split_env_kwargs(kwargs)
    backend = Qwen3DistillBackend(backend_config_from_kwargs(rest))
    return ExposureEnv(backend, env_config)
