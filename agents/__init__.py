"""agents: controllers that steer a distillation run through the teacher's reveal ratio.

- :mod:`agents.base`: the controller protocol (``begin_run`` / ``act`` / ``observe`` / ``end_run``
  / ``train`` / ``save`` / ``load``) and the records it exchanges.
- :mod:`agents.registry`: agent specs (``beta``, ``fixed:0.5``, ``ppo``...) -> controllers.
- :mod:`agents.beta_agent`: the ATESD Beta-policy controller (SPEC section 2), with
  :mod:`agents.credit` (lookahead credit) and :mod:`agents.distributions` (Beta in SB3's shape).
- :mod:`agents.baselines`: fixed (alpha = 1 is OPSD), linear, random, best-fixed.
- :mod:`agents.sb3_agents`, :mod:`agents.sb3_beta`: Stable-Baselines3 adapters (optional extra).
- :mod:`agents.runner`, :mod:`agents.compare`, :mod:`agents.cli`: the ``atesd`` command.

Agents see only the Gymnasium API and ``exposure_env``; they never import ``distill_backend``.
Importing this package is cheap: torch, SB3 and matplotlib load when a module needing them does.
"""

from agents.base import Controller, ControllerStats, RunContext, StatelessController, Transition
from agents.registry import SB3_NAMES, check_spec, make_controller

__all__ = [
    "Controller",
    "ControllerStats",
    "RunContext",
    "SB3_NAMES",
    "StatelessController",
    "Transition",
    "check_spec",
    "make_controller",
]
