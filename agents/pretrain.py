"""Amortized learning: pre-train a controller on many surrogate runs, save it, deploy it on any run.

    python -m agents.pretrain --runs 4096 --out runs/pretrained/beta                  # ATESD Beta policy
    python -m agents.pretrain --params tiny-qwen3 --runs 4096 --out runs/pretrained/beta
    python -m agents.pretrain --agent ppo --runs 4096 --out runs/pretrained/ppo      # SB3 PPO

The paper's controller learns online inside the one run it steers: 50 decisions give it six
REINFORCE updates, too few to move the policy. Here the same Beta policy learns first from thousands
of cheap runs of the native batched surrogate (``gym.make_vec("ATESD-Surrogate-v0", num_envs=N,
vectorization_mode="vector_entry_point")``), and is then deployed, frozen (``beta-pretrained:PATH``)
or still learning online (``beta-pretrained:PATH:online``).

**The ATESD agent** (``agent`` = ``beta`` or ``beta:MODE[:L]``, the same specs as online; the
default ``beta:immediate:32`` says why it is not the paper's credit): every
*generation* runs ``num_envs`` surrogate runs side by side to their end, with decisions drawn from
the current policy (:meth:`~agents.beta_agent.BetaAgent.sample_batch`). Each run's decisions are
credited by its own :class:`~exposure_env.credit.CreditLedger` with the agent's credit settings:
the very formula, lookahead and end-of-run rule the agent uses online. Then one REINFORCE step
(:meth:`~agents.beta_agent.BetaAgent.policy_step`, entropy penalty included) on all the generation's
decisions. Advantages (``advantage``): ``per_decision`` (default) normalizes each decision's credit
among the decisions taken at the same point of the other runs of the generation (same step index,
so the same stage of training); credits shrink as training goes on whatever the policy does, and
comparing a window-1 decision with a window-40 one would credit the stage, not the choice.
``batch`` normalizes over the whole generation, as the paper does over its online batch.

**SB3 agents** (``ppo``, ``sac``, ``a2c``, ``td3``, ``ppo-beta``): ``SB3Controller.train_batched``
on the same batched surrogate, through the SB3 ``VecEnv`` adapter (:mod:`agents.sb3_vec`); deploy
with ``ppo-pretrained:PATH``. Their curve has one record per ``num_envs`` finished runs as well.

Outputs in ``out``: the checkpoint (the controller's own ``save``) and ``pretrain.json``
(:class:`~agents.pretrained.PretrainManifest`, with the training curve). Pre-training seeds start at
:data:`PRETRAIN_SEED_OFFSET`, away from evaluation seeds (small integers) and from the runner's
training seeds. The module knows the controller protocol, the vector env API and the credit ledger;
it does not know which surrogate parameters it trains on (``params`` goes to the env as it is).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import gymnasium as gym
import numpy as np
import torch

import exposure_env  # noqa: F401 - registers the env ids
from agents.beta_agent import BetaAgent, Decision, normalized_advantages
from agents.pretrained import MANIFEST, SB3_KINDS, PretrainManifest
from agents.registry import make_controller
from exposure_env.commandline import parse_dataclass
from exposure_env.credit import CompletedDecision, CreditLedger
from exposure_env.errors import AtesdError, ConfigError, check_choice, check_range, store_integers
from exposure_env.io import to_plain, write_json
from exposure_env.registration import SURROGATE_ID

PRETRAIN_SEED_OFFSET = 2_000_000
"""First seed of pre-training runs (the runner's own training runs start at 1,000,000)."""
ADVANTAGES: tuple[str, ...] = ("per_decision", "batch")


@dataclass(frozen=True)
class PretrainConfig:
    """One pre-training (every field is a ``--flag`` of ``python -m agents.pretrain``)."""

    agent: str = "beta:immediate:32"
    """``beta`` / ``beta:MODE[:L]`` (the ATESD agent, same specs and credit as online) or an SB3
    algorithm: ``ppo``, ``sac``, ``a2c``, ``td3``, ``ppo-beta``. The default credits a decision with
    the signed change of the probe NLL over the next 32 updates. Measured on the default surrogate
    (4,096 runs, deployed frozen, 30 evaluation seeds; a small setting): 0.843 ± 0.021 final score
    against 0.662 ± 0.056 for the paper's credit (``beta``: ``discounted+gt``, L = 16) and 0.629 ±
    0.056 for ``beta:discounted:32``, which drove the policy to high reveal ratios: discounted
    progress counts only drops, so the NLL rebounds that follow the surrogate's transient cost it
    nothing (fixed 0.5: 0.819 ± 0.025; linear 0.2 -> 1.0: 0.831 ± 0.030)."""
    params: str | None = None
    """Name of a shipped surrogate parameter set (passed to the env as ``params``); ``None``: the
    env's default parameters (or ``params`` inside ``env_kwargs``)."""
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """JSON object of further ``gym.make_vec`` kwargs (``total_updates``, ``hold_window``, ...).
    Use the same episode settings as the runs the controller will steer."""
    env_id: str = SURROGATE_ID
    """Env id with a native vector entry point."""
    runs: int = 4096
    """Surrogate runs to train on (rounded up to whole generations of ``num_envs``)."""
    num_envs: int = 64
    """Runs stepped side by side. For the ATESD agent also the runs per policy update: ``runs /
    num_envs`` REINFORCE steps in all."""
    seed: int = 0
    """Seed of the policy's initialization and of the runs (offset by ``PRETRAIN_SEED_OFFSET``)."""
    out: str = "runs/pretrained/beta"
    """Output folder (checkpoint and ``pretrain.json``)."""
    advantage: str = "per_decision"
    """ATESD agent only: ``per_decision`` (credits normalized among the generation's decisions at the
    same step) or ``batch`` (over the whole generation). See the module docstring."""
    agent_overrides: Mapping[str, Any] = field(default_factory=dict)
    """JSON object of agent config fields (``BetaAgentConfig`` or ``SB3AgentConfig``), e.g.
    ``{"learning_rate": 0.001}``."""
    torch_threads: int = 1
    """Torch threads (the policies are tiny; more threads only add contention)."""
    progress: bool = True
    """Print one line per logged generation."""

    def __post_init__(self) -> None:
        store_integers(self)
        check_range("runs", self.runs, 1, None, integer=True)
        check_range("num_envs", self.num_envs, 1, None, integer=True)
        check_range("seed", self.seed, 0, None, integer=True)
        check_range("torch_threads", self.torch_threads, 1, None, integer=True)
        check_choice("advantage", self.advantage, ADVANTAGES)
        name = self.agent.partition(":")[0]
        if name != "beta" and self.agent not in SB3_KINDS:
            raise ConfigError("agent", "beta, beta:MODE[:L] or one of " + ", ".join(SB3_KINDS), self.agent)
        if self.params is not None and "params" in self.env_kwargs:
            raise ConfigError("params", "given once (either --params or env_kwargs['params'])", self.params)

    @property
    def kind(self) -> str:
        """``beta`` or the SB3 algorithm."""
        return "beta" if self.agent.partition(":")[0] == "beta" else self.agent

    @property
    def make_kwargs(self) -> dict[str, Any]:
        """The env kwargs, ``params`` included."""
        kwargs = dict(self.env_kwargs)
        if self.params is not None:
            kwargs["params"] = self.params
        return kwargs

    def vector_env_factory(self) -> Callable[[], gym.vector.VectorEnv]:
        kwargs = self.make_kwargs
        return lambda: gym.make_vec(self.env_id, num_envs=self.num_envs, vectorization_mode="vector_entry_point",
                                    **kwargs)


class GenerationStats(NamedTuple):
    """One REINFORCE step of the pre-training: what its generation of runs did."""

    update: int
    runs_done: int
    final_score: float
    """Mean final score of the generation's runs."""
    mean_alpha: float
    credit_mean: float
    entropy: float
    diverged_runs: int
    wall_time_s: float


def pretrain(config: PretrainConfig) -> PretrainManifest:
    """Pre-train, save the checkpoint and the manifest into ``config.out``; returns the manifest."""
    torch.set_num_threads(config.torch_threads)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    controller: Any = make_controller(config.agent, seed=config.seed, **dict(config.agent_overrides))
    if config.kind == "beta":
        curve = [s._asdict() for s in pretrain_beta(controller, config)]
        updates, checkpoint = controller.num_updates, "checkpoint.safetensors"
    else:
        (updates, curve), checkpoint = pretrain_sb3(controller, config), "model.zip"  # SB3 appends .zip otherwise
    controller.save(out / checkpoint)
    manifest = PretrainManifest(
        kind=config.kind, agent=config.agent, agent_config=to_plain(dataclasses.asdict(controller.config)),
        checkpoint=checkpoint, env_id=config.env_id, env_kwargs=config.make_kwargs,
        runs=config.num_envs * math.ceil(config.runs / config.num_envs), policy_updates=int(updates),
        wall_time_s=time.perf_counter() - start, config=to_plain(dataclasses.asdict(config)), curve=curve)
    write_json(out / MANIFEST, dataclasses.asdict(manifest))
    return manifest


def _seed(config: PretrainConfig, generation: int) -> int:
    return PRETRAIN_SEED_OFFSET + config.seed * 100_000 + generation


def pretrain_beta(agent: BetaAgent, config: PretrainConfig) -> list[GenerationStats]:
    """The ATESD agent's pre-training loop (module docstring); returns one record per update."""
    venv = config.vector_env_factory()()
    generations = math.ceil(config.runs / config.num_envs)
    curve: list[GenerationStats] = []
    start = time.perf_counter()
    try:
        for generation in range(generations):
            decisions, finals, alphas = run_generation(agent, venv, _seed(config, generation))
            credits = np.array([d.credit for d in decisions])
            steps = np.array([d.payload.step for d in decisions])
            advantages = (per_decision_advantages(credits, steps) if config.advantage == "per_decision"
                          else normalized_advantages(credits))
            stats = agent.policy_step(np.stack([d.payload.obs for d in decisions]),
                                      np.array([d.payload.sample for d in decisions]), advantages)
            record = GenerationStats(agent.num_updates, (generation + 1) * config.num_envs, float(np.mean(finals.score)),
                                     float(alphas), float(credits.mean()), stats["entropy"],
                                     int(finals.diverged.sum()), time.perf_counter() - start)
            curve.append(record)
            if config.progress and (generation % max(1, generations // 20) == 0 or generation == generations - 1):
                print(f"update {record.update:5d}  runs {record.runs_done:7d}  final score {record.final_score:.4f}  "
                      f"mean alpha {record.mean_alpha:.3f}  entropy {record.entropy:+.3f}  "
                      f"{record.wall_time_s:.0f} s", flush=True)
    finally:
        venv.close()
    return curve


def pretrain_sb3(agent: Any, config: PretrainConfig) -> tuple[int, list[dict[str, float]]]:
    """An SB3 agent's pre-training (``SB3Controller.train_batched``); returns the env steps trained
    and the curve, one record per ``num_envs`` finished runs (:class:`agents.sb3_vec.RunRecorder`: runs done, their mean final
    score, mean alpha and reward, divergences, SB3's policy updates, wall time)."""
    from agents.sb3_vec import RunRecorder

    curve: list[dict[str, float]] = []
    expected = math.ceil(config.runs / config.num_envs)

    def record(row: dict[str, float]) -> None:
        curve.append(row)
        if config.progress and (len(curve) % max(1, expected // 20) == 0 or len(curve) == expected):
            print(f"policy updates {row['policy_updates']:5d}  runs {row['runs_done']:7d}  final score "
                  f"{row['final_score']:.4f}  mean alpha {row['mean_alpha']:.3f}  {row['wall_time_s']:.0f} s", flush=True)

    runs = config.num_envs * expected
    steps = agent.train_batched(config.vector_env_factory(), runs, seed=_seed(config, 0),
                                callback=RunRecorder(config.num_envs, record))
    return steps, curve


class RunEnds(NamedTuple):
    """Where each run of a generation ended."""

    score: np.ndarray
    diverged: np.ndarray


def run_generation(agent: BetaAgent, venv: gym.vector.VectorEnv,
                   seed: int) -> tuple[list[CompletedDecision], RunEnds, float]:
    """Run every sub-env of ``venv`` from ``reset(seed)`` to the end of its run under ``agent``'s
    policy; returns every decision with its final credit (payloads are the agent's decision records,
    with their step index), the runs' final scores and divergences, and the mean applied alpha.

    Each run is credited by its own :class:`CreditLedger`, fed exactly what a single env's ``step``
    would give it. A run that ends early (divergence) is not followed further: its sub-env's next
    runs (the vector env's autoreset) are ignored.
    """
    obs, info = venv.reset(seed=seed)
    num_envs = venv.num_envs
    hold = int(np.asarray(info["hold_window"]).reshape(-1)[0])
    credit = agent.config.credit
    ledgers = [CreditLedger(credit, credit.lookahead or hold) for _ in range(num_envs)]
    running = np.ones(num_envs, dtype=bool)
    score, diverged = np.zeros(num_envs), np.zeros(num_envs, dtype=bool)
    decisions: list[CompletedDecision] = []
    alpha_sum, alpha_count, step = 0.0, 0, 0
    while running.any():
        drawn = agent.sample_batch(obs)
        next_obs, reward, terminated, truncated, info = venv.step(drawn.actions)
        over = np.asarray(terminated) | np.asarray(truncated)
        decisions += _record_rows(ledgers, np.flatnonzero(running), obs, drawn.samples, step, reward, over, info)
        alpha_sum += float(drawn.actions[running].sum())
        alpha_count += int(running.sum())
        ended = running & over
        score[ended] = np.asarray(info["score"])[ended]
        diverged[ended] = np.asarray(info["diverged"])[ended]
        running &= ~over
        obs = next_obs
        step += 1
    assert all(not ledger.open for ledger in ledgers)
    return decisions, RunEnds(score, diverged), alpha_sum / max(1, alpha_count)


def _record_rows(ledgers: Sequence[CreditLedger], rows: np.ndarray, obs: np.ndarray, samples: np.ndarray, step: int,
                 reward: np.ndarray, over: np.ndarray, info: Mapping[str, Any]) -> list[CompletedDecision]:
    """Feed row ``i`` of a vector step to ``ledgers[i]`` as the single env's ``info`` of that step."""
    trace = info["trace"]
    progress, grounded = trace["progress"], trace["grounded"]
    lengths, before, diverged = info["num_updates"], info["progress_before"], info["diverged"]
    done: list[CompletedDecision] = []
    for i in rows.tolist():
        n = int(lengths[i])
        row = {"progress_before": float(before[i]), "diverged": bool(diverged[i]),
               "trace": {"progress": progress[i, :n], "grounded": grounded[i, :n]}}
        decision = Decision(obs[i].copy(), float(samples[i]), step)
        done += ledgers[i].record(decision, float(reward[i]), row, bool(over[i]))
    return done


def per_decision_advantages(credits: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Credits normalized among the decisions with the same step index (see the module docstring)."""
    advantages = np.zeros_like(credits, dtype=np.float64)
    for step in np.unique(steps):
        rows = steps == step
        advantages[rows] = normalized_advantages(credits[rows])
    return advantages


def main(argv: list[str] | None = None) -> int:
    config = parse_dataclass(PretrainConfig, argv, __doc__)
    try:
        manifest = pretrain(config)
    except AtesdError as exc:
        print(f"agents.pretrain: error: {exc}", file=sys.stderr)
        return 2
    last = manifest.curve[-1] if manifest.curve else {}
    unit = "policy updates" if manifest.kind == "beta" else "env steps"
    print(f"pre-trained {manifest.kind} on {manifest.runs} runs ({manifest.policy_updates} {unit}) in "
          f"{manifest.wall_time_s:.0f} s" + (f"; last generation's final score {last['final_score']:.4f}" if last else "")
          + f"; wrote {Path(config.out) / MANIFEST}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
