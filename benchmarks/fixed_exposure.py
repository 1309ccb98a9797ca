"""Does partial teacher exposure help real self-distillation? A fixed-alpha sweep.

    python -m benchmarks.fixed_exposure --env ATESD-Qwen3-v0 --alphas 0 0.25 0.5 0.75 1 --seeds 3 \\
        --out benchmarks/results/fixed_exposure_qwen3.json

For every seed ``s`` and every fixed reveal ratio ``alpha`` the script runs one full episode of the
env (``env.reset(seed=s)``, then ``step(alpha)`` until the update budget is spent) and measures:

- the final Average@k of the student on held-out test problems (overall and per difficulty), with
  the evaluation sampler seeded by ``s`` only, so every alpha is evaluated on identical draws
  (common random numbers); also greedy accuracy;
- mismatch (top-1 teacher/student disagreement) and the 90th-percentile per-token loss, averaged
  over the run's updates;
- the no-training baseline: the same evaluation of the warm-start student.

The committed results (``benchmarks/results/fixed_exposure_qwen3.json``: default loss, clipped
forward KL; ``fixed_exposure_qwen3_reverse_kl.json``: ``--env-kwargs '{"loss": "reverse_kl"}'``)
were run with ``--total-updates 100 --final-eval-size 400 --workers 2`` to fit a shared 2-core CPU.

Means come with 95% t-intervals over seeds; ``improvement_*`` (vs the warm start) and
``vs_full_exposure_*`` (vs alpha = 1) are paired by seed. The claims of SPEC section 2 checked here: does OPSD
improve on the warm start, is the best alpha interior (not 1), does mismatch grow with alpha.
Works with any env id whose backend exposes ``evaluate`` (the Qwen3 backend); for other backends
the env's own ``score`` is used as the final score.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as scipy_stats


@dataclass(frozen=True)
class Args:
    """Command-line arguments (each field is a ``--flag``)."""

    env: str = "ATESD-Qwen3-v0"
    """Env id to sweep."""
    alphas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    """Fixed reveal ratios."""
    seeds: int = 3
    """Runs per alpha (seeds 0..seeds-1)."""
    out: str = "benchmarks/results/fixed_exposure_qwen3.json"
    """Result JSON (written atomically after every run); a PNG with the same stem is written too."""
    total_updates: int = 200
    """Student updates per run."""
    hold_window: int = 4
    """Updates per env step."""
    final_eval_size: int = 600
    """Test problems of the final evaluation."""
    final_eval_k: int = 8
    """Samples per problem of the final Average@k."""
    env_kwargs: str = "{}"
    """Extra env kwargs as a JSON object (e.g. '{"lr": 1e-4}')."""
    workers: int = 1
    """Runs executed in parallel processes (each with ``threads`` torch threads)."""
    threads: int = 1
    """torch intra-op threads per process (1 is fastest on a shared 2-core machine)."""
    resummarize: bool = False
    """Run nothing: recompute the summary and plot from the runs already stored in ``out``."""


def _env_kwargs(args: Args) -> dict[str, Any]:
    kwargs = dict(total_updates=args.total_updates, hold_window=args.hold_window)
    if args.env.startswith("ATESD-Qwen3"):
        kwargs["eval_every"] = 0  # the in-run score is not needed; the final evaluation is separate
    kwargs.update(json.loads(args.env_kwargs))
    return kwargs


def _final_eval(env, seed: int, args: Args) -> dict[str, Any]:
    backend = env.unwrapped.backend
    if not hasattr(backend, "evaluate"):
        return {"score": float(env.unwrapped._stats.score), "per_level": {}, "greedy": float("nan")}
    from distill_backend.evaluation import EvalConfig

    problems = backend.splits.test[: args.final_eval_size]
    config = EvalConfig(k=args.final_eval_k, temperature=backend.config.eval_temperature,
                        top_p=backend.config.eval_top_p, max_new_tokens=backend.config.max_new_tokens)
    sampled = backend.evaluate(problems, config, seed=100_003 + seed)
    greedy = backend.evaluate(problems, config, greedy=True, seed=0)
    return {"score": sampled.average_at_k, "pass_at_k": sampled.pass_at_k, "per_level": sampled.per_level_average,
            "greedy": greedy.average_at_k, "greedy_per_level": greedy.per_level_average,
            "mean_length": sampled.mean_length}


def run_one(args: Args, alpha: float | None, seed: int) -> dict[str, Any]:
    """One episode at fixed ``alpha`` (``None``: evaluate the untrained warm start only)."""
    import torch

    import exposure_env  # noqa: F401  (registers the env ids)
    import gymnasium as gym

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    env = gym.make(args.env, **_env_kwargs(args))
    env.reset(seed=seed)
    mismatch, tail, loss, diverged = [], [], [], ""
    if alpha is not None:
        terminated = False
        while not terminated:
            _, _, terminated, _, info = env.step(np.array([alpha], dtype=np.float32))
            if info["diverged"]:
                diverged = info["divergence_reason"]
                break
            mismatch.extend(info["trace"]["mismatch"])
            tail.extend(info["trace"]["loss_tail"])
            loss.extend(info["trace"]["loss"])
    result = _final_eval(env, seed, args)
    env.close()
    result.update(alpha=alpha, seed=seed, diverged=diverged, wall_time=time.perf_counter() - start,
                  mismatch=float(np.mean(mismatch)) if mismatch else float("nan"),
                  loss_tail=float(np.mean(tail)) if tail else float("nan"),
                  loss=float(np.mean(loss)) if loss else float("nan"))
    return result


def mean_ci(values: list[float]) -> tuple[float, list[float]]:
    """Mean and 95% t-interval (degenerate interval for a single value)."""
    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, [mean, mean]
    half = float(scipy_stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return mean, [mean - half, mean + half]


def summarize(args: Args, runs: list[dict[str, Any]]) -> dict[str, Any]:
    base = [r for r in runs if r["alpha"] is None]
    by_alpha = {a: [r for r in runs if r["alpha"] == a] for a in args.alphas}
    out: dict[str, Any] = {"args": asdict(args), "alphas": list(args.alphas), "runs": runs}
    for key, name in (("score", "final_score"), ("greedy", "final_greedy"), ("mismatch", "mismatch"),
                      ("loss_tail", "loss_tail")):
        stats = [mean_ci([r[key] for r in by_alpha[a]]) if by_alpha[a] else (float("nan"), []) for a in args.alphas]
        out[f"{name}_mean"] = [s[0] for s in stats]
        out[f"{name}_ci"] = [s[1] for s in stats]
    levels = sorted({lv for r in runs for lv in r["per_level"]})
    out["levels"] = levels
    out["final_score_per_level_mean"] = {
        lv: [mean_ci([r["per_level"][lv] for r in by_alpha[a]])[0] if by_alpha[a] else float("nan") for a in args.alphas]
        for lv in levels}
    out["final_score_per_level_ci"] = {
        lv: [mean_ci([r["per_level"][lv] for r in by_alpha[a]])[1] if by_alpha[a] else [] for a in args.alphas]
        for lv in levels}
    if base:
        out["baseline_score"], out["baseline_score_ci"] = mean_ci([r["score"] for r in base])
        out["baseline_greedy"] = mean_ci([r["greedy"] for r in base])[0]
        out["baseline_per_level"] = {lv: mean_ci([r["per_level"][lv] for r in base])[0] for lv in levels}
        # Paired (same seed = same evaluation draws) improvement over the warm start, per alpha.
        out["improvement_mean"], out["improvement_ci"] = [], []
        for a in args.alphas:
            pairs = [r["score"] - next(b["score"] for b in base if b["seed"] == r["seed"]) for r in by_alpha[a]
                     if any(b["seed"] == r["seed"] for b in base)]
            m, ci = mean_ci(pairs) if pairs else (float("nan"), [])
            out["improvement_mean"].append(m)
            out["improvement_ci"].append(ci)
    if 1.0 in args.alphas:
        # Paired (same seed) difference of each alpha against full exposure (plain OPSD).
        full = {r["seed"]: r["score"] for r in by_alpha[1.0]}
        out["vs_full_exposure_mean"], out["vs_full_exposure_ci"] = [], []
        for a in args.alphas:
            pairs = [r["score"] - full[r["seed"]] for r in by_alpha[a] if r["seed"] in full]
            m, ci = mean_ci(pairs) if pairs else (float("nan"), [])
            out["vs_full_exposure_mean"].append(m)
            out["vs_full_exposure_ci"].append(ci)
    finished = [m for m in out["final_score_mean"] if np.isfinite(m)]
    if finished:
        out["best_alpha"] = args.alphas[int(np.nanargmax(out["final_score_mean"]))]
        mism = [m for m in out["mismatch_mean"] if np.isfinite(m)]
        out["mismatch_monotone"] = bool(np.all(np.diff(mism) > 0)) if len(mism) > 1 else None
    return out


def _finite_or_none(value: Any) -> Any:
    """NaN/inf -> None (strict JSON), recursively."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def _write(path: Path, summary: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_finite_or_none(summary), indent=2, default=float))
    os.replace(tmp, path)


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    alphas = np.asarray(summary["alphas"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    mean = np.asarray(summary["final_score_mean"])
    ci = np.asarray([c if c else [np.nan, np.nan] for c in summary["final_score_ci"]])
    ax1.errorbar(alphas, mean, yerr=[mean - ci[:, 0], ci[:, 1] - mean], marker="o", capsize=4, label="overall")
    for lv in summary["levels"]:
        ax1.plot(alphas, summary["final_score_per_level_mean"][lv], marker=".", ls="--", alpha=0.7, label=lv)
    if "baseline_score" in summary:
        ax1.axhline(summary["baseline_score"], color="grey", ls=":", label="warm start (no training)")
    ax1.set(xlabel="fixed reveal ratio alpha", ylabel="final Average@k", title="final score (95% CI over seeds)")
    ax1.legend(fontsize=8)
    mm = np.asarray(summary["mismatch_mean"])
    mci = np.asarray([c if c else [np.nan, np.nan] for c in summary["mismatch_ci"]])
    ax2.errorbar(alphas, mm, yerr=[mm - mci[:, 0], mci[:, 1] - mm], marker="o", capsize=4, color="C3")
    ax2.set(xlabel="fixed reveal ratio alpha", ylabel="mean top-1 mismatch over the run", title="mismatch")
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def parse_args(argv: list[str] | None = None) -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = Args()
    for name, value in asdict(defaults).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, tuple):
            parser.add_argument(flag, type=float, nargs="+", default=value)
        elif isinstance(value, bool):
            parser.add_argument(flag, action="store_true")
        else:
            parser.add_argument(flag, type=type(value), default=value)
    values = vars(parser.parse_args(argv))
    return Args(**{**values, "alphas": tuple(values["alphas"])})


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    out = Path(args.out)
    if args.resummarize:
        stored = json.loads(out.read_text())
        saved = {k: v for k, v in stored["args"].items() if k in Args.__dataclass_fields__}
        args = Args(**{**saved, "alphas": tuple(saved["alphas"]), "out": args.out})
        summary = summarize(args, stored["runs"])
        summary["wall_time"] = stored.get("wall_time")
        _write(out, summary)
        plot(summary, out.with_suffix(".png"))
        return summary
    jobs: list[tuple[float | None, int]] = [(None, s) for s in range(args.seeds)]
    jobs += [(a, s) for s in range(args.seeds) for a in args.alphas]
    start = time.perf_counter()
    if args.workers > 1:  # build the (cached) warm start once, before parallel workers need it
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            pool.submit(run_one, dataclasses.replace(args, total_updates=1, final_eval_size=1), None, 0).result()
    runs: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_one, args, alpha, seed) for alpha, seed in jobs]
        for future in futures:
            runs.append(future.result())
            last = runs[-1]
            print(f"alpha={last['alpha']} seed={last['seed']}: score {last['score']:.3f} greedy {last['greedy']:.3f} "
                  f"mismatch {last['mismatch']:.3f} ({last['wall_time']:.0f}s)", flush=True)
            summary = summarize(args, runs)
            summary["wall_time"] = time.perf_counter() - start
            _write(out, summary)
    plot(summary, out.with_suffix(".png"))
    return summary


if __name__ == "__main__":
    main()
