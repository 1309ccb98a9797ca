"""Files that readers never see half-written, and JSON results that stay valid JSON.

- :func:`atomic_write`: the one way this project writes a file: through a temporary sibling (same
  folder, same suffix, so tools that pick a format from the suffix still do) and ``os.replace``.
- :func:`atomic_write_text`, :func:`write_json`: text, and a JSON result (NaN and inf become
  ``null``, numpy and dataclass values become plain data; :func:`to_plain` does the conversion).

It knows nothing about what is written.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Create or replace ``path``: ``write(tmp)`` writes a temporary sibling, which then replaces
    ``path`` in one step. The parent folder is created; on failure the temporary file is removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp{target.suffix}")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write a text file atomically (UTF-8)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def to_plain(value: Any) -> Any:
    """``value`` as plain JSON data: numpy scalars and arrays, tuples, NamedTuples, dataclasses and
    paths become numbers, lists, dicts and strings; non-finite floats become ``None``."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if hasattr(value, "keys") and hasattr(value, "__getitem__") and not isinstance(value, np.ndarray):
        return {str(k): to_plain(value[k]) for k in value.keys()}  # a mapping by duck typing (UpdateTrace)
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return to_plain(value._asdict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_plain(dataclasses.asdict(value))
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_plain(value.tolist())
    if isinstance(value, np.generic):
        return to_plain(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def write_json(path: str | Path, payload: Any, indent: int | None = 2) -> Path:
    """Write ``payload`` as a JSON result, atomically (see :func:`to_plain` for the conversions)."""
    return atomic_write_text(path, json.dumps(to_plain(payload), indent=indent, allow_nan=False) + "\n")
