"""Pre-trained controllers on disk: the manifest :mod:`agents.pretrain` writes, and loading it back.

A pre-training output folder holds the controller's checkpoint, written by the controller's own
``save(path)``, and ``pretrain.json``, the manifest: which kind of controller it is (``beta`` or an
SB3 algorithm), the full agent configuration it was built with (so the deployed controller has the
same policy size and the same credit settings when it keeps learning online), the checkpoint's file
name, the env it was trained on and its training curve.

:func:`load_pretrained` builds the controller from the manifest and restores the checkpoint with the
controller's ``load(path)``; it is what the agent specs ``beta-pretrained:PATH[:online]`` and
``ppo-pretrained:PATH`` (any SB3 algorithm) resolve to. The module knows the manifest format and the
controller constructors; it knows nothing about how the policy was trained or on which backend it
will run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from agents.base import Controller
from exposure_env.errors import ConfigError

MANIFEST = "pretrain.json"
SB3_KINDS: tuple[str, ...] = ("ppo", "sac", "a2c", "td3", "ppo-beta")
KINDS: tuple[str, ...] = ("beta",) + SB3_KINDS


@dataclass(frozen=True)
class PretrainManifest:
    """What ``pretrain.json`` holds."""

    kind: str
    """``beta`` or an SB3 algorithm name."""
    agent: str
    """The agent spec the controller was built from (e.g. ``beta:discounted``, ``ppo``)."""
    agent_config: Mapping[str, Any]
    """The controller's config dataclass as plain data (``BetaAgentConfig`` or ``SB3AgentConfig``)."""
    checkpoint: str
    """File name of the checkpoint, relative to the manifest's folder."""
    env_id: str
    """Env id the controller was trained on."""
    env_kwargs: Mapping[str, Any]
    """Its ``gym.make`` / ``gym.make_vec`` kwargs (``params`` included)."""
    runs: int
    """Surrogate runs trained on."""
    policy_updates: int
    """Gradient updates of the policy (REINFORCE steps; SB3: env steps trained)."""
    wall_time_s: float
    """Wall time of the pre-training."""
    config: Mapping[str, Any] = field(default_factory=dict)
    """The :class:`~agents.pretrain.PretrainConfig` as plain data."""
    curve: list[Mapping[str, float]] = field(default_factory=list)
    """Per policy update (REINFORCE), or per ``num_envs`` finished runs (SB3): runs done, mean final
    score, mean alpha, ..."""


def manifest_path(path: str | Path) -> Path:
    """``PATH/pretrain.json`` for a folder, ``PATH`` itself for a file."""
    path = Path(path)
    return path / MANIFEST if path.is_dir() or not path.suffix else path


def read_manifest(path: str | Path) -> PretrainManifest:
    """The manifest of a pre-training output (folder or ``pretrain.json``)."""
    file = manifest_path(path)
    try:
        data = json.loads(file.read_text())
        manifest = PretrainManifest(**data)
    except (OSError, json.JSONDecodeError, TypeError) as exc:
        raise ConfigError("pretrained PATH", f"a folder written by `python -m agents.pretrain` (with {MANIFEST})",
                          str(path), str(exc)) from exc
    if manifest.kind not in KINDS:
        raise ConfigError("pretrained kind", "one of " + ", ".join(KINDS), manifest.kind, f"in {file}")
    return manifest


def checkpoint_path(path: str | Path, manifest: PretrainManifest) -> Path:
    """The checkpoint file of the pre-training output at ``path``."""
    return manifest_path(path).parent / manifest.checkpoint


def load_pretrained(path: str | Path, kind: str, seed: int = 0, online: bool = False, name: str = "") -> Controller:
    """The controller saved at ``path``, ready to run.

    ``kind`` is what the spec asked for (``beta`` or an SB3 algorithm); it must match the manifest.
    A ``beta`` controller is frozen and acts at its policy mean unless ``online`` (then it samples
    and keeps learning with the credit settings it was pre-trained with); an SB3 controller acts
    deterministically and never trains before the run.
    """
    manifest = read_manifest(path)
    if manifest.kind != kind:
        raise ConfigError("pretrained kind", f"{kind!r} for this spec", manifest.kind,
                          f"{manifest_path(path)} holds a {manifest.kind} controller")
    checkpoint = checkpoint_path(path, manifest)
    config = dict(manifest.agent_config)
    if kind == "beta":
        from agents.beta_agent import BetaAgent, BetaAgentConfig  # torch

        config["hidden_sizes"] = tuple(config["hidden_sizes"])
        config.update(online=online, action="sample" if online else "mean")
        controller: Any = BetaAgent(BetaAgentConfig(**config), seed=seed, name=name or f"beta-pretrained:{path}")
    else:
        if online:
            raise ConfigError("pretrained spec", "no ':online' for SB3 controllers (they learn from their own "
                              "rollouts only)", f"{kind}-pretrained:{path}:online")
        from agents.sb3_agents import SB3AgentConfig, SB3Controller  # SB3 extra

        config["net_arch"] = tuple(config["net_arch"])
        controller = SB3Controller(SB3AgentConfig(**config), seed=seed, pretrained=True)
        controller.name = name or f"{kind}-pretrained:{path}"
    controller.load(checkpoint)
    return controller
