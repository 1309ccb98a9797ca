"""Stable-Baselines3 agents (PPO, SAC, A2C, TD3, PPO-Beta) in the controller protocol.

- Training (``train``): ``model.learn(episodes * decisions_per_episode)`` on a fresh env from the
  factory. PPO/SAC/A2C/TD3 see the action through :func:`exposure_env.symmetric_actions` ([-1, 1],
  what SB3 expects); PPO-Beta sees the native ``Box(0, 1)``.
- Acting (``act``): ``model.predict(obs, deterministic=True)`` mapped back to a reveal ratio. The
  evaluated run does not learn (SB3 algorithms learn from their own rollouts only).

SB3 is an optional extra; building one of these without it raises
:class:`~exposure_env.errors.BackendUnavailableError` with the install command. SB3 seeds the
global RNGs (``random``, numpy, torch) from the seed it is given: that is SB3's behaviour, not ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from agents.base import ControllerStats, EnvFactory, RunContext, Transition, as_action
from exposure_env.errors import BackendUnavailableError, ConfigError, NotReadyError, check_choice, check_range
from exposure_env.io import atomic_write
from exposure_env.wrappers import symmetric_actions

SB3_ALGOS: tuple[str, ...] = ("ppo", "sac", "a2c", "td3", "ppo-beta")
INSTALL_HINT = "install extra: pip install -e '.[sb3]'"


def require_sb3() -> Any:
    """Import stable_baselines3 or raise a clear install error."""
    try:
        import stable_baselines3
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the SB3 agents (ppo, sac, a2c, td3, ppo-beta) need stable-baselines3, which could not be "
            f"imported ({exc}); {INSTALL_HINT}"
        ) from exc
    return stable_baselines3


@dataclass(frozen=True)
class SB3AgentConfig:
    """A modest, fixed hyper-parameter set for tiny 8-feature / 1-action problems (ours)."""

    algo: str = "ppo"
    """One of ``ppo``, ``sac``, ``a2c``, ``td3``, ``ppo-beta``."""
    net_arch: tuple[int, ...] = (64, 64)
    """Hidden widths of actor and critic MLPs."""
    learning_rate: float | None = None
    """Optimizer step size; ``None`` keeps SB3's default of each algorithm."""
    n_steps: int = 128
    """Rollout length per update of the on-policy algorithms (PPO, PPO-Beta); A2C uses 8."""
    batch_size: int = 64
    """Minibatch size (PPO, PPO-Beta, SAC, TD3)."""
    buffer_size: int = 50_000
    """Replay buffer capacity (SAC, TD3)."""
    learning_starts: int = 100
    """Random-action steps before off-policy learning starts (SAC, TD3)."""
    action_noise: float = 0.1
    """Std of TD3's Gaussian exploration noise on the [-1, 1] action."""
    device: str = "cpu"
    """Torch device of the SB3 model."""

    def __post_init__(self) -> None:
        check_choice("algo", self.algo, SB3_ALGOS)
        if not self.net_arch or any(int(h) != h or h < 1 for h in self.net_arch):
            raise ConfigError("net_arch", "a non-empty tuple of positive integers", self.net_arch)
        if self.learning_rate is not None:
            check_range("learning_rate", self.learning_rate, 0.0, None, low_inclusive=False)
        check_range("n_steps", self.n_steps, 2, None, integer=True)
        check_range("batch_size", self.batch_size, 2, None, integer=True)
        check_range("buffer_size", self.buffer_size, 1, None, integer=True)
        check_range("learning_starts", self.learning_starts, 0, None, integer=True)
        check_range("action_noise", self.action_noise, 0.0, None)


class SB3Controller:
    """An SB3 model behind the controller protocol (see the module docstring)."""

    trains_before_run = True

    def __init__(self, config: SB3AgentConfig, seed: int = 0) -> None:
        require_sb3()
        self.config = config
        self.name = config.algo
        self.seed = int(seed)
        self.model: Any = None
        self.timesteps_trained = 0

    @property
    def symmetric(self) -> bool:
        """True when the model acts in [-1, 1] (every algorithm but PPO-Beta)."""
        return self.config.algo != "ppo-beta"

    # -- controller protocol --------------------------------------------------------------------
    def begin_run(self, context: RunContext) -> None:
        if self.model is None:
            raise NotReadyError(f"{self.name}: call train(...) or load(...) before running it")

    def act(self, obs: np.ndarray) -> np.ndarray:
        # SB3 clips a Box action into its space; the env validates and clips the reveal ratio itself.
        action, _ = self.model.predict(np.asarray(obs, dtype=np.float32), deterministic=True)
        value = float(np.asarray(action).reshape(-1)[0])
        return as_action((value + 1.0) / 2.0 if self.symmetric else value)

    def observe(self, transition: Transition) -> ControllerStats:
        return {}

    def end_run(self) -> ControllerStats:
        return {"timesteps_trained": float(self.timesteps_trained)}

    def train(self, make_env: EnvFactory, episodes: int, seed: int) -> None:
        """Learn for ``episodes`` full runs (0 only builds the model). One reset (with ``seed``, which
        SB3 reseeds anyway) reads the run's length from the reset ``info``."""
        env = self._wrap(make_env())
        decisions = int(env.reset(seed=seed)[1]["num_decisions"])
        if self.model is None:
            self.model = self._build_model(env, seed)
        else:
            self.model.set_env(env)
        total = int(episodes) * decisions
        if total > 0:
            self.model.learn(total_timesteps=total, reset_num_timesteps=False)
            self.timesteps_trained += total

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        if self.model is None:
            raise NotReadyError(f"{self.name}: nothing to save before train(...)")
        # the temporary file keeps the target's suffix: SB3 appends .zip to any other
        atomic_write(path, lambda tmp: self.model.save(str(tmp)))

    def load(self, path: str | Path) -> None:
        self.model = self._algo_class().load(str(path), device=self.config.device)

    # -- helpers ----------------------------------------------------------------------------------
    def _wrap(self, env: gym.Env) -> gym.Env:
        return symmetric_actions(env) if self.symmetric else env

    def _algo_class(self) -> Any:
        sb3 = require_sb3()
        return {"ppo": sb3.PPO, "ppo-beta": sb3.PPO, "a2c": sb3.A2C, "sac": sb3.SAC, "td3": sb3.TD3}[self.config.algo]

    def _build_model(self, env: gym.Env, seed: int) -> Any:
        cfg = self.config
        algo = cfg.algo
        common: dict[str, Any] = {"seed": int(seed), "device": cfg.device, "verbose": 0}
        if cfg.learning_rate is not None:
            common["learning_rate"] = cfg.learning_rate
        net = list(cfg.net_arch)
        if algo in ("ppo", "ppo-beta"):
            policy: Any = "MlpPolicy"
            if algo == "ppo-beta":
                from agents.sb3_beta import BetaActorCriticPolicy

                policy = BetaActorCriticPolicy
            return self._algo_class()(policy, env, n_steps=cfg.n_steps,
                                      batch_size=min(cfg.batch_size, cfg.n_steps),
                                      policy_kwargs={"net_arch": net}, **common)
        if algo == "a2c":
            return self._algo_class()("MlpPolicy", env, n_steps=8,
                                      policy_kwargs={"net_arch": net}, **common)
        off_policy = {"buffer_size": cfg.buffer_size,
                      "learning_starts": cfg.learning_starts, "batch_size": cfg.batch_size,
                      "policy_kwargs": {"net_arch": net}}
        if algo == "td3":
            from stable_baselines3.common.noise import NormalActionNoise

            noise = NormalActionNoise(np.zeros(1), cfg.action_noise * np.ones(1))
            return self._algo_class()("MlpPolicy", env, action_noise=noise, **off_policy, **common)
        return self._algo_class()("MlpPolicy", env, **off_policy, **common)
