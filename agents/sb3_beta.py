"""PPO with a Beta policy: an SB3 ``ActorCriticPolicy`` whose action law is :class:`BetaDistribution`.

SB3 has no Beta policy and its ``ActorCriticPolicy._build`` rejects unknown distributions, so this
subclass replaces the two methods that dispatch on the distribution type. Actions are sampled in
[0, 1] natively, so the env is used without the [-1, 1] rescaling: the action space must be
``Box(0, 1)``. SB3 clips actions to the Box before ``env.step`` (a no-op for Beta samples) and
stores the unclipped sample in its rollout buffer, whose log-density :meth:`BetaDistribution.log_prob`
evaluates with clamped bounds.

Importing this module imports Stable-Baselines3; :mod:`agents.sb3_agents` imports it lazily.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.preprocessing import get_action_dim
from torch import nn

from agents.distributions import BetaDistribution
from exposure_env.errors import ConfigError


class BetaActorCriticPolicy(ActorCriticPolicy):
    """Actor-critic MLP policy with independent Beta action laws on a ``Box(0, 1)`` action space."""

    def _build(self, lr_schedule) -> None:  # noqa: ANN001 - SB3's Schedule type
        space = self.action_space
        if not (isinstance(space, spaces.Box) and np.all(space.low == 0.0) and np.all(space.high == 1.0)):
            raise ConfigError("action_space of a Beta policy", "Box(0, 1, ...)", space,
                              "use the env's native action space, without symmetric_actions")
        self.action_dist = BetaDistribution(get_action_dim(space))
        self._build_mlp_extractor()
        self.action_net = self.action_dist.proba_distribution_net(self.mlp_extractor.latent_dim_pi)
        self.value_net = nn.Linear(self.mlp_extractor.latent_dim_vf, 1)
        if self.ortho_init:
            # SB3's gains: a small actor head starts every state near Beta(1 + ln 2, 1 + ln 2).
            gains = {self.mlp_extractor: np.sqrt(2), self.action_net: 0.01, self.value_net: 1.0}
            if self.share_features_extractor:
                gains[self.features_extractor] = np.sqrt(2)
            else:
                gains[self.pi_features_extractor] = np.sqrt(2)
                gains[self.vf_features_extractor] = np.sqrt(2)
            for module, gain in gains.items():
                module.apply(partial(self.init_weights, gain=gain))
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_action_dist_from_latent(self, latent_pi):  # noqa: ANN001, ANN201 - SB3 signature
        return self.action_dist.proba_distribution(self.action_net(latent_pi))
