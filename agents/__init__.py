"""agents: controllers that steer a distillation run through the teacher's reveal ratio.

Modules, each importing only the ones above it in this list (``tests/test_imports.py`` checks that
the import graph has no cycle):

- :mod:`agents.base`: the controller protocol (``begin_run`` / ``act`` / ``observe`` / ``end_run``
  / ``train`` / ``save`` / ``load``) and the records it exchanges.
- :mod:`agents.episode`: the episode loop, :func:`~agents.episode.rollout`.
- :mod:`agents.records`: the result records of a run and of a comparison.
- :mod:`agents.distributions`: a Beta distribution in SB3's shape (torch).
- :mod:`agents.baselines`: fixed (alpha = 1 is OPSD), linear, step, random, best-fixed.
- :mod:`agents.beta_agent`: the ATESD Beta-policy controller, credited by :mod:`exposure_env.credit`.
- :mod:`agents.sb3_agents`, :mod:`agents.sb3_beta`: Stable-Baselines3 adapters (optional extra).
- :mod:`agents.registry`: agent specs (``beta``, ``fixed:0.5``, ``ppo``...) -> controllers.
- :mod:`agents.plots`, :mod:`agents.runner`, :mod:`agents.compare`, :mod:`agents.cli`: the
  ``atesd`` command.

Agents see only the Gymnasium API and ``exposure_env``; they never import ``distill_backend``
(except ``atesd warmstart``, which builds the real backend's warm start). Importing this package is
cheap: torch, SB3 and matplotlib load when a module or a spec needing them is used.
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
