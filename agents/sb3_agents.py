"""Stable-Baselines3 agents (PPO, SAC, A2C, TD3, PPO-Beta) in the controller protocol.

- Training (``train``): ``model.learn(episodes * decisions_per_episode)`` on a fresh env from the
  factory. PPO/SAC/A2C/TD3 see the action through :func:`exposure_env.symmetric_actions` ([-1, 1],
  what SB3 expects); PPO-Beta sees the native ``Box(0, 1)``.
- Batched training (``train_batched``): the same on a Gymnasium vector env (the native batched
  surrogate, ``N`` runs per step) through :class:`agents.sb3_vec.GymnasiumVecEnvAdapter`, which
  turns Gymnasium's next-step autoreset into SB3's same-step reset. PPO's rollout is then
  ``n_steps`` steps of every sub-env (``n_steps * N`` transitions per update).
- A controller built with ``pretrained=True`` (``ppo-pretrained:PATH``) does not train before the
  evaluated run: it is loaded from a checkpoint and only acts.
- Acting (``act``): ``model.predict(obs, deterministic=True)`` mapped back to a reveal ratio. The
  evaluated run does not learn (SB3 algorithms learn from their own rollouts only).
- Checkpoints (``save``/``load``, and the run checkpoints of ``atesd run``): the model's networks
  and optimizers (SB3's ``get_parameters``) in the project's format (:mod:`agents.checkpoint`, no
  pickle); ``load`` rebuilds the model from this controller's config and the ATESD spaces and loads
  them into it. SB3's own zip loader is never used: it unpickles parts of the file.

SB3 is an optional extra; building one of these without it raises
:class:`~exposure_env.errors.BackendUnavailableError` with the install command. SB3 seeds the
global RNGs (``random``, numpy, torch) from the seed it is given: that is SB3's behaviour, not ours.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from agents.base import ControllerStats, EnvFactory, RunContext, Transition, as_action
from agents.checkpoint import Checkpointed
from agents.devices import torch_device
from exposure_env.errors import (
    BackendUnavailableError,
    ConfigError,
    NotReadyError,
    check_choice,
    check_range,
    store_integers,
)
from exposure_env.schema import observation_space
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
        store_integers(self)
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


class SpacesOnlyEnv(gym.Env):
    """An env that only declares the ATESD spaces: SB3 needs an env's spaces to build a model, and a
    model rebuilt on ``load`` gets the real env later (``train`` calls ``set_env``). It cannot step."""

    def __init__(self) -> None:
        self.observation_space = observation_space()
        self.action_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        raise NotReadyError("a model rebuilt from a checkpoint has no env: call train(...) with an env factory")

    def step(self, action: Any):
        raise NotReadyError("a model rebuilt from a checkpoint has no env: call train(...) with an env factory")


class SB3Controller(Checkpointed):
    """An SB3 model behind the controller protocol (see the module docstring)."""

    trains_before_run = True
    checkpoint_kind = "sb3-agent"

    def __init__(self, config: SB3AgentConfig, seed: int = 0, pretrained: bool = False) -> None:
        require_sb3()
        torch_device("device", config.device)
        self.config = config
        self.name = config.algo
        self.seed = int(seed)
        self.model: Any = None
        self.timesteps_trained = 0
        # A pre-trained model (loaded from a checkpoint) is deployed as it is.
        self.trains_before_run = not pretrained

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

    def train_batched(self, make_vec_env: Callable[[], gym.vector.VectorEnv], runs: int, seed: int,
                      callback: Any = None) -> int:
        """Learn for about ``runs`` full runs on a batched env (module docstring); returns the env
        steps trained (SB3 rounds up to whole rollouts). ``callback``: an SB3 callback for ``learn``
        (e.g. :class:`agents.sb3_vec.RunRecorder`)."""
        from agents.sb3_vec import GymnasiumVecEnvAdapter

        check_range("runs", runs, 0, None, integer=True)
        venv = GymnasiumVecEnvAdapter(make_vec_env(), symmetric=self.symmetric, seed=seed)
        decisions = int(np.asarray(venv.venv.reset(seed=seed)[1]["num_decisions"]).reshape(-1)[0])
        if self.model is None:
            self.model = self._build_model(venv, seed)
        else:
            self.model.set_env(venv)
        before = int(self.model.num_timesteps)
        if runs > 0:
            self.model.learn(total_timesteps=int(runs) * decisions, reset_num_timesteps=False, callback=callback)
        trained = int(self.model.num_timesteps) - before
        self.timesteps_trained += trained
        return trained

    # -- persistence ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Config, counters and every network and optimizer state of the SB3 model (SB3's own
        ``get_parameters``, plus its torch variables such as SAC's entropy coefficient). SB3's zip
        format is not used: it pickles (cloudpickle) parts of the model. Replay buffers are not kept."""
        if self.model is None:
            raise NotReadyError(f"{self.name}: nothing to save before train(...) or load(...)")
        from stable_baselines3.common.save_util import recursive_getattr

        _, variables = self.model._get_torch_save_params()
        return {
            "config": dataclasses.asdict(self.config),
            "seed": self.seed,
            "timesteps_trained": self.timesteps_trained,
            "num_timesteps": int(self.model.num_timesteps),
            "n_updates": int(getattr(self.model, "_n_updates", 0)),
            "parameters": {name: dict(params) for name, params in self.model.get_parameters().items()},
            "variables": {name: recursive_getattr(self.model, name).detach() for name in variables},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Rebuild the model from this controller's config and the ATESD spaces, then load the
        saved networks and optimizers into it."""
        saved = state["config"]
        for name in ("algo", "net_arch"):
            if saved[name] != getattr(self.config, name):
                raise ConfigError(name, f"{saved[name]!r} (the checkpoint's)", getattr(self.config, name),
                                  "the checkpoint was saved by another SB3 agent")
        from stable_baselines3.common.save_util import recursive_getattr

        model = self._build_model(self._wrap(SpacesOnlyEnv()), int(state["seed"]))
        model.set_parameters(dict(state["parameters"]), exact_match=True, device=self.config.device)
        with torch.no_grad():
            for name, value in state["variables"].items():
                recursive_getattr(model, name).copy_(value)
        model.num_timesteps = int(state["num_timesteps"])
        model._n_updates = int(state["n_updates"])
        self.model = model
        self.seed = int(state["seed"])
        self.timesteps_trained = int(state["timesteps_trained"])

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
            rollout = cfg.n_steps * int(getattr(env, "num_envs", 1))  # a VecEnv steps num_envs runs at once
            return self._algo_class()(policy, env, n_steps=cfg.n_steps,
                                      batch_size=min(cfg.batch_size, rollout),
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
