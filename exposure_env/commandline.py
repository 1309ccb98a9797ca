"""Command lines built from config dataclasses: one ``--flag`` per field, the field's docstring as
its help, the dataclass's own default (never a second copy of it).

- :func:`add_dataclass_arguments`: add a dataclass's fields to a parser (or a subcommand's parser).
- :func:`dataclass_from_namespace`: build the dataclass from what was parsed; fields not given on
  the command line keep the dataclass's default, and ``__post_init__`` validates as usual.
- :func:`parse_dataclass`: both, for a script with one dataclass of arguments.
- :func:`dataclass_argv`: the way back, the arguments that rebuild a given config (e.g. the command
  behind a stored result).

Field types and their flags: ``bool`` -> ``--name`` / ``--no-name``; ``int``, ``float``, ``str``;
``X | None`` -> ``X``, or ``none`` for None; ``tuple[X, ...]`` -> several values, space- or
comma-separated (``--alphas 0 0.5 1`` or ``--alphas 0,0.5,1``), each converted to ``X``;
``Mapping``/``dict`` -> a JSON object. Flag names are the field names with ``-`` for ``_``, unless
``flags`` renames them. The module knows nothing about any particular command.
"""

from __future__ import annotations

import argparse
import ast
import collections.abc
import dataclasses
import inspect
import json
import textwrap
import types
import typing
from typing import Any, Callable, Mapping, Sequence, TypeVar

T = TypeVar("T")


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each dataclass field (attribute docstrings are not kept at run time),
    base classes included, whitespace collapsed."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
        for node, after in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"must be a JSON object; {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object; received {text!r}")
    return value


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"must be true or false; received {text!r}")


def _scalar(kind: Any, optional: bool) -> Callable[[str], Any]:
    convert: Callable[[str], Any] = {int: int, float: float, str: str, bool: _boolean}.get(kind, str)

    def parse(text: str) -> Any:
        if optional and text.strip().lower() == "none":
            return None
        try:
            return convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {getattr(kind, '__name__', kind)}; received {text!r}") from None

    parse.__name__ = getattr(kind, "__name__", "value")  # argparse names the type in its errors
    return parse


def _split_optional(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return hint, False


class _CommaList(argparse.Action):
    """``nargs="+"`` whose values may also be comma-separated; ``const`` converts each item;
    stores a tuple."""

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        items = [piece.strip() for value in values for piece in str(value).split(",") if piece.strip()]
        try:
            setattr(namespace, self.dest, tuple(self.const(item) for item in items))
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentError(self, str(exc)) from None


def add_dataclass_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    flags: Mapping[str, str] | None = None,
    exclude: Sequence[str] = (),
) -> argparse.ArgumentParser:
    """Add one option per field of the dataclass ``cls`` to ``parser`` (``flags``: field -> flag name
    without dashes; ``exclude``: fields left out). Options not given leave the attribute unset, so
    :func:`dataclass_from_namespace` falls back to the dataclass's default."""
    flags = dict(flags or {})
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude or not f.init:
            continue
        flag = "--" + flags.get(f.name, f.name).replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        help_text = (docs.get(f.name, "") + f" (default: {default!r})").strip().replace("%", "%%")
        common: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        hint, optional = _split_optional(hints[f.name])
        origin = typing.get_origin(hint) or hint
        if hint is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
        elif origin is tuple:
            args = typing.get_args(hint)
            item = _scalar(args[0] if args else str, False)
            parser.add_argument(flag, nargs="+", action=_CommaList, const=item, metavar=item.__name__.upper(), **common)
        elif origin in (dict, collections.abc.Mapping, typing.Mapping):
            parser.add_argument(flag, type=_json_object, metavar="JSON", **common)
        else:
            parser.add_argument(flag, type=_scalar(hint, optional), **common)
    return parser


def dataclass_from_namespace(cls: type[T], namespace: argparse.Namespace, **fixed: Any) -> T:
    """Build ``cls`` from the fields present in ``namespace`` (plus ``fixed`` values)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {name: value for name, value in vars(namespace).items() if name in names}
    return cls(**{**values, **fixed})


def parse_dataclass(cls: type[T], argv: Sequence[str] | None = None, description: str | None = None,
                    flags: Mapping[str, str] | None = None) -> T:
    """Parse ``argv`` (default: ``sys.argv[1:]``) into an instance of the dataclass ``cls``."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_arguments(parser, cls, flags)
    return dataclass_from_namespace(cls, parser.parse_args(argv))


def dataclass_argv(cls: type, values: Mapping[str, Any], flags: Mapping[str, str] | None = None) -> list[str]:
    """The command-line arguments that :func:`parse_dataclass` turns back into ``cls(**values)``: one
    option per field whose value differs from the dataclass's default, in field order (the inverse
    of :func:`add_dataclass_arguments`). ``values`` may be a plain JSON record of the dataclass
    (lists for tuples). Fields missing from ``values`` keep their default and are left out."""
    flags = dict(flags or {})
    hints = typing.get_type_hints(cls)
    argv: list[str] = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name not in values:
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        value = values[f.name]
        hint, _ = _split_optional(hints[f.name])
        origin = typing.get_origin(hint) or hint
        same = (tuple(value) == tuple(default)) if origin is tuple and default is not dataclasses.MISSING \
            else value == default
        if same:
            continue
        flag = "--" + flags.get(f.name, f.name).replace("_", "-")
        if hint is bool:
            argv.append(flag if value else "--no-" + flag[2:])
        elif value is None:
            argv += [flag, "none"]
        elif origin is tuple:
            if not value:
                raise ValueError(f"{f.name}: an empty tuple has no command-line form (default {default!r})")
            argv += [flag, *(str(item) for item in value)]
        elif origin in (dict, collections.abc.Mapping, typing.Mapping):
            argv += [flag, json.dumps(dict(value), sort_keys=True)]
        else:
            argv += [flag, str(value)]
    return argv
