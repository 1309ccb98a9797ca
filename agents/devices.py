"""The torch device a controller asks for, checked before any work: ``cuda`` on a machine without
CUDA is a :class:`~exposure_env.errors.ConfigError` naming the field, not an error from deep inside
torch. It knows nothing about controllers."""

from __future__ import annotations

import torch

from exposure_env.errors import ConfigError


def torch_device(field: str, device: str) -> torch.device:
    """``device`` as a ``torch.device`` (``auto``: CUDA when available, else CPU)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(field, "a torch device such as 'cpu', 'cuda', 'cuda:1' or 'auto'", device) from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(field, "'cpu' or 'auto' on this machine, which has no CUDA", device)
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ConfigError(field, f"a CUDA device index below {torch.cuda.device_count()}", device)
    return resolved
