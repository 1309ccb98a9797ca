"""How fast is the surrogate env: against CartPole, inside an SB3 PPO run, and as a native batch?

    python -m benchmarks.env_throughput --out benchmarks/results/env_throughput.json

In one process, all timing the code users run:

1. Env steps/s of ``ATESD-Surrogate-v0`` and of ``CartPole-v1``, both built with ``gym.make``
   (default wrappers) and stepped the same number of times with resets on episode end, in
   interleaved repeats (median of the repeats); their ratio (``ratio_vs_cartpole``).
2. The wall time of the same Stable-Baselines3 PPO training run (default hyper-parameters, CPU, one
   torch thread, ``ppo_timesteps`` steps) on ``ATESD-Surrogate-v0`` (through
   ``exposure_env.symmetric_actions``, as the SB3 agents use it), on ``CartPole-v1``, and on
   ``Pendulum-v1`` (a continuous-action reference: SB3's Gaussian policy costs more per step than
   CartPole's categorical one), interleaved; ``ppo_wall_ratio_vs_cartpole``.
3. Env-steps/s of the native batched surrogate (``gym.make_vec(..., vectorization_mode=
   "vector_entry_point")``) at 1, 64 and 1024 envs, interleaved with part 1.

As a diagnostic it also times :class:`~exposure_env.env.ExposureEnv` over a backend that does no
work, which separates the env's own cost per step from the surrogate backend's.

Goals: ``ppo_wall_ratio_vs_cartpole <= 1.1`` (the env is invisible in the agent's cost),
with the raw step ratio reported next to it, and ``batched_ratio_1024_vs_single >= 100``
(``batched["1024"] / surrogate_steps_per_s``). The machine is shared: only ratios measured side by
side in this run are meaningful, absolute rates are not.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np

import exposure_env
from agents.plots import pyplot, save_figure
from exposure_env.commandline import parse_dataclass
from exposure_env.env import ExposureEnv
from exposure_env.io import write_json
from exposure_env.types import TRACE_FIELDS, TrainingStats, UpdateTrace, WindowResult


@dataclass(frozen=True)
class Args:
    """Command-line arguments (each field is a ``--flag``)."""

    out: str = "benchmarks/results/env_throughput.json"
    """Result JSON (written atomically); a PNG with the same stem is written next to it."""
    steps: int = 20_000
    """Env steps per timed repeat, for the surrogate and for CartPole alike."""
    repeats: int = 7
    """Interleaved repeats of every single-env measurement; the median is reported."""
    batch_sizes: tuple[int, ...] = (1, 64, 1024)
    """Numbers of envs of the native batched surrogate."""
    batched_env_steps: int = 200_000
    """Env steps (summed over the batch) per timed repeat of a batched measurement (between 50 and
    ``steps / 4`` batch steps)."""
    seed: int = 0
    """Seed of the envs, of the random actions and of PPO."""
    ppo_timesteps: int = 8192
    """Env steps of each timed PPO training run (0 skips the PPO part)."""
    ppo_repeats: int = 3
    """Interleaved repeats of the PPO runs; the median is reported."""


class _IdleBackend:
    """A backend that does no work: times ExposureEnv's own overhead per step."""

    def __init__(self) -> None:
        self._stats = TrainingStats(0, 0.5, 0.5, 1.0, 0.3, 1.5, 0.6, -0.8, 1.0, 30.0, 0.4)
        self._trace = UpdateTrace(np.full((len(TRACE_FIELDS), 4), 0.5))

    def reset(self, seed: int | None = None) -> TrainingStats:
        self._stats = self._stats._replace(updates_done=0)
        return self._stats

    def run_window(self, reveal_ratio: float, num_updates: int) -> WindowResult:
        self._stats = self._stats._replace(updates_done=self._stats.updates_done + num_updates)
        return WindowResult(self._stats, self._trace)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Any) -> None:
        pass

    def close(self) -> None:
        pass


def time_single(env: gym.Env, actions: list, seed: int) -> float:
    """Steps/s of ``len(actions)`` steps, resetting on episode end (resets are timed too)."""
    env.reset(seed=seed)
    step, reset = env.step, env.reset
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = step(action)
        if terminated or truncated:
            reset()
    return len(actions) / (time.perf_counter() - start)


def time_batched(num_envs: int, env_steps: int, max_batch_steps: int, seed: int) -> float:
    envs = gym.make_vec(exposure_env.SURROGATE_ID, num_envs=num_envs, vectorization_mode="vector_entry_point")
    batch_steps = max(50, min(max_batch_steps, env_steps // num_envs))
    actions = np.random.default_rng(seed).random((batch_steps, num_envs, 1)).astype(np.float32)
    envs.reset(seed=seed)
    step = envs.step
    start = time.perf_counter()
    for action in actions:
        step(action)
    elapsed = time.perf_counter() - start
    envs.close()
    return batch_steps * num_envs / elapsed


PPO_ENVS: dict[str, Callable[[], gym.Env]] = {
    "surrogate": lambda: exposure_env.symmetric_actions(gym.make(exposure_env.SURROGATE_ID)),
    "cartpole": lambda: gym.make("CartPole-v1"),
    "pendulum": lambda: gym.make("Pendulum-v1"),
}


def time_ppo(args: Args) -> dict[str, Any]:
    """Wall time of ``model.learn(ppo_timesteps)`` per env (see the module docstring)."""
    try:
        import torch
        from stable_baselines3 import PPO
    except ImportError as exc:  # the sb3 extra is optional
        return {"measured": False, "reason": f"{type(exc).__name__}: {exc}"}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    walls: dict[str, list[float]] = {name: [] for name in PPO_ENVS}
    try:
        for _ in range(args.ppo_repeats):
            for name, make in PPO_ENVS.items():
                model = PPO("MlpPolicy", make(), seed=args.seed, device="cpu", verbose=0)
                start = time.perf_counter()
                model.learn(total_timesteps=args.ppo_timesteps)
                walls[name].append(time.perf_counter() - start)
                model.env.close()
    finally:
        torch.set_num_threads(threads)
    median = {name: statistics.median(v) for name, v in walls.items()}
    return {
        "measured": True,
        "wall_s": median,
        "ppo_wall_ratio_vs_cartpole": median["surrogate"] / median["cartpole"],
        "pendulum_wall_ratio_vs_cartpole": median["pendulum"] / median["cartpole"],
        "median_of_repeat_ratios": statistics.median(s / c for s, c in zip(walls["surrogate"], walls["cartpole"])),
        "repeats": walls,
        "settings": {"algorithm": "PPO", "policy": "MlpPolicy", "hyper_parameters": "SB3 defaults",
                     "timesteps": args.ppo_timesteps, "torch_threads": 1},
    }


def measure(args: Args) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    surrogate_actions = list(rng.random((args.steps, 1)).astype(np.float32))
    cartpole_actions = rng.integers(0, 2, size=args.steps).tolist()
    contenders: dict[str, tuple[Callable[[], gym.Env], list]] = {
        "surrogate": (lambda: gym.make(exposure_env.SURROGATE_ID), surrogate_actions),
        "cartpole": (lambda: gym.make("CartPole-v1"), cartpole_actions),
        "idle_backend": (lambda: ExposureEnv(_IdleBackend()), surrogate_actions),
    }
    envs = {name: make() for name, (make, _) in contenders.items()}
    for name, env in envs.items():  # warm-up (first-step env checker, caches)
        time_single(env, contenders[name][1][:500], args.seed)
    rates: dict[str, list[float]] = {name: [] for name in envs}
    batched_rates: dict[str, list[float]] = {str(n): [] for n in args.batch_sizes}
    for _ in range(args.repeats):  # interleaved, so load changes hit every contender alike
        for name, env in envs.items():
            rates[name].append(time_single(env, contenders[name][1], args.seed))
        for n in args.batch_sizes:
            batched_rates[str(n)].append(time_batched(n, args.batched_env_steps, max(50, args.steps // 4), args.seed))

    ppo = time_ppo(args) if args.ppo_timesteps > 0 else {"measured": False, "reason": "ppo_timesteps = 0"}
    surrogate = statistics.median(rates["surrogate"])
    cartpole = statistics.median(rates["cartpole"])
    idle = statistics.median(rates["idle_backend"])
    batched = {n: statistics.median(v) for n, v in batched_rates.items()}
    largest = str(max(args.batch_sizes))
    return {
        "surrogate_steps_per_s": surrogate,
        "cartpole_steps_per_s": cartpole,
        "ratio_vs_cartpole": surrogate / cartpole,
        "ppo_wall_ratio_vs_cartpole": ppo.get("ppo_wall_ratio_vs_cartpole"),
        "batched": batched,
        f"batched_ratio_{largest}_vs_single": batched[largest] / surrogate,
        "goals": {"ppo_wall_ratio_vs_cartpole": "<= 1.1", f"batched_ratio_{largest}_vs_single": ">= 100"},
        "ppo": ppo,
        "diagnostics": {
            "idle_backend_exposure_env_steps_per_s": idle,
            "us_per_step": {"surrogate": 1e6 / surrogate, "cartpole": 1e6 / cartpole,
                            "exposure_env_overhead": 1e6 / idle,
                            "surrogate_backend_estimate": 1e6 / surrogate - 1e6 / idle},
            "batched_ratio_vs_batched_1": {n: v / batched[str(min(args.batch_sizes))] for n, v in batched.items()},
            # medians of the ratios taken within each repeat (robust to load drifting between repeats)
            "median_of_repeat_ratios": {
                "ratio_vs_cartpole": statistics.median(
                    s / c for s, c in zip(rates["surrogate"], rates["cartpole"])),
                f"batched_ratio_{largest}_vs_single": statistics.median(
                    b / s for b, s in zip(batched_rates[largest], rates["surrogate"])),
            },
            "repeats": {"single": rates, "batched": batched_rates},
        },
        "args": dataclasses.asdict(args),
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "gymnasium": gym.__version__,
                    "note": "2 shared CPU cores; compare ratios only"},
    }


def plot(path: Path, result: dict[str, Any]) -> None:
    plt = pyplot()
    ppo = result["ppo"]
    fig, axes = plt.subplots(1, 2 if ppo["measured"] else 1, figsize=(11 if ppo["measured"] else 6, 3.6),
                             squeeze=False)
    ax = axes[0, 0]
    labels = ["CartPole-v1", "Surrogate-v0"] + [f"batched x{n}" for n in result["batched"]]
    values = [result["cartpole_steps_per_s"], result["surrogate_steps_per_s"], *result["batched"].values()]
    ax.bar(labels, values, color=["grey", "tab:blue"] + ["tab:green"] * len(result["batched"]))
    ax.set_yscale("log")
    ax.set_ylabel("env steps per second (log scale)")
    largest = max(result["batched"], key=int)
    ax.set_title(f"single env: {result['ratio_vs_cartpole']:.2f}x CartPole's steps/s; "
                 f"batched x{largest}: {result[f'batched_ratio_{largest}_vs_single']:.0f}x single", fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    if ppo["measured"]:
        ax = axes[0, 1]
        names = {"cartpole": "CartPole-v1", "pendulum": "Pendulum-v1", "surrogate": "Surrogate-v0"}
        ax.bar([names[k] for k in names], [ppo["wall_s"][k] for k in names], color=["grey", "silver", "tab:blue"])
        ax.set_ylabel(f"SB3 PPO wall time for {ppo['settings']['timesteps']} steps (s)")
        ax.set_title(f"PPO on the surrogate: {ppo['ppo_wall_ratio_vs_cartpole']:.2f}x the wall time on CartPole",
                     fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_dataclass(Args, argv, __doc__)
    result = measure(args)
    out = Path(args.out)
    write_json(out, result)
    try:
        plot(out.with_suffix(".png"), result)
    except ImportError:
        pass  # matplotlib is optional; the JSON is the result
    summary = {k: result[k] for k in ("surrogate_steps_per_s", "cartpole_steps_per_s", "ratio_vs_cartpole",
                                      "ppo_wall_ratio_vs_cartpole", "batched")}
    print(json.dumps(summary, indent=2))
    return result


if __name__ == "__main__":
    main()
