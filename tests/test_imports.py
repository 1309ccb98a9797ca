"""Package boundaries: exposure_env stays torch-free, and the dependency direction holds."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

# package -> top-level modules it must never import (anywhere in its files)
FORBIDDEN = {
    "exposure_env": {"torch", "transformers", "peft", "trl", "stable_baselines3", "agents", "benchmarks"},
    "agents": {"distill_backend", "benchmarks", "transformers"},
    "distill_backend": {"agents", "benchmarks"},
}
# The one deliberate exception: the Qwen3 env id's factory imports distill_backend lazily, inside
# a function, so gym.make("ATESD-Qwen3-v0") works while `import exposure_env` stays light.
# The command line is the application layer: its `atesd warmstart` subcommand reaches the backend's
# warm-start module, lazily, inside that subcommand only.
ALLOWED = {("exposure_env/registration.py", "distill_backend"), ("agents/cli.py", "distill_backend")}


def _imported_modules(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_dependency_direction(package):
    violations = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for module in _imported_modules(path) & FORBIDDEN[package]:
            if (rel, module) not in ALLOWED:
                violations.append(f"{rel} imports {module}")
    assert not violations, "\n".join(violations)


def test_import_exposure_env_does_not_import_torch():
    code = (
        "import sys, gymnasium as gym, exposure_env\n"
        "env = gym.make('ATESD-Surrogate-v0'); env.reset(seed=0); env.step(env.action_space.sample())\n"
        "heavy = [m for m in ('torch', 'transformers', 'stable_baselines3') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
