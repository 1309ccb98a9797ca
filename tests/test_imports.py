"""Package boundaries: exposure_env stays torch-free, the dependency direction holds, no package has
an import cycle, and imports sit at the top of files except the deliberate, listed lazy ones."""

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


PACKAGES = ("exposure_env", "agents", "distill_backend", "benchmarks")

# Imports inside functions, allowed where they keep a light import light or an optional extra optional.
# (module, imported top-level name or project module) -> why
LAZY_ALLOWED = {
    ("exposure_env.registration", "exposure_env.surrogate"): "import exposure_env registers ids cheaply",
    ("exposure_env.registration", "exposure_env.vector"): "import exposure_env registers ids cheaply",
    ("exposure_env.registration", "distill_backend.env_factory"): "gym.make('ATESD-Qwen3-v0') only",
    ("exposure_env.surrogate", "exposure_env.env"): "the env factory; the surrogate's functions need no env",
    ("agents.registry", "agents.beta_agent"): "torch, only for beta specs",
    ("agents.registry", "agents.sb3_agents"): "SB3 extra",
    ("agents.sb3_agents", "agents.sb3_beta"): "SB3 extra",
    ("agents.sb3_agents", "agents.sb3_vec"): "SB3 extra",
    ("agents.pretrain", "agents.sb3_vec"): "SB3 extra",
    ("agents.pretrained", "agents.beta_agent"): "torch, only for beta-pretrained specs",
    ("agents.pretrained", "agents.sb3_agents"): "SB3 extra",
    ("agents.cli", "distill_backend.config"): "atesd warmstart only",
    ("agents.cli", "distill_backend.warmstart"): "atesd warmstart only",
    ("agents.executors", "torch"): "thread count of a worker process",
    ("agents.executors", "ray"): "ray extra, executor 'ray' only",
    ("agents.plots", "matplotlib"): "plotting extra",
    ("agents.runner", "torch"): "TensorBoard writer (tensorboard extra)",
    ("agents.runner", "tqdm"): "progress bar",
    ("agents.compare", "tqdm"): "progress bar",
    ("agents.sb3_agents", "stable_baselines3"): "SB3 extra",
    ("agents.checkpoint", "torch"): "only for checkpoints that hold torch tensors",
    ("agents.checkpoint", "safetensors"): "safetensors.torch, only with torch tensors",
}


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _project_modules(packages=PACKAGES) -> dict[str, pathlib.Path]:
    return {_module_name(path): path for package in packages for path in sorted((ROOT / package).rglob("*.py"))}


def _imports(name: str, path: pathlib.Path, modules: dict[str, pathlib.Path]) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every import of ``path``: project modules resolved to
    the module itself (``from pkg import submodule`` -> the submodule), others to their top name."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top_level = {id(node) for node in tree.body}
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name if is_package else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names]
        else:
            continue
        for target in targets:
            resolved = target
            while resolved and resolved not in modules:
                resolved = resolved.rpartition(".")[0]
            found.append((resolved or target.split(".")[0], id(node) in top_level))
    return found


def test_no_import_cycles():
    modules = _project_modules()
    graph = {name: {t for t, _ in _imports(name, path, modules) if t in modules and t != name}
             for name, path in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("package", ["exposure_env", "agents"])
def test_imports_are_at_the_top_except_the_listed_lazy_ones(package):
    modules = _project_modules()
    lazy = []
    for name, path in _project_modules((package,)).items():
        for target, at_top in _imports(name, path, modules):
            if not at_top and (name, target) not in LAZY_ALLOWED and (name, target.split(".")[0]) not in LAZY_ALLOWED:
                lazy.append(f"{name} imports {target} inside a function")
    assert not lazy, "\n".join(lazy)


def test_import_exposure_env_does_not_import_torch():
    code = (
        "import sys, gymnasium as gym, exposure_env\n"
        "env = gym.make('ATESD-Surrogate-v0'); env.reset(seed=0); env.step(env.action_space.sample())\n"
        "heavy = [m for m in ('torch', 'transformers', 'stable_baselines3') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
