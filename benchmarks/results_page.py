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
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

from agents.compare import load_result, markdown_table
from exposure_env.commandline import dataclass_argv, parse_dataclass
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
    if not interval:
        return "[n/a]"
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
    agents = data.get("agents") or {data["controller"]: {"surrogate": data["surrogate"],
                                                         "real_backend": data["real_backend"]}}
    rows = []
    for name, entry in agents.items():
        real = entry["real_backend"]
        rows.append([f"`{name}`", _f(entry["surrogate"]["controller_share"], 4),
                     _f(real["controller_share"], 5) if real.get("measured") else f"not measured ({real.get('reason')})",
                     _f(1000 * real["controller_time_per_decision_s"], 2) if real.get("measured") else "n/a",
                     _f(real["env_time_per_window_s"], 2) if real.get("measured") else "n/a"])
    real = data["real_backend"]
    where = f"`{real.get('env_id')}` with `{json.dumps(real.get('env_kwargs'))}`" if real.get("measured") else "the real backend"
    return "\n\n".join([f"How much of a run's wall time does a controller cost? `python -m benchmarks.compare_controllers "
                        f"--overhead-only` (one run per controller; surrogate and {where}). Goal: {data['goal']}.",
                        _table(["controller", "÷ surrogate step", "÷ real window", "ms per decision (real)",
                                "s per real window"], rows)])


def controller_study(path: Path, data: dict[str, Any]) -> str:
    from benchmarks.controllers import Args, markdown  # reads the payload only

    # the stored arguments, with the seeds that actually ran and this file as the output
    args = {**data["args"], "seeds": len(data["seeds"]), "out": f"benchmarks/results/{path.name}"}
    command = "`" + shlex.join(["python", "-m", "benchmarks.controllers", *dataclass_argv(Args, args)]) + "`"
    return "\n\n".join([f"The controller study: {command}.", markdown(data).strip()])


def controller_sweep(path: Path, data: dict[str, Any]) -> str:
    rows = [[str(alpha), _f(mean), _f(std)] for alpha, mean, std in
            zip(data["alphas"], data["final_score_mean"], data["final_score_std"])]
    return "\n\n".join([f"The fixed-exposure sweep behind the study's best fixed alpha, on `{data['env_id']}`, seeds "
                        f"{data['seeds'][0]}..{data['seeds'][-1]}.", _table(["alpha", "final score mean", "sd"], rows)])


def fixed_exposure(path: Path, data: dict[str, Any]) -> str:
    args, alphas = data["args"], data["alphas"]
    early = data.get("mismatch_early_mean") or [None] * len(alphas)
    header = ["alpha", "final Average@k [95% CI]", "vs alpha = 1 (paired)", "vs warm start (paired)",
              "greedy", "mismatch (run)", "mismatch (first quarter)", "loss tail", "G_gt"]
    rows = []
    for i, alpha in enumerate(alphas):
        rows.append([f"{alpha:g}", f"{_f(data['final_score_mean'][i])} {_ci(data['final_score_ci'][i])}",
                     f"{_f(data['vs_full_exposure_mean'][i], 3)} {_ci(data['vs_full_exposure_ci'][i])}",
                     f"{_f(data['improvement_mean'][i])} {_ci(data['improvement_ci'][i])}",
                     _f(data["final_greedy_mean"][i]), _f(data["mismatch_mean"][i]), _f(early[i]),
                     _f(data["loss_tail_mean"][i]),
                     _f(data["g_gt_mean"][i])])
    levels = data["levels"]
    level_rows = [[lv] + [_f(m) for m in data["final_score_per_level_mean"][lv]] for lv in levels]
    schedules = [[spec, str(v["n"]), f"{_f(v['final_score_mean'])} {_ci(v['final_score_ci'])}",
                  f"{_f(v['vs_full_exposure_mean'])} {_ci(v['vs_full_exposure_ci'])}", _f(v["mean_alpha"], 2)]
                 for spec, v in data["schedules"].items()]
    ws = data.get("warmstart") or {}
    checks = [f"- {name}: {claim['verdict']}" for name, claim in data["claims"].items()]
    parts = [
        f"Fixed exposure on the real backend: `python -m benchmarks.fixed_exposure` "
        f"({max(data.get('seeds_per_alpha') or [args['seeds']])} seeds per alpha, "
        f"{', '.join(map(str, data['updates_done']))} updates for every run, Average@{args['final_eval_k']} on "
        f"{args['final_eval_size']} test problems, env kwargs `{args['env_kwargs']}`). No training: "
        f"{_f(data['baseline_score'])} {_ci(data['baseline_score_ci'])}.",
        _table(header, rows),
        "Per difficulty level (mean final Average@k):",
        _table(["level"] + [f"alpha {a:g}" for a in alphas], level_rows),
    ]
    if schedules:
        parts += ["Schedules on the same seeds:",
                  _table(["schedule", "runs", "final score [95% CI]", "vs alpha = 1 (paired)", "mean alpha"],
                         schedules)]
    if ws:
        parts += [f"Warm start `{ws['cache_key']}` (the set-up check): student greedy {_f(ws['student_accuracy'])}; "
                  "teacher-role greedy accuracy by alpha "
                  + ", ".join(f"{a}: {_f(v)}" for a, v in ws["teacher_accuracy"].items())
                  + "; teacher NLL of the reference by alpha "
                  + ", ".join(f"{a}: {_f(v)}" for a, v in ws["teacher_ref_nll"].items()) + "."]
    parts += ["The ATESD paper's claims here:", "\n".join(checks)]
    return "\n\n".join(parts)


def loss_study(path: Path, data: dict[str, Any]) -> str:
    args = data["args"]
    rows = [[r["arm"], str(r["n"]), f"{_f(r['score_mean'])} {_ci(r['score_ci'])}",
             f"{_f(r['vs_warm_start_mean'])} {_ci(r['vs_warm_start_ci'])}", _f(r["greedy_mean"]),
             "n/a" if r.get("clip_share_of_loss") is None else _f(r["clip_share_of_loss"], 2)]
            for r in data["rows"]]
    return "\n\n".join([
        f"Which divergence and learning rate make self-distillation help the tiny default? "
        f"`python -m benchmarks.loss_study` (alpha = {args['alpha']:g}, {args['total_updates']} updates, "
        f"Average@{args['final_eval_k']} on {args['final_eval_size']} test problems). Warm start "
        f"{_f(data['warm_start_score'])} {_ci(data['warm_start_ci'])}.",
        _table(["divergence, learning rate", "seeds", "final score [95% CI]", "vs warm start (paired)", "greedy",
                "share of the loss the clip removes"], rows)])


def update_speed(path: Path, data: dict[str, Any]) -> str:
    settings = data["settings"]
    low_high = data["ratio_mean_ci95"][1:]
    return (f"Tokens/s of the product's update (`Qwen3DistillBackend.run_window`, every statistic the env needs) "
            f"÷ TRL {data['trl_version']} `DistillationTrainer` on the same model, prompts, lengths and divergence "
            f"({settings['batch']} questions × {settings['rollouts']} rollouts, interleaved rounds): "
            f"**{_f(data['ratio_vs_trl'], 2)}** (median; mean {_f(data['ratio_mean_ci95'][0], 2)} "
            f"{_ci(low_high, 2)}). Goal: 2.0.")


def loss_memory(path: Path, data: dict[str, Any]) -> str:
    settings = data["settings"]
    rows = []
    for dtype, entry in data["memory"].items():
        for variant, run in entry["runs"].items():
            rows.append([dtype, variant, _f(run["working_ratio"], 3), _f(run.get("total_ratio"), 3)])
    return "\n\n".join([
        f"Peak memory of the distillation loss ÷ one naive B×T×V fp32 logits tensor, at {settings['positions']} "
        f"positions and a {settings['vocab']:,}-entry vocabulary (`python -m benchmarks.loss_memory`; "
        f"{data['measure']}). Goal: ≤ 1/32 = 0.031.",
        _table(["dtype", "loss", "working ÷ naive", "with returned gradients ÷ naive"], rows)])


def eval_cost(path: Path, data: dict[str, Any]) -> str:
    rows = [[name, str(e["completions"]), _f(e["seconds_mean"], 2), _f(e["share_of_window_wall_time"], 2),
             _f(e["score_sd_across_seeds"], 3)] for name, e in data["evaluations"].items()]
    return "\n\n".join([
        "Cost of the in-run evaluation per window (`python -m benchmarks.eval_cost`, "
        f"{data['rollouts_per_window']} training rollouts per window):",
        _table(["problems × samples", "completions", "seconds", "share of the window", "score SD across seeds"],
               rows)])


def motab(path: Path, data: dict[str, Any]) -> str:
    rows = [[name, m.get("label", ""), f"{_f(m['score_mean'])} {_ci(m['score_ci'])}",
             _f(m.get("right_answer_share_mean"), 3), _f(m.get("output_with_revision_mean"), 3),
             _f(m.get("output_fixes_mean"), 2) + " / " + _f(m.get("output_breaks_mean"), 2)]
            for name, m in data["methods"].items()]
    monitors = [[name, f"{_f(q['breach_recall_mean'])} {_ci(q['breach_recall_ci'])}",
                 f"{_f(q['breach_precision_mean'])} {_ci(q['breach_precision_ci'])}",
                 f"{_f(q['step_recall_mean'])}", f"{_f(q['step_precision_mean'])}"]
                for name, q in data.get("monitors", {}).items() if "breach_recall_mean" in q]
    parts = [
        f"MOTAB and its baselines: `python -m benchmarks.motab` ({data['args']['seeds']} seeds, equal budgets in "
        f"{data['budget_unit']}). Student before training {_f(data['initial_student_score_mean'])}, teacher "
        f"{_f(data['teacher_score_mean'])}.",
        _table(["method", "kind", "score [95% CI]", "training texts ending with the right answer",
                "test outputs with a revision", "revisions that fix / break a step"], rows)]
    if monitors:
        parts += ["Each monitor option against the task's verifiable step errors (the initial student's samples "
                  f"of the pool; best option by breach F1 per seed: {', '.join(data.get('best_monitor_per_seed', []))}):",
                  _table(["monitor", "breach recall", "breach precision", "step recall", "step precision"], monitors)]
    return "\n\n".join(parts)


def motab_composition(path: Path, data: dict[str, Any]) -> str:
    args = data["args"]
    rows = []
    for alpha in data["alphas"]:
        entry = data.get(f"alpha_{alpha:g}", {})
        rows.append([f"{alpha:g}", f"{_f(entry.get('plain_mean'))} {_ci(entry.get('plain_ci'))}",
                     f"{_f(entry.get('motab_mean'))} {_ci(entry.get('motab_ci'))}",
                     f"{_f(entry.get('motab_minus_plain_mean'))} {_ci(entry.get('motab_minus_plain_ci'))}",
                     str(entry.get("paired_seeds", 0))])
    return "\n\n".join([
        f"ATESD x MOTAB: `python -m benchmarks.motab_composition` (fixed exposure, {args['seeds']} seeds, "
        f"Average@{args['final_eval_k']} on {args['final_eval_size']} test problems"
        + (f"; plain runs reused from `{args['reuse']}`" if args.get("reuse") else "") + "). Warm start "
        f"{_f(data.get('warm_start_score_mean'))} {_ci(data.get('warm_start_score_ci'))}.",
        _table(["alpha", "plain OPSD [95% CI]", "rollout=motab [95% CI]", "motab - plain (paired)", "seeds"], rows)])


def data_parallel(path: Path, data: dict[str, Any]) -> str:
    rows = [[n, _f(r["updates_per_s"]["mean"], 2), f"{_f(r['speedup_vs_first']['mean'], 2)} "
             f"{_ci([r['speedup_vs_first']['low'], r['speedup_vs_first']['high']], 2)}"]
            for n, r in data["results"].items()]
    load = data["load_average_1min"]
    return "\n\n".join([
        f"{data['question']} (`python -m benchmarks.data_parallel`, global batch {data['global_batch']}, "
        f"{data['args']['repeats']} interleaved rounds, {data['cpu_count']} CPU cores, 1-minute load average "
        f"{_f(load['start'], 1)} at the start and {_f(load['end'], 1)} at the end). On a loaded 2-core machine "
        "this measures that the launch works and costs little, not the scaling a GPU per process gives.",
        _table(["processes", "updates/s", "speed-up vs 1 process [95% CI]"], rows)])


def calibration(path: Path, data: dict[str, Any]) -> str:
    report = data["report"]
    splits = {name: split for name, split in report["splits"].items() if "test" in split}
    targets = list(splits[next(iter(splits))]["test"]["r2"]) if splits else []
    rows = [[f"`{t}`"] + [_f(split["test"]["r2"][t], 2) for split in splits.values()] for t in targets]
    rows.append(["final score"] + [_f(split["test"]["final_score_r2"], 2) for split in splits.values()])
    fit = report["all"]["fit"]
    described = "; ".join(f"{name}: fit on {s['fit_runs']} runs ({', '.join(s['fit_labels'])}), tested on "
                          f"{s['test_runs']} ({', '.join(s['test_labels'])})" for name, s in splits.items())
    return "\n\n".join([
        f"The surrogate fitted to traces of the real tiny default (`atesd calibrate`, {report['runs']} runs, "
        f"seeds {report['seeds']}; shipped as `params=\"tiny-qwen3\"`). R^2 on held-out runs ({described}):",
        _table(["statistic", *splits], rows),
        f"Fit on all runs: final-score R^2 {_f(fit['final_score_r2'], 2)} (RMSE {_f(fit['final_score_rmse'], 3)}), "
        f"probe NLL R^2 {_f(fit['r2']['probe_nll'], 2)}, in-run score R^2 {_f(fit['r2']['score'], 2)}."])


def calibration_heldout(path: Path, data: dict[str, Any]) -> str:
    ev = data["evaluated"]
    rows = [[f"`{t}`", _f(ev["r2"][t], 2), _f(ev["rmse"][t], 4)] for t in ev["r2"]]
    rows.append(["final score", _f(ev["final_score_r2"], 2), _f(ev["final_score_rmse"], 4)])
    return "\n\n".join([
        f"The shipped fit scored on {ev['runs']} runs not in its fit set (`atesd calibrate --evaluate {ev['params_from']}`; "
        f"{', '.join(ev['labels'])}; seeds {ev['seeds']}):",
        _table(["statistic", "R^2", "RMSE"], rows)])


def credit_alignment(path: Path, data: dict[str, Any]) -> str:
    args, candidates = data["args"], data["candidates"]
    modes = list(data["spearman_of_means_by_mode"])
    rows = []
    for point, entry in data["points"].items():
        rows.append([point, f"{entry['best_by_effect']:g}"] +
                    [f"{_f(entry['modes'][m]['spearman_of_means'], 2)} (best {entry['modes'][m]['best_by_credit']:g})"
                     for m in modes])
    rows.append(["mean", ""] + [_f(data["spearman_of_means_by_mode"][m], 2) for m in modes])
    return "\n\n".join([
        f"Does the credit rank reveal ratios as they change the final score? `python -m benchmarks.credit_alignment "
        f"--params {args['params']}` ({args['seeds']} counterfactual runs per decision point and candidate "
        f"{', '.join(f'{c:g}' for c in candidates)}; base policy alpha {args['base_alpha']:g}; "
        f"{args['total_updates']} updates). Spearman correlation of the seed-averaged credit with the "
        "seed-averaged effect on the final score, per decision window:",
        _table(["window", "best alpha by effect", *modes], rows)])


RENDERERS: dict[str, tuple[str, Callable[[Path, dict[str, Any]], str]]] = {
    "surrogate_sweep.json": ("Surrogate: fixed and adaptive exposure", surrogate_sweep),
    "compare_controllers.json": ("Surrogate: controllers compared", compare),
    "compare_controllers_sweep.json": ("Surrogate: the sweep behind best-fixed", compare_sweep),
    "compare_controllers_no_transient.json": ("Surrogate without the transient: controllers compared", compare),
    "compare_controllers_no_transient_sweep.json": ("Surrogate without the transient: the sweep behind best-fixed",
                                                    compare_sweep),
    "controller_overhead.json": ("Controller overhead", controller_overhead),
    "controllers_surrogate.json": ("Controller study: surrogate", controller_study),
    "controllers_surrogate_sweep.json": ("Controller study: the surrogate sweep behind best-fixed", controller_sweep),
    "controllers_qwen3.json": ("Controller study: real backend", controller_study),
    "controllers_qwen3_sweep.json": ("Controller study: the real-backend sweep behind best-fixed", controller_sweep),
    "env_throughput.json": ("Env throughput", env_throughput),
    "fixed_exposure_qwen3.json": ("Real backend: fixed exposure", fixed_exposure),
    "fixed_exposure_qwen3_200.json": ("Real backend: fixed exposure with a 200-update budget", fixed_exposure),
    "loss_study.json": ("Real backend: which divergence for the tiny default", loss_study),
    "update_speed.json": ("Real backend: update speed vs TRL (16 x 1)", update_speed),
    "update_speed_16x4.json": ("Real backend: update speed vs TRL (16 x 4, the env default)", update_speed),
    "loss_memory.json": ("Real backend: loss memory", loss_memory),
    "eval_cost.json": ("Real backend: cost of the in-run evaluation", eval_cost),
    "data_parallel.json": ("Data-parallel runs", data_parallel),
    "calibration_tiny_qwen3.json": ("Surrogate calibrated to the real tiny default", calibration),
    "calibration_tiny_qwen3_heldout.json": ("The calibrated surrogate on 400-update schedule runs",
                                            calibration_heldout),
    "credit_alignment.json": ("Credit alignment on the calibrated surrogate", credit_alignment),
    "credit_alignment_default.json": ("Credit alignment on the hand-set default surrogate", credit_alignment),
    "motab.json": ("MOTAB", motab),
    "motab_composition.json": ("ATESD x MOTAB composition", motab_composition),
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
