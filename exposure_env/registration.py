"""Env ids and their factories.

Ids are registered with string entry points pointing at the factories below, so importing
``exposure_env`` stays cheap: ``gym.make("ATESD-Qwen3-v0")`` imports torch and transformers only
when it is called. Registration kwargs are plain data (numbers, strings, dicts), so env specs can
be pickled, deep-copied and sent to ``AsyncVectorEnv`` workers.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from exposure_env.errors import BackendUnavailableError

SURROGATE_ID = "ATESD-Surrogate-v0"
QWEN3_ID = "ATESD-Qwen3-v0"
REGISTERED_IDS: tuple[str, ...] = (SURROGATE_ID, QWEN3_ID)


def make_surrogate_env(**kwargs: Any) -> gym.Env:
    """Factory of ``ATESD-Surrogate-v0``: env config fields plus surrogate fields as kwargs."""
    from exposure_env.surrogate import make_surrogate_env as _make

    return _make(**kwargs)


def make_qwen3_env(**kwargs: Any) -> gym.Env:
    """Factory of ``ATESD-Qwen3-v0``; the implementation lives in ``distill_backend``."""
    try:
        from distill_backend.env_factory import make_qwen3_env as _make
    except ImportError as exc:
        raise BackendUnavailableError(
            f"{QWEN3_ID} needs the real training backend (torch + transformers), which could not be "
            f"imported ({exc}). Install it with: pip install -e '.[qwen3]' torch==2.13.0"
        ) from exc
    return _make(**kwargs)


def make_surrogate_vector_env(num_envs: int, **kwargs: Any) -> gym.vector.VectorEnv:
    """Native batched surrogate, used by ``gym.make_vec(SURROGATE_ID, vectorization_mode="vector_entry_point")``."""
    from exposure_env.vector import SurrogateVectorEnv

    return SurrogateVectorEnv(num_envs=num_envs, **kwargs)


def register_envs() -> None:
    """Register every id once (importing twice, or reloading, does not re-register)."""
    if SURROGATE_ID not in gym.registry:
        gym.register(
            id=SURROGATE_ID,
            entry_point="exposure_env.registration:make_surrogate_env",
            vector_entry_point="exposure_env.registration:make_surrogate_vector_env",
            disable_env_checker=False,
        )
    if QWEN3_ID not in gym.registry:
        gym.register(id=QWEN3_ID, entry_point="exposure_env.registration:make_qwen3_env")
