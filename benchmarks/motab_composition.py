"""ATESD x MOTAB: does ``rollout="motab"`` improve self-distillation over plain OPSD at the same exposure?

    python -m benchmarks.motab_composition --seeds 3 --alphas 0.5 1.0 \\
        --reuse benchmarks/results/fixed_exposure_qwen3.json --out benchmarks/results/motab_composition.json

For every seed ``s`` and reveal ratio ``alpha``, two episodes of ``ATESD-Qwen3-v0`` run with
identical settings, the same seed and the same fixed exposure schedule (``alpha`` at every
decision); they differ only in ``rollout``: ``plain`` (OPSD on the student's whole rollouts) or
``motab`` (rollouts monitored by the exposure-conditioned teacher, cut at the first breach and
finished by that teacher; :mod:`distill_backend.motab.composition`). Each episode and its final
evaluation are :func:`benchmarks.fixed_exposure.run_one`, the same code as the fixed-exposure sweep,
with the evaluation draws seeded by ``s`` only (common random numbers), so ``motab - plain`` is
paired by seed. The untrained warm start is evaluated once per seed as the reference. ``--reuse``
takes the warm-start and plain runs from a fixed-exposure sweep made with the same settings
instead of running them again.

Reported per alpha: final Average@k of each arm (mean, 95% t-interval over seeds) and the paired
difference ``motab - plain`` with its interval.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exposure_env.commandline import add_dataclass_arguments, dataclass_from_namespace
from exposure_env.io import write_json

ROLLOUTS: tuple[str, ...] = ("plain", "motab")


@dataclass(frozen=True)
class Args:
    """Command-line arguments (each field is a ``--flag``)."""

    out: str = "benchmarks/results/motab_composition.json"
    """Result JSON (written atomically after every run)."""
    seeds: int = 3
    """Runs per arm and alpha (seeds 0..seeds-1)."""
    alphas: tuple[str, ...] = ("0.5", "1.0")
    """Fixed reveal ratios (the exposure schedule shared by both arms)."""
    total_updates: int | None = None
    """Student updates per run (None: the model's recipe, 400 for the tiny default)."""
    hold_window: int = 4
    """Updates per env step."""
    final_eval_size: int = 600
    """Test problems of the final evaluation."""
    final_eval_k: int = 8
    """Samples per problem of the final Average@k."""
    env_kwargs: str = "{}"
    """Env kwargs of both arms as a JSON object (e.g. '{"loss": "reverse_kl"}')."""
    motab_kwargs: str = "{}"
    """MotabConfig overrides of the motab arm as a JSON object (e.g. '{"value_mode": "result"}')."""
    threads: int = 1
    """torch intra-op threads."""
    workers: int = 1
    """Runs in parallel (processes)."""
    reuse: str = ""
    """A fixed-exposure sweep JSON (``benchmarks.fixed_exposure``) whose warm-start and fixed-alpha runs
    stand in for this study's ``warm_start`` and ``plain`` runs: they are the same function on the
    same seed, so they are reused only when the sweep's settings equal this study's (checked; a
    mismatch is an error)."""


def parse_args(argv: list[str] | None = None) -> Args:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add_dataclass_arguments(parser, Args)
    args = dataclass_from_namespace(Args, parser.parse_args(argv))
    try:
        alphas = [float(a) for a in args.alphas]
        json.loads(args.env_kwargs), json.loads(args.motab_kwargs)
    except ValueError as error:
        parser.error(str(error))
    if any(not 0.0 <= a <= 1.0 for a in alphas):
        parser.error(f"--alphas must lie in [0, 1]; received {args.alphas}")
    return args


def sweep_args(args: Args, rollout: str):
    """The fixed-exposure sweep's arguments for one arm."""
    from benchmarks.fixed_exposure import Args as SweepArgs

    env_kwargs = {**json.loads(args.env_kwargs), "rollout": rollout}
    if rollout == "motab":
        env_kwargs["motab"] = json.loads(args.motab_kwargs)
    return SweepArgs(env="ATESD-Qwen3-v0", alphas=tuple(float(a) for a in args.alphas), seeds=args.seeds,
                     total_updates=args.total_updates, hold_window=args.hold_window,
                     final_eval_size=args.final_eval_size, final_eval_k=args.final_eval_k,
                     env_kwargs=json.dumps(env_kwargs), threads=args.threads, out=args.out, no_traces=True)


def reused_runs(args: Args) -> list[dict[str, Any]]:
    """The ``warm_start`` and ``plain`` runs of ``args.reuse`` for this study's seeds and alphas."""
    from benchmarks.fixed_exposure import fixed_spec

    if not args.reuse:
        return []
    stored = json.loads(Path(args.reuse).read_text())
    mine = dataclasses.asdict(sweep_args(args, "plain"))
    theirs = stored.get("args", {})
    env_kwargs = {**json.loads(theirs.get("env_kwargs", "{}")), "rollout": "plain"}
    checks = {"env": theirs.get("env"), "hold_window": theirs.get("hold_window"),
              "final_eval_size": theirs.get("final_eval_size"), "final_eval_k": theirs.get("final_eval_k"),
              "total_updates": theirs.get("total_updates"), "env_kwargs": env_kwargs}
    wanted = {**{k: mine[k] for k in checks if k != "env_kwargs"}, "env_kwargs": json.loads(mine["env_kwargs"])}
    if checks != wanted:
        differ = {k: (checks[k], wanted[k]) for k in checks if checks[k] != wanted[k]}
        raise SystemExit(f"--reuse {args.reuse}: made with other settings (sweep, this study): {differ}")
    specs = {None: ("warm_start", None), **{fixed_spec(float(a)): ("plain", float(a)) for a in args.alphas}}
    runs = []
    for run in stored.get("runs", []):
        if run.get("spec") in specs and run.get("seed") in range(args.seeds) and run.get("score") is not None:
            rollout, alpha = specs[run["spec"]]
            runs.append({**run, "rollout": rollout, "alpha": alpha, "env_kwargs": mine["env_kwargs"],
                         "reused_from": args.reuse})
    return runs


def summarize(args: Args, runs: list[dict[str, Any]]) -> dict[str, Any]:
    from exposure_env.stats import mean_ci

    out: dict[str, Any] = {"args": dataclasses.asdict(args), "alphas": [float(a) for a in args.alphas], "runs": runs}
    base = [r["score"] for r in runs if r["rollout"] == "warm_start"]
    if base:
        out["warm_start_score_mean"], out["warm_start_score_ci"] = mean_ci(base)
    for alpha in out["alphas"]:
        arms = {rollout: {r["seed"]: r["score"] for r in runs if r["rollout"] == rollout and r["alpha"] == alpha}
                for rollout in ROLLOUTS}
        entry: dict[str, Any] = {}
        for rollout, scores in arms.items():
            if scores:
                entry[f"{rollout}_mean"], entry[f"{rollout}_ci"] = mean_ci(list(scores.values()))
        paired = [arms["motab"][s] - arms["plain"][s] for s in arms["motab"] if s in arms["plain"]]
        if paired:
            entry["motab_minus_plain_mean"], entry["motab_minus_plain_ci"] = mean_ci(paired)
            entry["paired_seeds"] = len(paired)
        out[f"alpha_{alpha:g}"] = entry
    return out


def _run(args: Args, rollout: str, alpha: float | None, seed: int) -> dict[str, Any]:
    from benchmarks.fixed_exposure import fixed_spec, run_one

    sweep = sweep_args(args, "plain" if rollout == "warm_start" else rollout)
    result = run_one(sweep, None if alpha is None else fixed_spec(alpha), seed)
    result.update(rollout=rollout, alpha=alpha, env_kwargs=sweep.env_kwargs)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from benchmarks.fixed_exposure import in_processes

    args = parse_args(argv)
    out = Path(args.out)
    start = time.perf_counter()
    runs = reused_runs(args)
    done = {(r["rollout"], r["alpha"], r["seed"]) for r in runs}
    jobs = [(rollout, alpha, seed) for seed in range(args.seeds)
            for rollout, alpha in [("warm_start", None)] + [(r, float(a)) for a in args.alphas for r in ROLLOUTS]]
    jobs = [job for job in jobs if job not in done]
    summary = summarize(args, runs)
    for result in in_processes(_run, [(args, *job) for job in jobs], args.workers):
        runs.append(result)
        print(f"seed {result['seed']} {result['rollout']:10s} alpha={result['alpha']}: score "
              f"{result['score']:.3f} ({result['wall_time']:.0f}s)", flush=True)
        summary = summarize(args, runs)
        summary["wall_time"] = time.perf_counter() - start
        write_json(out, summary)
    summary["wall_time"] = time.perf_counter() - start
    write_json(out, summary)
    return summary


if __name__ == "__main__":
    main()
