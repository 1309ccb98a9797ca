"""Does partial teacher exposure help real self-distillation? A fixed-alpha sweep on the real backend.

    python -m benchmarks.fixed_exposure --seeds 5 --schedules random linear:0:1 step:0.25:1 \\
        --out benchmarks/results/fixed_exposure_qwen3.json

For every seed ``s`` and every fixed reveal ratio ``alpha`` (and every extra agent spec given in
``--schedules``) the script runs one full episode of the env through the product's own episode loop
(:func:`agents.runner.rollout` with the controller the spec names), then measures:

- the final Average@k of the student on held-out test problems, overall and per difficulty level,
  with the evaluation sampler seeded by ``s`` only, so every alpha is evaluated on identical draws
  (common random numbers), plus greedy accuracy;
- mismatch (top-1 teacher/student disagreement), the loss tail (90th percentile of the per-token
  loss) and the teacher's reference log-prob ``G_gt``, averaged over the run's updates;
- the no-training baseline: the same evaluation of the warm-start student.

Every run's decision log (the same JSON lines ``atesd run`` writes, with each window's per-update
trace) is kept next to the result as ``<out stem>_traces/<spec>_seed<s>.jsonl.gz``: the trace set a
surrogate is calibrated on. The result JSON is rewritten (atomically) after every run, and a
repeated command with the same arguments skips the runs it already holds, so an interrupted sweep
resumes.

Summary (95% t-intervals over seeds): per alpha, the final score, its paired difference against
the warm start and against alpha = 1 (same seed), per-level scores, mismatch, loss tail, ``G_gt``;
for each claim of the ATESD paper whether it reproduces here (full exposure is not the best fixed
ratio; mismatch grows with alpha; easy levels prefer more exposure than hard ones). The checks
that rule out set-up artifacts are in the output too: the warm start's teacher-role accuracy and
reference NLL at every reveal ratio (the teacher must read every exposure it is shown), the
update budget every run actually spent, and ``G_gt`` by alpha (the statistic must vary).
"""

from __future__ import annotations

import gzip
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from exposure_env.commandline import parse_dataclass
from exposure_env.io import atomic_write, write_json
from exposure_env.stats import mean_ci

# Args fields that do not change what a run computes (ignored when matching stored runs).
_NON_RESULT_FIELDS = ("workers", "threads", "resummarize", "out", "schedules", "alphas", "seeds", "seed_offset",
                      "no_traces")


@dataclass(frozen=True)
class Args:
    """Command-line arguments (each field is a ``--flag``)."""

    env: str = "ATESD-Qwen3-v0"
    """Env id to sweep."""
    alphas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    """Fixed reveal ratios."""
    schedules: tuple[str, ...] = ()
    """Extra agent specs run on the same seeds (e.g. random linear:0:1 step:0.25:1), summarized by spec."""
    seeds: int = 5
    """Runs per alpha (seeds seed_offset .. seed_offset + seeds - 1)."""
    seed_offset: int = 0
    """First seed."""
    out: str = "benchmarks/results/fixed_exposure_qwen3.json"
    """Result JSON (rewritten atomically after every run); a PNG and a traces folder with the same stem."""
    total_updates: int | None = None
    """Student updates per run, the same budget for every alpha and schedule (None: the env's
    default, for ATESD-Qwen3-v0 the model recipe's)."""
    hold_window: int = 4
    """Updates per env step."""
    eval_every: int = 1
    """In-run evaluation (the env's ``score``) every this many windows: the score trajectory the
    surrogate calibration fits. 0: only at reset (the final evaluation below is separate)."""
    final_eval_size: int = 600
    """Test problems of the final evaluation."""
    final_eval_k: int = 8
    """Samples per problem of the final Average@k."""
    env_kwargs: str = "{}"
    """Extra env kwargs as a JSON object (e.g. '{"lr": 1e-4}')."""
    workers: int = 2
    """Runs executed in parallel processes (each with ``threads`` torch threads)."""
    threads: int = 1
    """torch intra-op threads per process (1 is fastest on a shared 2-core machine)."""
    resummarize: bool = False
    """Run nothing: recompute the summary and plot from the runs already stored in ``out``."""
    no_traces: bool = False
    """Do not keep the runs' decision logs (``<out stem>_traces/``)."""


def _env_kwargs(args: Args) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(hold_window=args.hold_window)
    if args.total_updates is not None:
        kwargs["total_updates"] = args.total_updates
    if args.env.startswith("ATESD-Qwen3"):
        kwargs["eval_every"] = args.eval_every
    kwargs.update(json.loads(args.env_kwargs))
    return kwargs


def in_processes(fn: Callable[..., Any], calls: list[tuple], workers: int) -> Iterator[Any]:
    """``fn(*call)`` for every call in ``workers`` fresh (spawned) processes; results as they finish."""
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for future in as_completed([pool.submit(fn, *call) for call in calls]):
            yield future.result()


def fixed_spec(alpha: float) -> str:
    """The agent spec of a fixed reveal ratio."""
    return f"fixed:{alpha:g}"


def traces_dir(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + "_traces")


def _final_eval(env, seed: int, args: Args, latest_score: float) -> dict[str, Any]:
    """The real backend's final Average@k on the test split; a backend without ``evaluate`` (the
    surrogate) reports its latest score, the noise-free expected accuracy."""
    backend = env.unwrapped.backend
    if not hasattr(backend, "evaluate"):
        return {"score": float(latest_score), "per_level": {}, "greedy": float("nan")}
    from distill_backend.evaluation import EvalConfig

    problems = backend.splits.test[: args.final_eval_size]
    config = EvalConfig(k=args.final_eval_k, temperature=backend.config.eval_temperature,
                        top_p=backend.config.eval_top_p, max_new_tokens=backend.config.max_new_tokens)
    sampled = backend.evaluate(problems, config, seed=100_003 + seed)
    greedy = backend.evaluate(problems, config, greedy=True, seed=0)
    return {"score": sampled.average_at_k, "pass_at_k": sampled.pass_at_k, "per_level": sampled.per_level_average,
            "greedy": greedy.average_at_k, "greedy_per_level": greedy.per_level_average,
            "mean_length": sampled.mean_length}


def run_one(args: Args, spec: str | None, seed: int) -> dict[str, Any]:
    """One episode under the controller ``spec`` (``None``: evaluate the untrained warm start only)."""
    import gymnasium as gym
    import torch

    import exposure_env  # noqa: F401  (registers the env ids)
    from agents.registry import make_controller
    from agents.runner import decision_line, rollout

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    env = gym.make(args.env, **_env_kwargs(args))
    sums = {"mismatch": [], "loss_tail": [], "loss": [], "teacher_ref_logprob": []}
    result: dict[str, Any] = {"spec": spec, "seed": seed, "diverged": "", "updates_done": 0}
    if spec is None:
        latest_score = env.reset(seed=seed)[1]["score"]
    else:
        lines: list[str] = []

        def log(record) -> None:
            line = decision_line(record)
            lines.append(json.dumps(line))
            for key, values in sums.items():
                values.extend(line["trace"].get(key, []))
            if record.info.get("diverged"):
                result["diverged"] = record.info.get("divergence_reason", "diverged")
            result["updates_done"] = int(record.info["updates_done"])

        episode = rollout(env, make_controller(spec, seed=seed), seed, on_step=log)
        result["initial_score"], latest_score = episode.initial_score, episode.final_score
        result["mean_alpha"] = float(np.mean(episode.alphas))
        result["trace_file"] = None if args.no_traces else _write_trace(args, spec, seed, lines)
    result.update(_final_eval(env, seed, args, latest_score))
    env.close()
    result.update({key: float(np.mean(v)) if v else float("nan") for key, v in sums.items()})
    result["mismatch_early"] = early_mean(sums["mismatch"])
    result["wall_time"] = time.perf_counter() - start
    return result


EARLY_SHARE = 0.25
"""The early part of a run: its first quarter of updates, before a successful run's student has moved
(the tiny default takes off after ~170-250 of 400), so every alpha is compared on the same student."""


def early_mean(values: list[float]) -> float:
    """Mean over the first ``EARLY_SHARE`` of a run's per-update values."""
    head = values[: max(1, int(len(values) * EARLY_SHARE))]
    return float(np.mean(head)) if values else float("nan")


def _early_mismatch(run: dict[str, Any]) -> float:
    """A run's early mismatch: stored, or read back from its trace file (runs stored before the field)."""
    if "mismatch_early" in run:
        return run["mismatch_early"]
    path = Path(run.get("trace_file") or "")
    if not path.is_file():
        return float("nan")
    values: list[float] = []
    for line in gzip.decompress(path.read_bytes()).decode().splitlines():
        if line.strip():
            values.extend(json.loads(line)["trace"].get("mismatch", []))
    return early_mean(values)


def _write_trace(args: Args, spec: str, seed: int, lines: list[str]) -> str:
    folder = traces_dir(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in spec)
    path = folder / f"{safe}_seed{seed}.jsonl.gz"
    atomic_write(path, lambda tmp: tmp.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)))
    return path.as_posix()


def _paired(runs: list[dict], reference: dict[int, float], key: str = "score") -> tuple[float, list[float]]:
    return mean_ci([r[key] - reference[r["seed"]] for r in runs if r["seed"] in reference])


def _level_best(summary: dict[str, Any], level: str, alphas: list[float]) -> float | None:
    means = summary["final_score_per_level_mean"][level]
    finite = [(m, a) for a, m in zip(alphas, means) if m is not None and np.isfinite(m)]
    return max(finite)[1] if finite else None


def summarize(args: Args, runs: list[dict[str, Any]], warmstart: dict[str, Any] | None = None) -> dict[str, Any]:
    alphas = list(args.alphas)
    base = [r for r in runs if r["spec"] is None]
    by_alpha = {a: [r for r in runs if r["spec"] == fixed_spec(a)] for a in alphas}
    out: dict[str, Any] = {"args": asdict(args), "alphas": alphas, "warmstart": warmstart, "runs": runs}
    out["seeds_per_alpha"] = [len(by_alpha[a]) for a in alphas]  # what ran, whatever the last command asked
    for key, name in (("score", "final_score"), ("greedy", "final_greedy"), ("mismatch", "mismatch"),
                      ("loss_tail", "loss_tail"), ("loss", "loss"), ("teacher_ref_logprob", "g_gt")):
        stats = [mean_ci([r[key] for r in by_alpha[a]]) for a in alphas]
        out[f"{name}_mean"] = [s[0] for s in stats]
        out[f"{name}_ci"] = [s[1] for s in stats]
    early = [mean_ci([_early_mismatch(r) for r in by_alpha[a]]) for a in alphas]
    out["mismatch_early_mean"], out["mismatch_early_ci"] = [e[0] for e in early], [e[1] for e in early]
    levels = sorted({lv for r in runs for lv in r.get("per_level", {})})
    out["levels"] = levels
    out["final_score_per_level_mean"], out["final_score_per_level_ci"] = {}, {}
    for lv in levels:
        stats = [mean_ci([r["per_level"][lv] for r in by_alpha[a]]) for a in alphas]
        out["final_score_per_level_mean"][lv] = [s[0] for s in stats]
        out["final_score_per_level_ci"][lv] = [s[1] for s in stats]
    out["updates_done"] = sorted({r["updates_done"] for r in runs if r["spec"] is not None})
    out["diverged_runs"] = [(r["spec"], r["seed"], r["diverged"]) for r in runs if r.get("diverged")]
    if base:
        out["baseline_score"], out["baseline_score_ci"] = mean_ci([r["score"] for r in base])
        out["baseline_greedy"] = mean_ci([r["greedy"] for r in base])[0]
        out["baseline_per_level"] = {lv: mean_ci([r["per_level"][lv] for r in base])[0] for lv in levels}
        reference = {r["seed"]: r["score"] for r in base}
        paired = [_paired(by_alpha[a], reference) for a in alphas]
        out["improvement_mean"] = [p[0] for p in paired]
        out["improvement_ci"] = [p[1] for p in paired]
    if 1.0 in alphas:
        full = {r["seed"]: r["score"] for r in by_alpha[1.0]}
        paired = [_paired(by_alpha[a], full) for a in alphas]
        out["vs_full_exposure_mean"] = [p[0] for p in paired]
        out["vs_full_exposure_ci"] = [p[1] for p in paired]
        for lv in levels:
            full_lv = {r["seed"]: r["per_level"][lv] for r in by_alpha[1.0]}
            out.setdefault("vs_full_exposure_per_level_mean", {})[lv] = [
                mean_ci([r["per_level"][lv] - full_lv[r["seed"]] for r in by_alpha[a] if r["seed"] in full_lv])[0]
                for a in alphas]
    schedules = {}
    for spec in args.schedules:
        rows = [r for r in runs if r["spec"] == spec]
        if not rows:
            continue
        score, ci = mean_ci([r["score"] for r in rows])
        entry = {"n": len(rows), "final_score_mean": score, "final_score_ci": ci,
                 "mean_alpha": mean_ci([r["mean_alpha"] for r in rows])[0]}
        if 1.0 in alphas:
            entry["vs_full_exposure_mean"], entry["vs_full_exposure_ci"] = _paired(
                rows, {r["seed"]: r["score"] for r in by_alpha[1.0]})
        schedules[spec] = entry
    out["schedules"] = schedules
    out["claims"] = _claims(out, alphas, by_alpha)
    return out


def _claims(out: dict[str, Any], alphas: list[float], by_alpha: dict[float, list]) -> dict[str, Any]:
    """For each claim of the ATESD paper: does it reproduce here, with the numbers that decide it."""
    claims: dict[str, Any] = {}
    means = out["final_score_mean"]
    finite = [(m, a) for a, m in zip(alphas, means) if np.isfinite(m)]
    if not finite:
        return claims
    best = max(finite)[1]
    out["best_alpha"] = best
    if 1.0 in alphas and "vs_full_exposure_ci" in out:
        diff, ci = out["vs_full_exposure_mean"][alphas.index(best)], out["vs_full_exposure_ci"][alphas.index(best)]
        if best == 1.0:
            verdict = "does not reproduce: full exposure scores best"
        elif ci and ci[0] > 0:
            verdict = "reproduces: the best fixed alpha beats full exposure, paired CI above 0"
        else:
            verdict = "inconclusive: the best fixed alpha is below 1 but its paired CI includes 0"
        claims["full_exposure_not_best"] = {"best_alpha": best, "best_minus_full": diff, "ci": ci,
                                            "verdict": verdict}
    # The whole-run mean mixes student states (a run that takes off ends with a student that agrees with
    # its teacher), so the claim is decided on the early part of the runs, where every alpha trains the
    # same student; both are reported.
    key = "mismatch_early" if np.isfinite(out["mismatch_early_mean"]).sum() > 1 else "mismatch"
    mism = [m for m in out[f"{key}_mean"] if np.isfinite(m)]
    if len(mism) > 1:
        per_seed = []
        seeds = sorted({r["seed"] for a in alphas for r in by_alpha[a]})
        for seed in seeds:
            row = [next(((_early_mismatch(r) if key == "mismatch_early" else r["mismatch"])
                         for r in by_alpha[a] if r["seed"] == seed), np.nan) for a in alphas]
            if np.all(np.isfinite(row)):
                per_seed.append(bool(np.all(np.diff(row) > 0)))
        monotone = bool(np.all(np.diff(mism) > 0))
        non_decreasing = bool(np.all(np.diff(mism) >= -0.05 * np.ptp(mism)))
        verdict = ("reproduces" if monotone else
                   "reproduces up to a plateau: increasing but for a step within 5% of the range" if non_decreasing
                   else "does not reproduce: mismatch means are not increasing in alpha")
        claims["mismatch_grows_with_alpha"] = {
            "measured_on": key, "means": out[f"{key}_mean"], "whole_run_means": out["mismatch_mean"],
            "monotone_in_means": monotone, "share_of_seeds_monotone": float(np.mean(per_seed)) if per_seed else None,
            "verdict": verdict}
    levels = out["levels"]
    if len(levels) >= 2:
        order = [lv for lv in ("easy", "medium", "hard") if lv in levels] or levels
        best_by_level = {lv: _level_best(out, lv, alphas) for lv in order}
        easy, hard = best_by_level[order[0]], best_by_level[order[-1]]
        if easy is None or hard is None:
            verdict = "undetermined"
        elif easy > hard:
            verdict = f"reproduces: {order[0]} prefers alpha {easy:g}, {order[-1]} prefers {hard:g}"
        else:
            verdict = f"does not reproduce: {order[0]} prefers alpha {easy:g}, {order[-1]} prefers {hard:g}"
        claims["easy_prefers_more_exposure_than_hard"] = {"best_alpha_by_level": best_by_level, "verdict": verdict}
    return claims


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def bars(key: str) -> tuple[np.ndarray, np.ndarray]:
        mean = np.asarray([np.nan if m is None else m for m in summary[f"{key}_mean"]], dtype=float)
        ci = np.asarray([c if c else [np.nan, np.nan] for c in summary[f"{key}_ci"]], dtype=float)
        return mean, np.abs(np.stack([mean - ci[:, 0], ci[:, 1] - mean]))

    alphas = np.asarray(summary["alphas"])
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(14, 4))
    mean, err = bars("final_score")
    ax1.errorbar(alphas, mean, yerr=err, marker="o", capsize=4, label="overall")
    for lv in summary["levels"]:
        ax1.plot(alphas, summary["final_score_per_level_mean"][lv], marker=".", ls="--", alpha=0.7, label=lv)
    if summary.get("baseline_score") is not None:
        ax1.axhline(summary["baseline_score"], color="grey", ls=":", label="warm start (no training)")
    ax1.set(xlabel="fixed reveal ratio alpha", ylabel="final Average@k (fraction correct)",
            title="final score (95% CI over seeds)")
    ax1.legend(fontsize=8)
    mean, err = bars("mismatch")
    ax2.errorbar(alphas, mean, yerr=err, marker="o", capsize=4, color="C3", label="whole run")
    if "mismatch_early_mean" in summary:
        mean, err = bars("mismatch_early")
        ax2.errorbar(alphas, mean, yerr=err, marker="s", capsize=4, color="C4",
                     label=f"first {EARLY_SHARE:.0%} of updates (same student)")
    ax2.set(xlabel="fixed reveal ratio alpha", ylabel="top-1 mismatch (fraction of tokens)", title="mismatch")
    ax2.legend(fontsize=8)
    mean, err = bars("g_gt")
    ax3.errorbar(alphas, mean, yerr=err, marker="o", capsize=4, color="C2")
    ax3.set(xlabel="fixed reveal ratio alpha", ylabel="G_gt: teacher log-prob of the reference (nats/token)",
            title="grounding statistic")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120))
    plt.close(fig)


def _warmstart_report(args: Args) -> dict[str, Any] | None:
    """The warm start's report (teacher-role accuracy and reference NLL at every reveal ratio)."""
    if not args.env.startswith("ATESD-Qwen3"):
        return None
    from distill_backend.config import backend_config_from_kwargs
    from distill_backend.warmstart import ensure_warmstart, load_report
    from exposure_env.config import split_env_kwargs

    config = backend_config_from_kwargs(split_env_kwargs(_env_kwargs(args))[1])
    if not config.uses_tiny_default:
        return None
    report = load_report(ensure_warmstart(config.warmstart, progress=True))._asdict()
    report.pop("history", None)
    return report



def _stored_runs(args: Args) -> list[dict[str, Any]]:
    """Runs already in ``out`` that were made with the same result-relevant arguments."""
    path = Path(args.out)
    if not path.is_file():
        return []
    stored = json.loads(path.read_text())
    saved, mine = stored.get("args", {}), asdict(args)
    if any(saved.get(k) != (list(v) if isinstance(v, tuple) else v) for k, v in mine.items()
           if k not in _NON_RESULT_FIELDS):
        raise SystemExit(f"{path} holds runs made with other arguments; choose another --out or delete it")
    return [r for r in stored.get("runs", []) if r.get("score") is not None]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_dataclass(Args, argv, __doc__.split("\n\n")[0])
    out = Path(args.out)
    if args.resummarize:  # the stored run's own arguments, not this command's defaults
        stored = json.loads(out.read_text())
        saved = {k: tuple(v) if isinstance(v, list) else v for k, v in stored["args"].items() if k in Args.__dataclass_fields__}
        args = Args(**{**saved, "out": args.out, "resummarize": False})
        summary = summarize(args, stored["runs"], stored.get("warmstart"))
        summary["wall_time"] = stored.get("wall_time")
        write_json(out, summary)
        plot(summary, out.with_suffix(".png"))
        return summary
    runs = _stored_runs(args)
    warmstart = _warmstart_report(args)  # builds the (cached) warm start once, before the workers need it
    done = {(r["spec"], r["seed"]) for r in runs}
    seeds = range(args.seed_offset, args.seed_offset + args.seeds)
    jobs = [(None, s) for s in seeds] + [(fixed_spec(a), s) for s in seeds for a in args.alphas]
    jobs += [(spec, s) for s in seeds for spec in args.schedules]
    jobs = [job for job in jobs if job not in done]
    start = time.perf_counter()
    summary = summarize(args, runs, warmstart)
    for result in in_processes(run_one, [(args, spec, seed) for spec, seed in jobs], args.workers):
        runs.append(result)
        last = runs[-1]
        print(f"{last['spec'] or 'warm start'} seed={last['seed']}: score {last['score']:.3f} "
              f"greedy {last['greedy']:.3f} mismatch {last['mismatch']:.3f} ({last['wall_time']:.0f}s)", flush=True)
        summary = summarize(args, runs, warmstart)
        summary["wall_time"] = time.perf_counter() - start
        write_json(out, summary)
    plot(summary, out.with_suffix(".png"))
    return summary


if __name__ == "__main__":
    main()
