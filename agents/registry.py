"""Agent specs: strings that name a controller, for the CLI and the benchmarks.

==========================  ==============================================================
spec                        controller
==========================  ==============================================================
``beta``                    ATESD Beta-policy agent, full credit (``discounted+gt``, L=16)
``beta:MODE``               the same with reward mode ``immediate`` / ``discounted`` /
                            ``discounted+gt``; ``immediate`` credits the decision's own
                            window only (the paper's one-step ablation)
``beta:MODE:L``             explicit lookahead L in updates (``window`` = the hold window)
``beta-carry[:MODE[:L]]``   the same agent, first trained online over ``train_episodes`` runs
                            on other seeds (weights carried over), then run online
``beta-pretrained:PATH``    the ATESD policy pre-trained on surrogate runs by
                            ``python -m agents.pretrain --out PATH``, frozen, acting at its
                            policy mean
``beta-pretrained:PATH:online``  the same policy, sampling and learning online in the run
                            (with the credit settings it was pre-trained with)
``ALGO-pretrained:PATH``    an SB3 model pre-trained on the batched surrogate (``ppo``,
                            ``sac``, ``a2c``, ``td3``, ``ppo-beta``), acting deterministically
``fixed:ALPHA``             constant reveal ratio; ``fixed:1.0`` is OPSD
``linear:START:END``        linear schedule over the run's progress
``step:BEFORE:AFTER[:AT]``  BEFORE until progress AT (default 0.5), then AFTER
``random``                  uniform random reveal ratio every decision
``best-fixed:PATH``         constant at the best alpha of a fixed-exposure sweep JSON
``ppo`` ``sac`` ``a2c``     Stable-Baselines3 algorithms on actions rescaled to [-1, 1]
``td3`` ``ppo-beta``        ... and PPO with a Beta policy on [0, 1] (needs the ``sb3`` extra)
==========================  ==============================================================

Heavy modules (torch for ``beta``, SB3) are imported only when a spec that needs them is built,
so naming and checking specs, and the baselines, stay torch-free.

Some specs read a file whose content decides what the controller does (``best-fixed:PATH`` a
sweep, ``*-pretrained:PATH`` a checkpoint). :func:`spec_inputs` says what they read, so a run
records it and a resumed or reused run can be checked against the file as it is now.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from agents.base import Controller
from agents.baselines import (
    BestFixedController,
    FixedController,
    LinearController,
    RandomController,
    StepController,
    best_fixed_alpha,
)
from agents.pretrained import checkpoint_path, load_pretrained, read_manifest
from exposure_env.errors import ConfigError
from exposure_env.rewards import REWARD_MODES

SB3_NAMES: tuple[str, ...] = ("ppo", "sac", "a2c", "td3", "ppo-beta")
SPEC_FORMS: tuple[str, ...] = (
    "beta", "beta:MODE", "beta:MODE:L", "beta-carry[:MODE[:L]]", "beta-pretrained:PATH[:online]",
    "ALGO-pretrained:PATH", "fixed:ALPHA", "linear:START:END", "step:BEFORE:AFTER[:AT]", "random", "best-fixed:PATH",
) + SB3_NAMES
ALLOWED = "one of " + ", ".join(SPEC_FORMS) + f" (MODE in {', '.join(REWARD_MODES)}; ALPHA, START, END, BEFORE, AFTER, AT in [0, 1])"


FAMILIES: tuple[str, ...] = ("fixed", "schedules", "learned")
"""How a comparison groups agents: constant reveal ratios, hand-made schedules, learned controllers."""


def agent_family(spec: str) -> str:
    """The family of an agent spec (one of :data:`FAMILIES`)."""
    name = str(spec).strip().partition(":")[0]
    if name in ("fixed", "best-fixed"):
        return "fixed"
    if name in ("linear", "step", "random"):
        return "schedules"
    return "learned"


def make_controller(spec: str, seed: int = 0, **overrides: Any) -> Controller:
    """Build the controller a spec names. ``overrides`` go to the agent's config (beta / SB3 only).

    Raises :class:`~exposure_env.errors.ConfigError` naming the spec, the allowed forms and the
    value received when the spec is malformed.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError("agent spec", ALLOWED, spec)
    name, _, rest = spec.strip().partition(":")
    args = rest.split(":") if rest else []
    try:
        return _build(spec, name, args, seed, overrides)
    except ConfigError as exc:
        if exc.field.startswith("agent spec"):
            raise
        raise ConfigError(f"agent spec {spec!r}: {exc.field}", exc.allowed, exc.received) from exc


def spec_inputs(spec: str) -> dict[str, Any]:
    """What ``spec`` reads from outside the spec string, as it is now: ``best-fixed:PATH`` the best
    alpha of its sweep file (``{"best_fixed_alpha": 0.75}``), ``*-pretrained:PATH[:online]`` the
    SHA-256 of its checkpoint file; ``{}`` for every other spec. Cheap (no torch, no model built)."""
    name, _, rest = str(spec).strip().partition(":")
    args = rest.split(":") if rest else []
    if name == "best-fixed" and args:
        return {"best_fixed_alpha": best_fixed_alpha(":".join(args))}
    if name.endswith("-pretrained") and args:
        path, _ = _pretrained_path(args)
        file = checkpoint_path(path, read_manifest(path))
        try:
            digest = hashlib.sha256(file.read_bytes()).hexdigest()
        except OSError as exc:
            raise ConfigError(f"agent spec {spec!r}: checkpoint", "a readable checkpoint file", str(file),
                              str(exc)) from exc
        return {"checkpoint_sha256": digest}
    return {}


def check_spec(spec: str) -> None:
    """Raise :class:`ConfigError` if ``spec`` is malformed, without importing SB3 for SB3 specs."""
    name, _, rest = str(spec).strip().partition(":")
    if name in SB3_NAMES and not rest:
        return
    make_controller(spec)


def _build(spec: str, name: str, args: list[str], seed: int, overrides: dict[str, Any]) -> Controller:
    if name == "fixed" and len(args) == 1:
        return FixedController(_number(spec, "ALPHA", args[0]))
    if name == "linear" and len(args) == 2:
        return LinearController(_number(spec, "START", args[0]), _number(spec, "END", args[1]))
    if name == "step" and len(args) in (2, 3):
        values = [_number(spec, what, text) for what, text in zip(("BEFORE", "AFTER", "AT"), args)]
        return StepController(*values)
    if name == "random" and not args:
        return RandomController()
    if name == "best-fixed" and len(args) >= 1:
        controller = BestFixedController(":".join(args))  # a path may contain ':'
        controller.name = spec
        return controller
    if name in ("beta", "beta-carry") and len(args) <= 2:
        return _beta(spec, args, seed, overrides, carry_over=name == "beta-carry")
    if name.endswith("-pretrained") and name.removesuffix("-pretrained") in ("beta",) + SB3_NAMES and args:
        path, online = _pretrained_path(args)
        if not path:
            raise ConfigError(f"agent spec {spec!r}: PATH", "a folder written by python -m agents.pretrain", path)
        return load_pretrained(path, name.removesuffix("-pretrained"), seed=seed, online=online, name=spec)
    if name in SB3_NAMES and not args:
        from agents.sb3_agents import SB3AgentConfig, SB3Controller  # SB3 is an optional extra

        return SB3Controller(SB3AgentConfig(algo=name, **overrides), seed=seed)
    raise ConfigError("agent spec", ALLOWED, spec)


def _pretrained_path(args: list[str]) -> tuple[str, bool]:
    """``PATH`` and whether ``:online`` follows it, from the parts of ``*-pretrained:PATH[:online]``
    (a path may contain ':')."""
    online = args[-1] == "online"
    return ":".join(args[:-1] if online else args), online


def _beta(spec: str, args: list[str], seed: int, overrides: dict[str, Any], carry_over: bool) -> Controller:
    from agents.beta_agent import ATESD_CREDIT, BetaAgent, BetaAgentConfig  # imports torch

    credit: dict[str, Any] = {}
    if args:
        if args[0] not in REWARD_MODES:
            raise ConfigError(f"agent spec {spec!r}: MODE", "one of " + ", ".join(REWARD_MODES), args[0])
        credit["reward_mode"] = args[0]
        if args[0] == "immediate":
            credit["lookahead"] = None  # the one-step ablation: credit the own window only
    if len(args) == 2:
        if args[1] == "window":
            credit["lookahead"] = None
        else:
            value = _number(spec, "L", args[1])
            credit["lookahead"] = int(value) if value.is_integer() else value  # non-integers fail validation
    fields: dict[str, Any] = {"credit": dataclasses.replace(ATESD_CREDIT, **credit)} if credit else {}
    fields.update(overrides)
    return BetaAgent(BetaAgentConfig(**fields), seed=seed, name=spec, carry_over=carry_over)


def _number(spec: str, what: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"agent spec {spec!r}: {what}", "a number", text) from None
