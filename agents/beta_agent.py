"""The ATESD controller (docs/methods.md, section 2): a Beta policy over the reveal ratio, trained by REINFORCE.

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
- Neutral defaults: the entropy target is the initial policy's own entropy (about -0.077 nats), so
  the penalty is zero at the start and only acts if the policy grows *wider* than it started; it
  never pushes the policy towards any alpha. End-of-run decisions are credited by
  :mod:`exposure_env.credit`'s ``end_of_run`` rule (rescaled to the full lookahead), so late
  decisions are not credited less for being late.
- Deployment without learning (``online=False``, e.g. a policy pre-trained on the surrogate by
  :mod:`agents.pretrain`): the policy is frozen and, with ``action="mean"``, acts at its mean.

Unknowns of the paper are the fields of :class:`BetaAgentConfig`. The agent sees observations and
``info`` only; it does not know which backend produced them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

import numpy as np
import torch
from torch import nn

from agents.base import ControllerStats, EnvFactory, RunContext, Transition, as_action
from agents.checkpoint import Checkpointed
from agents.devices import torch_device
from agents.distributions import BetaDistribution
from agents.episode import rollout
from exposure_env.credit import CompletedDecision, CreditLedger, CreditSettings
from exposure_env.errors import ConfigError, check_choice, check_range, store_integers
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
    entropy_target: float | None = None
    """Entropy (nats, differential; Beta(1,1) has 0) above which the policy is penalized. ``None``:
    the entropy of the initial policy ``Beta(1 + ln 2, 1 + ln 2)``, about -0.077, so the penalty is
    inactive at the start and only keeps the policy from growing wider than it started (a neutral
    default: it never moves the mean). Beta(10, 10) has about -0.80; a target that low pushes
    the policy to sharpen from the first update, and with ``a, b >= 1`` a sharpening random walk
    ends in a corner (pure-noise credits drove the mean to 0.1-0.15 on three seeds in 300 updates
    with -1.0)."""
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
    online: bool = True
    """Learn from the credits of the runs it steers (the paper's online REINFORCE). ``False``
    freezes the policy: ``observe`` records nothing and nothing is updated (a pre-trained policy
    deployed as is)."""
    action: str = "sample"
    """``sample``: draw alpha from the policy (needed to learn online). ``mean``: act at the policy
    mean ``a / (a + b)``, for a frozen policy: exploration buys nothing when nothing is learned,
    and the mean is the alpha the policy plays on average (the mode would exaggerate a skewed law)."""

    def __post_init__(self) -> None:
        store_integers(self)
        if isinstance(self.credit, dict):  # from a checkpoint's or a command line's plain data
            object.__setattr__(self, "credit", CreditSettings(**self.credit))
        if not isinstance(self.credit, CreditSettings):
            raise ConfigError("credit", "a CreditSettings (or a dict of its fields)", self.credit)
        check_range("batch_size", self.batch_size, 2, None, integer=True)
        check_range("alpha_min", self.alpha_min, 0.0, 1.0)
        check_range("alpha_max", self.alpha_max, self.alpha_min, 1.0)
        if self.entropy_target is not None:
            check_range("entropy_target", self.entropy_target, None, 0.0)
        check_range("entropy_coef", self.entropy_coef, 0.0, None)
        if not self.hidden_sizes or any(int(h) != h or h < 1 for h in self.hidden_sizes):
            raise ConfigError("hidden_sizes", "a non-empty tuple of positive integers", self.hidden_sizes)
        check_choice("optimizer", self.optimizer, ("adam", "sgd"))
        check_range("learning_rate", self.learning_rate, 0.0, None, low_inclusive=False)
        check_range("max_grad_norm", self.max_grad_norm, 0.0, None)
        check_choice("dtype", self.dtype, ("float32", "float64"))
        check_choice("action", self.action, ("sample", "mean"))
        if self.online and self.action != "sample":
            raise ConfigError("action", "'sample' when online=True (REINFORCE learns from its own samples)",
                              self.action)


def initial_entropy() -> float:
    """Entropy of the initial policy ``Beta(1 + ln 2, 1 + ln 2)`` (zero head), in nats."""
    return float(BetaDistribution(action_dim=1).proba_distribution(torch.zeros(2, dtype=torch.float64)).entropy())


class _Decision(NamedTuple):
    """What the agent keeps of a decision until its credit is final."""

    obs: np.ndarray
    """Observation the decision was taken on."""
    sample: float
    """The policy's raw sample (before clipping to the alpha bounds): what ``log_prob`` scores."""
    step: int = -1
    """Index of the decision in its run (batched pre-training groups decisions by it; -1: unknown)."""


Decision = _Decision
"""Public name of the decision record (batched pre-training builds them)."""


class PolicySamples(NamedTuple):
    """A batch of decisions drawn by :meth:`BetaAgent.sample_batch`."""

    samples: np.ndarray
    """(N,) raw policy samples (what ``log_prob`` scores)."""
    actions: np.ndarray
    """(N, 1) float32 reveal ratios to apply (samples clipped to the alpha bounds, or the clipped
    policy means with ``action="mean"``)."""


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


class BetaAgent(Checkpointed):
    """ATESD's Beta-policy controller (see the module docstring)."""

    checkpoint_kind = "beta-agent"

    def __init__(self, config: BetaAgentConfig | None = None, seed: int = 0, name: str = "beta",
                 carry_over: bool = False) -> None:
        self.config = config if config is not None else BetaAgentConfig()
        self.name = name
        # With carry_over the runner first calls train(): full runs on other seeds, learning online
        # in each, weights kept; without it the agent learns only inside the evaluated run (paper).
        self.trains_before_run = carry_over
        cfg = self.config
        self.device = torch_device("device", cfg.device)
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
        self.entropy_target = cfg.entropy_target if cfg.entropy_target is not None else initial_entropy()
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
            a = float(dist.distribution.concentration1.reshape(()))
            b = float(dist.distribution.concentration0.reshape(()))
            sample = float(dist.sample(self.generator).reshape(())) if self.config.action == "sample" else a / (a + b)
        self._last_sample = sample
        self._last_stats = {"beta_a": a, "beta_b": b, "beta_mean": a / (a + b), "sample": sample}
        return as_action(min(self.config.alpha_max, max(self.config.alpha_min, sample)))

    def sample_batch(self, obs: np.ndarray) -> PolicySamples:
        """Decisions for a batch of observations ``(N, obs_dim)`` at once (batched pre-training), from
        the agent's generator, the way :meth:`act` decides for one."""
        with torch.no_grad():
            raw = self.policy(self._tensor(obs)).cpu().to(torch.float64)
            dist = self.distribution.proba_distribution(raw)
            values = dist.sample(self.generator) if self.config.action == "sample" else dist.mean()
        samples = values.reshape(-1).numpy()
        actions = np.clip(samples, self.config.alpha_min, self.config.alpha_max).astype(np.float32)[:, None]
        return PolicySamples(samples, actions)

    def observe(self, transition: Transition) -> ControllerStats:
        if not self.config.online:  # frozen: nothing to learn, nothing to keep
            self._last_sample = None
            return dict(self._last_stats)
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
        """The paper's update: advantages normalized within the batch of ``B`` decisions."""
        credits = np.array([d.credit for d in batch], dtype=np.float64)
        stats = self.policy_step(np.stack([d.payload.obs for d in batch]), np.array([d.payload.sample for d in batch]),
                                 normalized_advantages(credits))
        return stats | {"credit_mean": float(credits.mean()), "credit_std": float(credits.std(ddof=1))}

    def policy_step(self, obs: np.ndarray, samples: np.ndarray, advantages: np.ndarray) -> dict[str, float]:
        """One REINFORCE step, ``-mean(A * log p(sample | obs))`` plus the entropy penalty, on
        decisions ``obs`` (N, obs_dim) with raw ``samples`` (N,) and ``advantages`` (N,)."""
        cfg = self.config
        obs_t = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device).to(self.dtype)
        samples_t = torch.as_tensor(np.asarray(samples, dtype=np.float64).reshape(-1, 1), device=self.device)
        advantages_t = torch.as_tensor(np.asarray(advantages, dtype=np.float64), device=self.device)
        dist = self.distribution.proba_distribution(self.policy(obs_t))
        log_prob = dist.log_prob(samples_t.to(self.dtype))
        entropy = dist.entropy()
        policy_loss = -(advantages_t.to(self.dtype) * log_prob).mean()
        entropy_penalty = cfg.entropy_coef * torch.relu(entropy - self.entropy_target).pow(2).mean()
        loss = policy_loss + entropy_penalty
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        self.num_updates += 1
        return {"policy_loss": float(policy_loss.detach()), "entropy": float(entropy.detach().mean()),
                "entropy_penalty": float(entropy_penalty.detach()), "policy_updates": float(self.num_updates)}

    # -- persistence ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The agent's complete state (see :mod:`agents.base`): config, policy, optimizer, sampling
        generator, the unfinished batch, the ledger's open decisions and the pending sample."""
        ledger = self.ledger.state_dict()
        ledger["open"] = [{**fields, "payload": fields["payload"]._asdict()} for fields in ledger["open"]]
        return {
            "config": dataclasses.asdict(self.config),
            "policy": dict(self.policy.state_dict()),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "completed": [{"payload": d.payload._asdict(), "credit": d.credit, "updates_seen": d.updates_seen}
                          for d in self.completed],
            "ledger": ledger,
            "num_updates": self.num_updates,
            "last_sample": self._last_sample,
            "last_stats": dict(self._last_stats),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved_sizes = tuple(state["config"]["hidden_sizes"])
        if saved_sizes != tuple(self.config.hidden_sizes):
            raise ConfigError("hidden_sizes", f"{saved_sizes} (the checkpoint's)", self.config.hidden_sizes,
                              "the checkpoint was saved with another policy size")
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.completed = [CompletedDecision(_Decision(**d["payload"]), d["credit"], d["updates_seen"])
                          for d in state["completed"]]
        ledger = dict(state["ledger"])
        ledger["open"] = [{**fields, "payload": _Decision(**fields["payload"])} for fields in ledger["open"]]
        self.ledger.load_state_dict(ledger)
        self.num_updates = int(state["num_updates"])
        self._last_sample = state["last_sample"]
        self._last_stats = dict(state["last_stats"])

    # -- helpers ----------------------------------------------------------------------------------
    def _tensor(self, obs: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device).to(self.dtype)

    def policy_entropy(self, obs: np.ndarray) -> float:
        """Entropy (nats) of the policy at ``obs`` (for inspection and tests)."""
        with torch.no_grad():
            return float(self.distribution.proba_distribution(self.policy(self._tensor(obs)).cpu().double()).entropy())

    def policy_mean(self, obs: np.ndarray) -> float:
        """Mean ``a / (a + b)`` of the policy at ``obs`` (for inspection and tests)."""
        with torch.no_grad():
            dist = self.distribution.proba_distribution(self.policy(self._tensor(obs)).cpu().double())
            return float(dist.mean().reshape(()))


def normalized_advantages(credits: np.ndarray) -> np.ndarray:
    """Credits centred and divided by their standard deviation (the paper's batch normalization).
    Identical credits carry no preference between the sampled alphas: all advantages are 0."""
    credits = np.asarray(credits, dtype=np.float64)
    std = credits.std(ddof=1) if credits.size > 1 else 0.0
    return (credits - credits.mean()) / (std + 1e-8) if std > 1e-12 else np.zeros_like(credits)
