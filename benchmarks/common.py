"""Compatibility names for benchmark scripts that predate :mod:`exposure_env.commandline`.

``benchmarks/backend_throughput.py`` and ``benchmarks/motab.py`` import these; new scripts use
:func:`exposure_env.commandline.parse_dataclass` directly.
"""

from __future__ import annotations

import argparse
from typing import TypeVar

from exposure_env.commandline import add_dataclass_arguments, dataclass_from_namespace, field_docs

T = TypeVar("T")

__all__ = ["args_from_namespace", "dataclass_parser", "field_docs"]


def dataclass_parser(cls: type, description: str) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with one ``--flag`` per field of ``cls``."""
    return add_dataclass_arguments(argparse.ArgumentParser(description=description), cls)


def args_from_namespace(cls: type[T], namespace: argparse.Namespace) -> T:
    """Build the dataclass from parsed arguments (unset fields keep their defaults)."""
    return dataclass_from_namespace(cls, namespace)
