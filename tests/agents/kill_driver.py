"""Run ``atesd`` in a process that sends itself a signal at a chosen decision (resume tests).

    python -m tests.agents.kill_driver DECISION SIGNAL atesd-arguments...

``DECISION`` (1-based; 0: never) is the env step during which the process sends itself ``SIGNAL``
(``KILL`` or ``INT``), i.e. in the middle of that decision, after every earlier one was logged.
"""

from __future__ import annotations

import os
import signal
import sys

from agents.cli import main
from exposure_env.env import ExposureEnv


def arm(decision: int, signal_name: str) -> None:
    number = getattr(signal, f"SIG{signal_name}")
    original = ExposureEnv.step
    calls = [0]

    def step(self, action):
        calls[0] += 1
        if calls[0] == decision:
            os.kill(os.getpid(), number)
        return original(self, action)

    ExposureEnv.step = step


if __name__ == "__main__":
    arm(int(sys.argv[1]), sys.argv[2])
    raise SystemExit(main(sys.argv[3:]))


# -- helpers for the tests that use this driver ----------------------------------------------------
WALL_CLOCK_FIELDS = ("controller_time_s", "env_time_s", "train_time_s", "wall_time_s", "controller_share")
"""Fields that measure time: the only ones a resumed run may write differently."""


def run_driver(argv: list[str], decision: int = 0, signal_name: str = "KILL", env: dict | None = None,
               timeout: float = 600):
    """Run the driver in a fresh process from the repository root; returns the CompletedProcess."""
    import pathlib
    import subprocess

    root = pathlib.Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "tests.agents.kill_driver", str(decision), signal_name, *argv]
    return subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def masked(text: str) -> str:
    """``text`` (JSON lines or a JSON file) with the values of the wall-clock fields replaced by ``*``."""
    import re

    pattern = r'("(?:' + "|".join(WALL_CLOCK_FIELDS) + r')": )[^,\n}]+'
    return re.sub(pattern, r'\1"*"', text)
