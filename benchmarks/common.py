"""Helpers shared by the benchmark scripts: a dataclass of arguments becomes an argparse CLI."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
from typing import Any, TypeVar

T = TypeVar("T")


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each dataclass field (attribute docstrings are not kept at run time),
    with ``%`` escaped for argparse's help formatting."""
    body = ast.parse(inspect.getsource(cls)).body[0].body  # type: ignore[attr-defined]
    return {
        node.target.id: " ".join(str(after.value.value).split()).replace("%", "%%")
        for node, after in zip(body, body[1:])
        if isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
    }


def dataclass_parser(cls: type, description: str) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with one ``--flag`` per field (bool: switch; tuple: ``nargs="+"``)."""
    parser = argparse.ArgumentParser(description=description)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        type_name = str(f.type)
        if type_name in ("bool", "<class 'bool'>"):
            parser.add_argument(flag, action="store_true", help=docs.get(f.name))
        elif type_name.startswith("tuple"):
            item = int if "int" in type_name else str
            parser.add_argument(flag, nargs="+", type=item, default=f.default, help=docs.get(f.name))
        else:
            kind: Any = {"int": int, "float": float}.get(type_name, str)
            parser.add_argument(flag, type=kind, default=f.default, help=docs.get(f.name))
    return parser


def args_from_namespace(cls: type[T], namespace: argparse.Namespace) -> T:
    """Build the dataclass from parsed arguments (lists from ``nargs`` become tuples)."""
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in vars(namespace).items()})
