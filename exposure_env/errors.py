"""The project's error classes.

Every error a user can trigger with bad input is one of these. Messages name the field, the allowed
values and the value received, so a user can fix the call without reading our source. Subclassing
the matching built-in (ValueError, RuntimeError, ImportError) keeps ``except ValueError`` code in
user scripts working.
"""

from __future__ import annotations

import math
from typing import Any


class AtesdError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(AtesdError, ValueError):
    """A configuration field holds a value outside its allowed set."""

    def __init__(self, field: str, allowed: str, received: Any, hint: str = "") -> None:
        self.field = field
        self.allowed = allowed
        self.received = received
        message = f"{field} must be {allowed}; received {received!r}"
        if hint:
            message += f". {hint}"
        super().__init__(message)


class InvalidActionError(AtesdError, ValueError):
    """An action cannot be interpreted as a reveal ratio (NaN, inf, wrong shape or type)."""


class NotReadyError(AtesdError, RuntimeError):
    """An object was used before the call that prepares it (``reset``, ``train`` or ``load``)."""


class ResetNeededError(NotReadyError):
    """``step`` (or ``run_window``, ``state_dict``) was called before ``reset``, or after the episode
    ended. Both envs and both backends raise it for this misuse."""


class BackendUnavailableError(AtesdError, ImportError):
    """A backend needs optional packages that are not installed."""


class DatasetError(AtesdError, ValueError):
    """A dataset file or row does not have the expected shape."""


def check_range(
    field: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    integer: bool = False,
) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a finite number inside the given interval.

    Used by every config dataclass's ``__post_init__`` so the wording of range errors is the same
    everywhere.
    """
    left = "[" if low_inclusive else "("
    right = "]" if high_inclusive else ")"
    lo_text = "-inf" if low is None else f"{low:g}"
    hi_text = "inf" if high is None else f"{high:g}"
    kind = "an integer" if integer else "a number"
    allowed = f"{kind} in {left}{lo_text}, {hi_text}{right}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if not (hasattr(value, "__float__") and not integer):
            raise ConfigError(field, allowed, value)
    if integer and not float(value).is_integer():
        raise ConfigError(field, allowed, value)
    number = float(value)
    if not math.isfinite(number):
        raise ConfigError(field, allowed, value)
    if low is not None and (number < low or (number == low and not low_inclusive)):
        raise ConfigError(field, allowed, value)
    if high is not None and (number > high or (number == high and not high_inclusive)):
        raise ConfigError(field, allowed, value)


def check_choice(field: str, value: Any, choices: tuple[str, ...]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(field, "one of " + ", ".join(repr(c) for c in choices), value)
