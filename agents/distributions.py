"""A Beta distribution over actions in [0, 1], in Stable-Baselines3's ``Distribution`` shape.

SB3 ships Gaussian, squashed-Gaussian, categorical and Bernoulli action distributions but no Beta.
A Beta is the natural law of a reveal ratio: it lives on [0, 1] without squashing or clipping, and
with both concentrations above 1 (``a, b = 1 + softplus(raw)``) it is unimodal, as ATESD's
controller requires (docs/methods.md, section 2).

The class follows SB3's method set (``proba_distribution_net``, ``proba_distribution``,
``log_prob``, ``entropy``, ``sample``, ``mode``, ``get_actions``, ``actions_from_params``,
``log_prob_from_params``) by duck typing, so this module needs only torch: the ATESD agent uses it
directly and :mod:`agents.sb3_beta` plugs it into a PPO policy. It knows nothing about envs.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Beta
from torch.nn import functional as F

# Actions are clamped this far inside (0, 1) before their log-density is taken: a float32 sample
# can round to exactly 0 or 1, where the Beta log-density is -inf (a > 1) and would poison a batch.
ACTION_EPS = 1e-6


def concentrations(raw: torch.Tensor, floor: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Split raw network outputs ``(..., 2 * d)`` into ``(a, b) = floor + softplus(raw)``."""
    raw_a, raw_b = torch.chunk(raw, 2, dim=-1)
    return floor + F.softplus(raw_a), floor + F.softplus(raw_b)


def sample_beta(a: torch.Tensor, b: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``Beta(a, b)`` as ``X / (X + Y)`` with ``X ~ Gamma(a)``, ``Y ~ Gamma(b)``.

    Unlike ``torch.distributions.Beta.sample`` this takes an explicit generator, so a seeded
    controller never touches the global RNG.
    """
    x = torch._standard_gamma(a, generator=generator)
    y = torch._standard_gamma(b, generator=generator)
    return x / (x + y)


class BetaDistribution:
    """Independent Beta distributions, one per action dimension, on [0, 1].

    :param action_dim: number of action dimensions (1 for a reveal ratio).
    :param concentration_floor: lower bound of both concentrations; 1 makes the law unimodal.
    """

    def __init__(self, action_dim: int, concentration_floor: float = 1.0) -> None:
        self.action_dim = action_dim
        self.concentration_floor = concentration_floor
        self.distribution: Beta | None = None

    # -- SB3 method set ----------------------------------------------------------------------
    def proba_distribution_net(self, latent_dim: int) -> nn.Module:
        """The layer mapping a latent vector to the raw ``(a, b)`` parameters (``2 * action_dim``)."""
        return nn.Linear(latent_dim, 2 * self.action_dim)

    def proba_distribution(self, raw: torch.Tensor) -> "BetaDistribution":
        """Set the parameters from raw network outputs; returns ``self`` (SB3 convention)."""
        a, b = concentrations(raw, self.concentration_floor)
        self.distribution = Beta(a, b, validate_args=False)
        return self

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """Log-density of ``actions`` (clamped into ``[eps, 1 - eps]``), summed over action dims."""
        clamped = actions.clamp(ACTION_EPS, 1.0 - ACTION_EPS)
        return _sum_dims(self._dist().log_prob(clamped))

    def entropy(self) -> torch.Tensor:
        """Analytic differential entropy, summed over action dims (negative for a, b > 1)."""
        return _sum_dims(self._dist().entropy())

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A sample in [0, 1]; pass a generator for reproducible draws off the global RNG."""
        dist = self._dist()
        with torch.no_grad():
            return sample_beta(dist.concentration1, dist.concentration0, generator)

    def mode(self) -> torch.Tensor:
        """``(a - 1) / (a + b - 2)``, the most likely action (well defined for a, b > 1)."""
        dist = self._dist()
        a, b = dist.concentration1, dist.concentration0
        denominator = (a + b - 2.0).clamp_min(1e-8)
        # a = b = 1 (only reachable with floor 1 and raw -> -inf) is uniform: report its mean.
        return torch.where(a + b - 2.0 > 1e-8, (a - 1.0) / denominator, a / (a + b))

    def mean(self) -> torch.Tensor:
        """``a / (a + b)``."""
        return self._dist().mean

    def get_actions(self, deterministic: bool = False) -> torch.Tensor:
        return self.mode() if deterministic else self.sample()

    def actions_from_params(self, raw: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        self.proba_distribution(raw)
        return self.get_actions(deterministic=deterministic)

    def log_prob_from_params(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        actions = self.actions_from_params(raw)
        return actions, self.log_prob(actions)

    # -- helpers ------------------------------------------------------------------------------
    def _dist(self) -> Beta:
        if self.distribution is None:
            raise RuntimeError("call proba_distribution(raw) before using the distribution")
        return self.distribution


def _sum_dims(values: torch.Tensor) -> torch.Tensor:
    """Sum independent action dims like SB3's ``sum_independent_dims``: (n, d) -> (n,)."""
    return values.sum(dim=-1) if values.dim() > 1 else values.sum()
