"""The shared helpers at the bottom of the dependency graph: atomic files, JSON results, command
lines from dataclasses, t-intervals."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pytest

from exposure_env.commandline import dataclass_argv, parse_dataclass
from exposure_env.errors import ConfigError, check_range
from exposure_env.io import atomic_write, atomic_write_text, write_json
from exposure_env.stats import t_interval


def test_atomic_write_replaces_in_one_step_and_cleans_up_on_failure(tmp_path):
    target = tmp_path / "sub" / "result.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        def fail(tmp):
            tmp.write_text("half")
            raise RuntimeError("disk full")

        atomic_write(target, fail)
    assert target.read_text() == "old" and [p.name for p in target.parent.iterdir()] == ["result.json"]
    suffixes = []
    atomic_write(tmp_path / "plot.png", lambda tmp: (suffixes.append(tmp.suffix), tmp.write_bytes(b"x")))
    assert suffixes == [".png"]  # tools that pick the format from the suffix still see it


def test_write_json_turns_non_finite_numbers_into_null(tmp_path):
    path = write_json(tmp_path / "r.json", {"a": float("nan"), "b": np.array([1.0, np.inf]), "c": np.int64(3),
                                            "d": (1, 2), "e": tmp_path})
    assert json.loads(path.read_text()) == {"a": None, "b": [1.0, None], "c": 3, "d": [1, 2], "e": str(tmp_path)}


@dataclass(frozen=True)
class _Args:
    """Arguments of a test command."""

    seeds: int = 3
    """Seeds (100% of them)."""
    rate: float | None = None
    """A rate; none by default."""
    alphas: tuple[float, ...] = (0.0, 1.0)
    """Reveal ratios."""
    names: tuple[str, ...] = ("a",)
    """Names."""
    plot: bool = True
    """Write a plot."""
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Env kwargs."""
    out: str = "x.json"
    """Output."""

    def __post_init__(self) -> None:
        check_range("seeds", self.seeds, 1, None, integer=True)


def test_command_line_from_a_dataclass():
    assert parse_dataclass(_Args, []) == _Args()
    args = parse_dataclass(_Args, ["--seeds", "5", "--rate", "0.5", "--alphas", "0", "0.25,0.5", "--names", "b,c",
                                   "--no-plot", "--kwargs", '{"total_updates": 10}', "--out", "y.json"])
    assert args == _Args(5, 0.5, (0.0, 0.25, 0.5), ("b", "c"), False, {"total_updates": 10}, "y.json")
    assert parse_dataclass(_Args, ["--rate", "none"]).rate is None
    assert parse_dataclass(_Args, ["--rate", "1"]).rate == 1.0 and isinstance(args.alphas[1], float)
    with pytest.raises(SystemExit):
        parse_dataclass(_Args, ["--alphas", "0,x"])
    with pytest.raises(SystemExit):
        parse_dataclass(_Args, ["--kwargs", "[1]"])
    with pytest.raises(ConfigError, match="seeds"):
        parse_dataclass(_Args, ["--seeds", "0"])


def test_command_line_back_from_a_config_rebuilds_it():
    config = _Args(5, 0.5, (0.0, 0.25), ("b", "c"), False, {"total_updates": 10, "params": "x y"}, "y.json")
    argv = dataclass_argv(_Args, dataclasses.asdict(config))
    assert parse_dataclass(_Args, argv) == config
    # only what differs from the defaults, in field order; a stored JSON record (lists) works too
    assert dataclass_argv(_Args, {"seeds": 3, "alphas": [0.0, 1.0], "out": "z.json", "plot": True}) == ["--out", "z.json"]
    assert dataclass_argv(_Args, json.loads(json.dumps(dataclasses.asdict(config)))) == argv
    assert argv[:4] == ["--seeds", "5", "--rate", "0.5"] and "--no-plot" in argv
    with pytest.raises(ValueError, match="alphas"):
        dataclass_argv(_Args, {"alphas": []})


def test_command_line_help_shows_docstrings_and_defaults(capsys):
    with pytest.raises(SystemExit):
        parse_dataclass(_Args, ["--help"], description="test command")
    text = capsys.readouterr().out
    assert "Seeds (100% of them). (default: 3)" in text and "--no-plot" in text and "(default: (0.0, 1.0))" in text


def test_t_interval():
    interval = t_interval([1.0, 2.0, 3.0])
    assert interval.mean == 2.0 and interval.half_width == pytest.approx(4.302652729911275 / math.sqrt(3))
    assert interval.low == pytest.approx(2.0 - interval.half_width) and interval.high > interval.mean
    assert t_interval([4.0]) == (4.0, 0.0, 4.0, 4.0)
