"""Write ``docs/results.md`` from the result files, so numbers in prose cannot drift from the data.

    python -m benchmarks.results_page            # rewrite docs/results.md
    python -m benchmarks.results_page --check    # exit 1 if docs/results.md is out of date

Every ``benchmarks/results/*.json`` with a renderer below becomes a section: what the benchmark
asks, the command that reproduces it, and its numbers as tables. A file without a renderer, or one
whose shape its renderer does not know (a benchmark that changed its output), is listed at the end
instead of being guessed at. Renderers read the files only; they never run anything.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

from agents.compare import load_result, markdown_table
from exposure_env.commandline import parse_dataclass
from exposure_env.io import atomic_write_text


@dataclass(frozen=True)
class Args:
    """Command-line arguments (each field is a ``--flag``)."""

    results_dir: str = "benchmarks/results"
    """Folder of the result JSON files."""
    out: str = "docs/results.md"
    """The page to write."""
    check: bool = False
    """Write nothing; exit with status 1 if ``out`` differs from what would be written."""


class Page(NamedTuple):
    text: str
    rendered: list[str]
    skipped: list[tuple[str, str]]  # (file name, why)


def _f(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ci(interval: Any, digits: int = 3) -> str:
    low, high = interval
    return f"[{_f(low, digits)}, {_f(high, digits)}]"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# -- renderers: (file path, parsed JSON) -> Markdown; a KeyError / TypeError means "unknown shape" --
def surrogate_sweep(path: Path, data: dict[str, Any]) -> str:
    rows = [[f"fixed {r['alpha']:.2f}", f"{_f(r['final_score']['mean'])} ± {_f(r['final_score']['ci95'])}",
             _f(r["mean_mismatch"]), _f(r["returns"]["discounted"]["mean"]),
             _f(r["returns"]["discounted+gt"]["mean"]), str(r.get("diverged_runs", "n/a"))] for r in data["fixed"]]
    rows += [[name, f"{_f(r['final_score']['mean'])} ± {_f(r['final_score']['ci95'])}", _f(r["mean_mismatch"]),
              _f(r["returns"]["discounted"]["mean"]), _f(r["returns"]["discounted+gt"]["mean"]),
              str(r.get("diverged_runs", "n/a"))] for name, r in data["adaptive"].items()]
    diffs = [[name, f"{_f(r['minus_best_fixed']['mean'])} ± {_f(r['minus_best_fixed']['ci95'])}"]
             for name, r in data["adaptive"].items()]
    config = data["config"]
    return "\n\n".join([
        f"What does the surrogate say about fixed and adaptive exposure? `python -m benchmarks.surrogate_sweep` "
        f"({config['seeds']} students, noise seed {config['noise_seed']}, {config['env']['total_updates']} updates, "
        f"windows of {config['env']['hold_window']}; mean ± 95% t-interval over students; episode returns with "
        f"gamma {config['env']['gamma']}, lambda_gt {config['env']['lambda_gt']}).",
        _table(["schedule", "final score", "mean mismatch", "return (discounted)", "return (discounted+gt)",
                "diverged runs"], rows),
        f"Best fixed reveal ratio: {data['best_fixed_alpha']}; best ratio per difficulty level (easy .. hard): "
        f"{', '.join(str(a) for a in data['best_alpha_per_level'])}. Adaptive schedule minus the best fixed ratio, "
        "paired by student and noise:",
        _table(["schedule", "final score difference"], diffs),
    ])


def env_throughput(path: Path, data: dict[str, Any]) -> str:
    largest = max(data["batched"], key=int)
    ppo = data["ppo"]
    lines = [
        "How fast is the surrogate env? `python -m benchmarks.env_throughput` (one process, interleaved repeats, "
        "medians; a shared 2-core machine: only the ratios mean something).",
        _table(["measure", "value", "goal"], [
            ["surrogate env steps/s ÷ CartPole-v1 steps/s (both through gym.make)", _f(data["ratio_vs_cartpole"]),
             "reported"],
            ["SB3 PPO wall time on the surrogate ÷ on CartPole-v1",
             _f(ppo["ppo_wall_ratio_vs_cartpole"]) if ppo.get("measured") else "not measured", "<= 1.1"],
            ["the same, median of the ratios within each repeat",
             _f(ppo["median_of_repeat_ratios"]) if ppo.get("measured") else "not measured", "reported"],
            ["SB3 PPO wall time on Pendulum-v1 ÷ on CartPole-v1 (a continuous-action reference)",
             _f(ppo["pendulum_wall_ratio_vs_cartpole"]) if ppo.get("measured") else "not measured", "reference"],
            [f"native batched surrogate ({largest} envs) env steps/s ÷ single env",
             _f(data[f"batched_ratio_{largest}_vs_single"], 1), ">= 100"],
        ]),
    ]
    return "\n\n".join(lines)


def compare(path: Path, data: dict[str, Any]) -> str:
    result, _ = load_result(path)
    bench = data.get("benchmark", {})
    lines = [f"Which controller steers `{result.env_id}` best? `python -m benchmarks.compare_controllers "
             f"--out benchmarks/results/{path.name}` (the code of `atesd compare`; env kwargs "
             f"`{json.dumps(result.config.get('env_kwargs', {}))}`).", markdown_table(result).strip()]
    claims = bench.get("claims", {})
    rows = [[name, _f(c["iqm_difference"]), f"{_f(c['prob_improvement'], 2)} {_ci((c['pi_ci_low'], c['pi_ci_high']), 2)}"]
            for name, c in claims.items() if "prob_improvement" in c]
    if rows:
        lines += ["ATESD agent against the baselines:", _table(["comparison", "IQM difference", "P(improvement) [95% CI]"],
                                                              rows)]
    for name, ablation in claims.items():
        if "observed_order_low_to_high" in ablation:
            lines.append(f"Reward ablation `{name}`: observed order (low to high) "
                         f"{', '.join(ablation['observed_order_low_to_high'])}; the paper's "
                         f"{', '.join(ablation['paper_order_low_to_high'])}; matches: {ablation['matches_paper']}.")
    return "\n\n".join(lines)


def compare_sweep(path: Path, data: dict[str, Any]) -> str:
    header = ["alpha", "final score (mean over seeds)"] + [f"return ({mode})" for mode in data["episode_return_mean"]]
    rows = [[str(alpha), _f(score)] + [_f(values[i]) for values in data["episode_return_mean"].values()]
            for i, (alpha, score) in enumerate(zip(data["alphas"], data["final_score_mean"]))]
    return "\n\n".join([
        f"The fixed-exposure sweep that picks the best fixed ratio for the comparison, on seeds "
        f"{data['seeds'][0]}..{data['seeds'][-1]} (disjoint from the evaluated ones); lambda_gt {data['lambda_gt']}.",
        _table(header, rows)])


def controller_overhead(path: Path, data: dict[str, Any]) -> str:
    rows = [["surrogate", _f(data["surrogate"]["controller_share"], 4)]]
    real = data["real_backend"]
    rows.append([real.get("env_id", "real backend"),
                 _f(real["controller_share"], 4) if real.get("measured") else f"not measured ({real.get('reason')})"])
    return "\n\n".join([f"How much of a run's wall time does the `{data['controller']}` controller cost? "
                        f"Goal: {data['goal']}.", _table(["env", "controller time ÷ env time"], rows)])


def fixed_exposure(path: Path, data: dict[str, Any]) -> str:
    args = data["args"]
    rows = [[str(alpha), f"{_f(score)} {_ci(ci)}", _f(mismatch)] for alpha, score, ci, mismatch in
            zip(data["alphas"], data["final_score_mean"], data["final_score_ci"], data["mismatch_mean"])]
    return "\n\n".join([
        f"Fixed exposure on the real backend: `python -m benchmarks.fixed_exposure` ({args['seeds']} seeds, "
        f"{args['total_updates']} updates, Average@{args['final_eval_k']} on {args['final_eval_size']} test problems, "
        f"env kwargs `{args['env_kwargs']}`). No training: {_f(data['baseline_score'])} {_ci(data['baseline_score_ci'])}.",
        _table(["alpha", "final score [95% CI]", "mean mismatch"], rows)])


def motab(path: Path, data: dict[str, Any]) -> str:
    rows = [[name, f"{_f(m['score_mean'])} {_ci(m['score_ci'])}"] for name, m in data["methods"].items()]
    return "\n\n".join([
        f"MOTAB and its baselines: `python -m benchmarks.motab` ({data['args']['seeds']} seeds, equal budgets in "
        f"{data['budget_unit']}). Student before training {_f(data['initial_student_score_mean'])}, teacher "
        f"{_f(data['teacher_score_mean'])}.",
        _table(["method", "score [95% CI]"], rows)])


def backend_throughput(path: Path, data: dict[str, Any]) -> str:
    return "\n\n".join([
        "Loss memory and update speed of the real backend: `python -m benchmarks.backend_throughput`.",
        _table(["measure", "value"], [
            ["peak memory of the chunked loss ÷ naive (B×T×V), "
             f"{data['loss_memory_ratio_settings']['dtype']}", _f(data["loss_memory_ratio"])],
            ["our update ÷ TRL's on-policy distillation trainer (tokens/s)", _f(data["ratio_vs_trl"])],
        ])])


RENDERERS: dict[str, tuple[str, Callable[[Path, dict[str, Any]], str]]] = {
    "surrogate_sweep.json": ("Surrogate: fixed and adaptive exposure", surrogate_sweep),
    "compare_controllers.json": ("Surrogate: controllers compared", compare),
    "compare_controllers_sweep.json": ("Surrogate: the sweep behind best-fixed", compare_sweep),
    "compare_controllers_no_transient.json": ("Surrogate without the transient: controllers compared", compare),
    "compare_controllers_no_transient_sweep.json": ("Surrogate without the transient: the sweep behind best-fixed",
                                                    compare_sweep),
    "controller_overhead.json": ("Controller overhead", controller_overhead),
    "env_throughput.json": ("Env throughput", env_throughput),
    "fixed_exposure_qwen3.json": ("Real backend: fixed exposure", fixed_exposure),
    "fixed_exposure_qwen3_reverse_kl.json": ("Real backend: fixed exposure, reverse KL", fixed_exposure),
    "backend_throughput.json": ("Real backend: loss memory and update speed", backend_throughput),
    "motab.json": ("MOTAB", motab),
    "motab_eps0.5.json": ("MOTAB with eps0 = 0.5", motab),
}


def build_page(results_dir: str | Path) -> Page:
    """The page for every ``*.json`` in ``results_dir`` (see the module docstring)."""
    folder = Path(results_dir)
    files = {path.name: path for path in sorted(folder.glob("*.json"))}
    sections, rendered, skipped = [], [], []
    for name, (title, render) in RENDERERS.items():
        if name not in files:
            continue
        try:
            body = render(files[name], json.loads(files[name].read_text()))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            skipped.append((name, f"shape not known to its renderer ({type(exc).__name__}: {exc})"))
            continue
        sections.append(f"## {title}\n\n*From `benchmarks/results/{name}`.*\n\n{body}\n")
        rendered.append(name)
    skipped += [(name, "no renderer") for name in files if name not in RENDERERS]
    lines = ["# Results", "",
             "Generated by `python -m benchmarks.results_page` from `benchmarks/results/*.json`: do not edit by "
             "hand. Measured on a shared 2-core CPU machine with the tiny models, not at the papers' GPU scale.", ""]
    lines += sections
    if skipped:
        lines += ["## Not rendered", ""] + [f"- `{name}`: {why}" for name, why in skipped] + [""]
    return Page("\n".join(lines).rstrip() + "\n", rendered, skipped)


def main(argv: list[str] | None = None) -> int:
    args = parse_dataclass(Args, argv, __doc__)
    page = build_page(args.results_dir)
    out = Path(args.out)
    if args.check:
        current = out.read_text() if out.exists() else ""
        if current != page.text:
            print(f"{out} is out of date: run python -m benchmarks.results_page", file=sys.stderr)
            return 1
        return 0
    atomic_write_text(out, page.text)
    print(f"wrote {out}: {len(page.rendered)} result files" +
          (f"; not rendered: {', '.join(name for name, _ in page.skipped)}" if page.skipped else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
