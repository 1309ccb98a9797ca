"""The ATESD controller (SPEC section 2): a Beta policy over the reveal ratio, trained by REINFORCE.

- Policy: an MLP maps the observation to raw outputs ``f(s)``; ``(a, b) = 1 + softplus(f(s))``;
  ``alpha ~ Beta(a, b)`` is clipped to ``[alpha_min, alpha_max]`` and held for the env's window
  (one decision per env step).
- Credit: the discounted lookahead over ``L`` student updates of :mod:`exposure_env.credit`, with
  the reward settings chosen here (``immediate`` / ``discounted`` / ``discounted+gt``, ``L``,
  ``lambda_gt``), computed from the env's per-update traces by the env's own reward functions.
- Update: every ``B`` completed decisions, REINFORCE with advantages centred and std-normalized
  within the batch, plus ``c * max(0, H - H_target)**2`` on the policy entropy ``H``. Learning is
  online inside one run (the paper's setting); the agent carries its weights, optimizer state and
  unfinished batch across runs, and ``save``/``load`` carry them across processes.

Unknowns of the paper are the fields of :class:`BetaAgentConfig`. The agent sees observations and
``info`` only; it does not know which backend produced them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from agents.base import ControllerStats, EnvFactory, RunContext, Transition, as_action
from agents.distributions import BetaDistribution
from agents.episode import rollout
from exposure_env.credit import CompletedDecision, CreditLedger, CreditSettings
from exposure_env.errors import ConfigError, check_choice, check_range
from exposure_env.io import atomic_write
from exposure_env.schema import OBSERVATION_NAMES

ATESD_CREDIT = CreditSettings(reward_mode="discounted+gt", lookahead=16)
"""The paper's full ATESD credit: discounted learning progress over a lookahead that spans later
windows plus the teacher-grounded term (``L = 16`` updates, four default windows, is ours)."""


@dataclass(frozen=True)
class BetaAgentConfig:
    """Every free choice of the ATESD controller. Defaults are ours; the paper does not give them."""

    credit: CreditSettings = ATESD_CREDIT
    """How a decision is credited: reward mode, ``gamma``, ``lambda_gt`` (the env's shared reward
    settings) and the lookahead ``L`` (``None``: the decision's own window, the one-step ablation)."""
    batch_size: int = 8
    """B: completed decisions per REINFORCE update (advantages are normalized within it)."""
    alpha_min: float = 0.0
    """Lower clip of the applied reveal ratio."""
    alpha_max: float = 1.0
    """Upper clip of the applied reveal ratio."""
    entropy_target: float = -1.0
    """Entropy (nats, differential; Beta(1,1) has 0) above which the policy is penalized. The
    initial policy Beta(1.69, 1.69) has about -0.13, Beta(10, 10) about -0.88."""
    entropy_coef: float = 0.5
    """c in ``c * max(0, H - H_target)**2``."""
    hidden_sizes: tuple[int, ...] = (32, 32)
    """Hidden layer widths of the policy MLP (tanh)."""
    optimizer: str = "adam"
    """``adam`` or ``sgd``."""
    learning_rate: float = 3e-3
    """Optimizer step size."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip of each update (0 disables)."""
    device: str = "cpu"
    """Torch device of the policy. The MLP is tiny and acts once per window: on CPU it avoids a
    host-device copy per decision; ``cuda`` works too."""
    dtype: str = "float32"
    """``float32`` or ``float64`` (bf16 is too coarse for Beta log-densities near the bounds)."""

    def __post_init__(self) -> None:
        if isinstance(self.credit, dict):  # from a checkpoint's or a command line's plain data
            object.__setattr__(self, "credit", CreditSettings(**self.credit))
        if not isinstance(self.credit, CreditSettings):
            raise ConfigError("credit", "a CreditSettings (or a dict of its fields)", self.credit)
        check_range("batch_size", self.batch_size, 2, None, integer=True)
        check_range("alpha_min", self.alpha_min, 0.0, 1.0)
        check_range("alpha_max", self.alpha_max, self.alpha_min, 1.0)
        check_range("entropy_target", self.entropy_target, None, 0.0)
        check_range("entropy_coef", self.entropy_coef, 0.0, None)
        if not self.hidden_sizes or any(int(h) != h or h < 1 for h in self.hidden_sizes):
            raise ConfigError("hidden_sizes", "a non-empty tuple of positive integers", self.hidden_sizes)
        check_choice("optimizer", self.optimizer, ("adam", "sgd"))
        check_range("learning_rate", self.learning_rate, 0.0, None, low_inclusive=False)
        check_range("max_grad_norm", self.max_grad_norm, 0.0, None)
        check_choice("dtype", self.dtype, ("float32", "float64"))


class _Decision(NamedTuple):
    """What the agent keeps of a decision until its credit is final."""

    obs: np.ndarray
    """Observation the decision was taken on."""
    sample: float
    """The policy's raw sample (before clipping to the alpha bounds): what ``log_prob`` scores."""


class BetaPolicy(nn.Module):
    """Observation -> raw Beta parameters ``(2,)``; zero-initialized head, so every state starts at
    ``Beta(1 + ln 2, 1 + ln 2)`` (mean 0.5)."""

    def __init__(self, obs_dim: int, hidden_sizes: tuple[int, ...], generator: torch.Generator) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = obs_dim
        for size in hidden_sizes:
            linear = nn.Linear(width, size)
            nn.init.orthogonal_(linear.weight, gain=float(np.sqrt(2.0)), generator=generator)
            nn.init.zeros_(linear.bias)
            layers += [linear, nn.Tanh()]
            width = size
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 2)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(obs))


class BetaAgent:
    """ATESD's Beta-policy controller (see the module docstring)."""

    def __init__(self, config: BetaAgentConfig | None = None, seed: int = 0, name: str = "beta",
                 carry_over: bool = False) -> None:
        self.config = config if config is not None else BetaAgentConfig()
        self.name = name
        # With carry_over the runner first calls train(): full runs on other seeds, learning online
        # in each, weights kept; without it the agent learns only inside the evaluated run (paper).
        self.trains_before_run = carry_over
        cfg = self.config
        self.device = torch.device(cfg.device)
        self.dtype = torch.float32 if cfg.dtype == "float32" else torch.float64
        init_generator = torch.Generator().manual_seed(int(seed))
        self.policy = BetaPolicy(len(OBSERVATION_NAMES), tuple(cfg.hidden_sizes), init_generator)
        self.policy.to(device=self.device, dtype=self.dtype)
        optimizer_class = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.SGD
        self.optimizer = optimizer_class(self.policy.parameters(), lr=cfg.learning_rate)
        self.distribution = BetaDistribution(action_dim=1)
        # Sampling uses a CPU generator (torch's gamma sampler on CPU accepts one) reseeded per run.
        self.generator = torch.Generator().manual_seed(int(seed))
        self.ledger = CreditLedger(cfg.credit, cfg.credit.lookahead or 1)
        self.completed: list[CompletedDecision] = []  # payloads are _Decision records
        self.num_updates = 0
        self._last_sample: float | None = None
        self._last_stats: dict[str, float] = {}

    # -- controller protocol ------------------------------------------------------------------
    def begin_run(self, context: RunContext) -> None:
        self.generator.manual_seed(int(context.seed))
        self.ledger.lookahead = self.config.credit.lookahead or context.hold_window
        self.ledger.clear()
        self._last_sample = None

    def act(self, obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            raw = self.policy(self._tensor(obs)).cpu()
            dist = self.distribution.proba_distribution(raw.to(torch.float64))
            sample = float(dist.sample(self.generator).reshape(()))
            a = float(dist.distribution.concentration1.reshape(()))
            b = float(dist.distribution.concentration0.reshape(()))
        self._last_sample = sample
        self._last_stats = {"beta_a": a, "beta_b": b, "beta_mean": a / (a + b), "sample": sample}
        return as_action(min(self.config.alpha_max, max(self.config.alpha_min, sample)))

    def observe(self, transition: Transition) -> ControllerStats:
        sample = self._last_sample
        if sample is None:  # driven without act(): score the action that was applied
            sample = float(np.asarray(transition.action).reshape(-1)[0])
        self._last_sample = None
        over = bool(transition.terminated or transition.truncated)
        decision = _Decision(np.asarray(transition.obs, dtype=np.float32).copy(), sample)
        done = self.ledger.record(decision, float(transition.reward), transition.info, over)
        self.completed.extend(done)
        stats = dict(self._last_stats)
        stats["completed_decisions"] = float(len(done))
        while len(self.completed) >= self.config.batch_size:
            batch = self.completed[: self.config.batch_size]
            self.completed = self.completed[self.config.batch_size:]
            stats.update(self._update(batch))
        return stats

    def end_run(self) -> ControllerStats:
        # Open decisions were completed by the terminal step; an unfinished batch (< B) is kept for
        # the next run, so carried-over learning never drops data.
        self.ledger.clear()
        return {"policy_updates": float(self.num_updates), "pending_decisions": float(len(self.completed))}

    def train(self, make_env: EnvFactory, episodes: int, seed: int) -> None:
        """Carry-over training: run ``episodes`` full runs, learning online in each."""
        env = make_env()
        try:
            for episode in range(episodes):
                rollout(env, self, seed=seed + episode)
        finally:
            env.close()

    # -- learning -------------------------------------------------------------------------------
    def _update(self, batch: list[CompletedDecision]) -> dict[str, float]:
        cfg = self.config
        credits = torch.tensor([d.credit for d in batch], dtype=self.dtype, device=self.device)
        obs = torch.as_tensor(np.stack([d.payload.obs for d in batch]), dtype=self.dtype, device=self.device)
        samples = torch.tensor([[d.payload.sample] for d in batch], dtype=self.dtype, device=self.device)
        std = credits.std()
        # Identical credits carry no preference between the sampled alphas: no policy-gradient term.
        advantages = (credits - credits.mean()) / (std + 1e-8) if float(std) > 1e-12 else torch.zeros_like(credits)
        dist = self.distribution.proba_distribution(self.policy(obs))
        log_prob = dist.log_prob(samples)
        entropy = dist.entropy()
        policy_loss = -(advantages * log_prob).mean()
        entropy_penalty = cfg.entropy_coef * torch.relu(entropy - cfg.entropy_target).pow(2).mean()
        loss = policy_loss + entropy_penalty
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        self.num_updates += 1
        return {"policy_loss": float(policy_loss.detach()), "entropy": float(entropy.detach().mean()),
                "entropy_penalty": float(entropy_penalty.detach()), "credit_mean": float(credits.mean()),
                "credit_std": float(std), "policy_updates": float(self.num_updates)}

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        state = {
            "config": dataclasses.asdict(self.config),
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "completed": [{"obs": d.payload.obs, "sample": d.payload.sample, "credit": d.credit,
                           "updates_seen": d.updates_seen} for d in self.completed],
            "num_updates": self.num_updates,
        }
        atomic_write(path, lambda tmp: torch.save(state, tmp))

    def load(self, path: str | Path) -> None:
        state: dict[str, Any] = torch.load(Path(path), map_location=self.device, weights_only=False)
        saved_sizes = tuple(state["config"]["hidden_sizes"])
        if saved_sizes != tuple(self.config.hidden_sizes):
            raise ConfigError("hidden_sizes", f"{saved_sizes} (the checkpoint's)", self.config.hidden_sizes,
                              f"checkpoint {path} was saved with another policy size")
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.completed = [CompletedDecision(_Decision(d["obs"], d["sample"]), d["credit"], d["updates_seen"])
                          for d in state["completed"]]
        self.num_updates = int(state["num_updates"])

    # -- helpers ----------------------------------------------------------------------------------
    def _tensor(self, obs: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device).to(self.dtype)

    def policy_mean(self, obs: np.ndarray) -> float:
        """Mean ``a / (a + b)`` of the policy at ``obs`` (for inspection and tests)."""
        with torch.no_grad():
            dist = self.distribution.proba_distribution(self.policy(self._tensor(obs)).cpu().double())
            return float(dist.mean().reshape(()))
