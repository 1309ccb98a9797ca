"""Checkpoint files that never run code: arrays in safetensors, everything else as JSON in its header.

A checkpoint is one ``.safetensors`` file. A nested state (dicts, lists, tuples, numbers, strings,
None, numpy arrays and scalars, torch tensors) is split in two: every array and tensor goes into the
safetensors payload, and the rest, with each array replaced by a reference to it, is one JSON
document in the file's metadata, next to a ``format`` tag, a ``kind`` (what wrote it: ``run``,
``beta-agent``, ``sb3-agent``...) and a format ``version``. Reading parses the safetensors header
and JSON, nothing else: no pickle, so a crafted file cannot run code (a pickle, including a
``torch.save`` file, is refused with :class:`~exposure_env.errors.CheckpointError`).

JSON encoding of what JSON has no type for (so a state comes back with the types it had: optimizer
state dicts keyed by int, tuples, NaN)::

    tuple                       {"__tuple__": [...]}
    dict with non-str keys      {"__dict__": [[key, value], ...]}
    non-finite float            {"__float__": "nan" | "inf" | "-inf"}
    numpy array                 {"__array__": "<tensor name>"}
    torch tensor                {"__tensor__": "<tensor name>"}   (any dtype, bf16 included)
    numpy scalar                {"__scalar__": "<dtype>", "value": ...}

Files are written atomically (:func:`exposure_env.io.atomic_write`). torch is imported only when a
state holds torch tensors, so the surrogate and the baselines checkpoint without it. The module
knows nothing about what a state means.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy

from exposure_env.errors import AtesdError, CheckpointError, ConfigError
from exposure_env.io import atomic_write

FORMAT = "atesd-checkpoint"
VERSION = 1
_TAGS = ("__tuple__", "__dict__", "__float__", "__array__", "__tensor__", "__scalar__")
PICKLE_HINT = ("checkpoints are safetensors files written by this version of atesd; pickles "
               "(torch.save files, SB3 zips) are never loaded, because loading a pickle can run code")


def _is_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")  # no tensor can exist unless torch is imported
    return torch is not None and isinstance(value, torch.Tensor)


class _Encoder:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.tensors: dict[str, Any] = {}

    def name(self) -> str:
        return f"t{len(self.arrays) + len(self.tensors)}"

    def encode(self, value: Any, where: str) -> Any:
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return value if math.isfinite(value) else {"__float__": repr(value)}
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in "biuf":
                raise TypeError(f"{where}: arrays of dtype {value.dtype} cannot be checkpointed")
            key = self.name()
            self.arrays[key] = np.ascontiguousarray(value).copy()
            return {"__array__": key}
        if isinstance(value, np.generic):
            return {"__scalar__": value.dtype.str, "value": self.encode(value.item(), where)}
        if _is_tensor(value):
            key = self.name()
            self.tensors[key] = value.detach().cpu().contiguous().clone()
            return {"__tensor__": key}
        if isinstance(value, tuple):
            return {"__tuple__": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, Mapping):
            if all(isinstance(k, str) for k in value) and not any(k in _TAGS for k in value):
                return {k: self.encode(v, f"{where}.{k}") for k, v in value.items()}
            return {"__dict__": [[self.encode(k, where), self.encode(v, f"{where}[{k!r}]")]
                                 for k, v in value.items()]}
        raise TypeError(f"{where}: values of type {type(value).__name__} cannot be checkpointed")


def _decode(value: Any, arrays: Mapping[str, Any]) -> Any:
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tuple__" in value:
        return tuple(_decode(v, arrays) for v in value["__tuple__"])
    if "__dict__" in value:
        return {_decode(k, arrays): _decode(v, arrays) for k, v in value["__dict__"]}
    if "__float__" in value:
        return float(value["__float__"])
    if "__array__" in value:
        array = arrays[value["__array__"]]
        return array if isinstance(array, np.ndarray) else array.numpy()
    if "__tensor__" in value:
        return arrays[value["__tensor__"]]
    if "__scalar__" in value:
        return np.dtype(value["__scalar__"]).type(value["value"])
    return {k: _decode(v, arrays) for k, v in value.items()}


def write_checkpoint(path: str | Path, kind: str, state: Any) -> Path:
    """Write ``state`` as a checkpoint of ``kind`` to ``path``, atomically. Raises ``TypeError``
    naming the entry when the state holds a value of another type (a programming error)."""
    encoder = _Encoder()
    document = encoder.encode(state, "state")
    metadata = {"format": FORMAT, "version": str(VERSION), "kind": kind,
                "state": json.dumps(document, allow_nan=False)}
    if encoder.tensors:
        import torch
        from safetensors.torch import save_file

        payload = dict(encoder.tensors)
        payload.update({k: torch.from_numpy(v) for k, v in encoder.arrays.items()})
        return atomic_write(path, lambda tmp: save_file(payload, str(tmp), metadata=metadata))
    return atomic_write(path, lambda tmp: save_numpy(encoder.arrays, str(tmp), metadata=metadata))


def read_metadata(path: str | Path) -> dict[str, str]:
    """The header of a checkpoint (``format``, ``version``, ``kind``, ``state``), checked to be
    ours; raises :class:`CheckpointError` naming ``path`` otherwise."""
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"{file}: no such checkpoint file; check the path")
    try:
        with safe_open(str(file), framework="numpy") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{file}: not a readable checkpoint ({_first_line(exc)}); {PICKLE_HINT}") from exc
    if metadata.get("format") != FORMAT or "state" not in metadata:
        raise CheckpointError(f"{file}: a safetensors file, but not an atesd checkpoint (no '{FORMAT}' header)")
    if metadata.get("version") != str(VERSION):
        raise CheckpointError(f"{file}: checkpoint format version {metadata.get('version')!r}; this atesd reads "
                              f"version {VERSION}: re-create the checkpoint with this version")
    return metadata


def read_checkpoint(path: str | Path, kind: str | tuple[str, ...]) -> Any:
    """The state stored in the checkpoint ``path``, which must be of ``kind`` (or one of several).

    Raises :class:`CheckpointError` naming the path when the file is missing, unreadable, not a
    checkpoint of this format and version, or of another kind.
    """
    file = Path(path)
    metadata = read_metadata(file)
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    if metadata.get("kind") not in kinds:
        raise CheckpointError(f"{file}: a {metadata.get('kind')!r} checkpoint; expected "
                              + " or ".join(repr(k) for k in kinds))
    try:
        document = json.loads(metadata["state"])
        if '"__tensor__"' in metadata["state"]:
            from safetensors.torch import load_file

            arrays: Mapping[str, Any] = load_file(str(file))
        else:
            arrays = load_numpy(str(file))
        return _decode(document, arrays)
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{file}: corrupt checkpoint ({_first_line(exc)}); delete it or re-create it") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class Checkpointed:
    """``save``/``load`` of the controller protocol (:mod:`agents.base`) on top of the controller's
    ``state_dict``/``load_state_dict``: one checkpoint file of kind ``checkpoint_kind``."""

    checkpoint_kind: str = "controller"
    has_state = True

    def state_dict(self) -> dict[str, Any]:  # pragma: no cover - implemented by the controller
        raise NotImplementedError

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # pragma: no cover
        raise NotImplementedError

    def save(self, path: str | Path) -> None:
        write_checkpoint(path, self.checkpoint_kind, self.state_dict())

    def load(self, path: str | Path) -> None:
        state = read_checkpoint(path, self.checkpoint_kind)
        try:
            self.load_state_dict(state)
        except ConfigError as exc:
            raise ConfigError(exc.field, exc.allowed, exc.received, f"the checkpoint {path} holds it") from exc
        except AtesdError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
            raise CheckpointError(f"{path}: the checkpoint does not fit this controller "
                                  f"({_first_line(exc)}); save it again with this version") from exc
