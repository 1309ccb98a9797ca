"""MOTAB against its baselines on the tiny teacher–student pair: a fair test, with the dual exposure biases.

One question: does monitoring the student and backtracking when it strays (MOTAB) give a better
student than off-policy SFT on teacher trajectories, speculative KD (step or token level) and
on-policy reverse-KL distillation, at an equal training budget? And is what each method trains on
(the share of its training texts that end with the right answer) what explains the scores?

The pair (:mod:`distill_backend.motab.pair`) is built from the current warm-start recipe: the student
is the testbed's warm start, the teacher the same recipe with another seed trained to ~95%.

Per seed (seeds redraw the question pool and every random draw):

1. The initial student samples one completion per pool question. The teacher scores them once and
   every monitor option of ``--monitors`` judges them; each option's breach recall and precision
   against the task's verifiable step errors are reported (:mod:`distill_backend.motab.diagnostics`).
   The **best option** of the seed is the one with the highest trajectory-level breach F1 on that
   pool: chosen on training data before any training, never on test scores.
2. Every method starts from the same initial student and gets the same budget: ``updates``
   optimizer updates on batches of ``batch_size`` sequences (MOTAB + rKL: half SFT, half rKL). SFT
   methods synthesize their texts once, from the initial student, on the pool; the MOTAB variants
   share the student completions of step 1 and differ only in the monitor and the filter.
3. The final student is scored by Average@k on test problems (temperature 1, top-p .95).

Methods (``label`` in the JSON): ``teacher_sft``, ``step_skd``, ``token_skd``, ``onpolicy_rkl``
(baselines); ``motab`` (paper monitor), ``motab_best`` (best monitor option), ``motab_rkl`` (paper
monitor, then rKL); ``motab_masked`` (ablation: no loss on the strayed student steps); and, labelled
*ours*, ``motab_filtered`` / ``motab_best_filtered``: MOTAB texts without the unbreached student
samples whose final answer is wrong (possible because the task is verifiable).

Run: ``python -m benchmarks.motab --seeds 3 --out benchmarks/results/motab.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exposure_env.commandline import add_dataclass_arguments, dataclass_from_namespace
from exposure_env.io import write_json
from exposure_env.stats import mean_ci

METHODS: tuple[str, ...] = (
    "teacher_sft", "step_skd", "token_skd", "onpolicy_rkl", "motab", "motab_best", "motab_filtered",
    "motab_best_filtered", "motab_rkl", "motab_masked",
)
METHOD_LABELS: dict[str, str] = {
    "teacher_sft": "baseline", "step_skd": "baseline", "token_skd": "baseline", "onpolicy_rkl": "baseline",
    "motab": "paper", "motab_best": "paper method, our monitor option", "motab_rkl": "paper",
    "motab_masked": "ablation", "motab_filtered": "ours", "motab_best_filtered": "ours",
}
BASELINES: tuple[str, ...] = ("teacher_sft", "step_skd", "token_skd", "onpolicy_rkl")
MONITORS: dict[str, dict[str, Any]] = {
    "paper": {},
    "min": {"value_mode": "min"},
    "result": {"value_mode": "result"},
    "length": {"boundary_scaling": "length"},
}
"""Monitor options: ``MotabConfig`` overrides of the benchmark's base config (``paper``: none)."""


@dataclass(frozen=True)
class Args:
    """Command-line arguments (each field is a ``--flag``)."""

    out: str = "benchmarks/results/motab.json"
    """Where to write the JSON (atomically); PNGs and the JSONL records go next to it."""
    seeds: int = 3
    """Number of seeds (0..seeds-1); each seed redraws the question pool and every random draw."""
    methods: tuple[str, ...] = METHODS
    """Methods to run (subset of the default)."""
    monitors: tuple[str, ...] = tuple(MONITORS)
    """Monitor options whose breach recall/precision is measured; the best one trains ``motab_best``.
    Must include ``paper``."""
    pool_size: int = 1024
    """Training questions per seed from which SFT texts are synthesized / rKL prompts drawn."""
    updates: int = 200
    """Optimizer updates per method (the budget, with batch_size)."""
    batch_size: int = 32
    """Sequences per update."""
    lr: float = 5e-4
    """AdamW learning rate of every stage."""
    test_size: int = 600
    """Test problems for the final Average@k."""
    eval_k: int = 4
    """Samples per test problem (Average@k)."""
    bias_problems: int = 200
    """Test problems used by each exposure-bias measurement."""
    eps0: float = 0.2
    """MOTAB base boundary (every monitor option)."""
    entropy_mode: str = "topk"
    """MOTAB boundary mode (``topk`` or ``static``)."""
    teacher_temperature: float = 0.6
    """Temperature of everything the teacher writes: teacher-only SFT texts, MOTAB continuations,
    step-SKD rewrites (public code: 0.6)."""
    token_skd_top_k: int = 1
    """Token-SKD K. The paper's K=20 is 0.013% of Qwen3's 151,936 tokens; of our 104 characters it
    is 19% and admits every digit, so the teacher would almost never intervene (0.8% of tokens in a
    trial run). Scaled to the vocabulary, K=1."""
    threads: int = 1
    """torch intra-op threads (1: on 2 shared cores, 2 threads made an SFT update ~80x slower)."""
    student_path: str = ""
    """Local checkpoint of the student ("" = the testbed warm start, built from the current recipe)."""
    teacher_path: str = ""
    """Local checkpoint of the teacher ("" = the default teacher recipe of :mod:`distill_backend.motab.pair`)."""


def parse_args(argv: list[str] | None = None) -> Args:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add_dataclass_arguments(parser, Args)
    args = dataclass_from_namespace(Args, parser.parse_args(argv))
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
    unknown = set(args.monitors) - set(MONITORS)
    if unknown or "paper" not in args.monitors:
        parser.error(f"--monitors must include 'paper' and come from {tuple(MONITORS)}; received {args.monitors}")
    return args


def share(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else float("nan")


class Experiment:
    """Everything one seed needs: the pair, prompts, data pool, and the method runners."""

    def __init__(self, args: Args, seed: int, pair, recipe, init_state: dict[str, Any]) -> None:
        import torch

        from distill_backend.evaluation import EvalConfig
        from distill_backend.motab import MotabConfig
        from distill_backend.motab.pipeline import TokenizerInfo
        from distill_backend.motab.training import TrainConfig
        from distill_backend.prompts import student_prompt
        from distill_backend.task import make_splits

        self.args, self.seed, self.pair, self.recipe = args, seed, pair, recipe
        self.tok = TokenizerInfo.of(pair.tokenizer)
        # The warm start, taken once in main(): the shared student module is retrained by every method.
        self.init_state = init_state
        splits = make_splits(recipe.task)
        pick = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(10_000 + seed))
        self.pool = [splits.train[i] for i in pick[: args.pool_size].tolist()]
        self.test = list(splits.test[: args.test_size])
        self.prompt_text = lambda p: student_prompt(p.problem, pair.tokenizer, recipe.prompts)
        # The MOTAB teacher is a stronger model answering the same question: same prompt as the student.
        self.pool_prompts = [self.tok.encode(self.prompt_text(p)) for p in self.pool]
        self.cfg = MotabConfig.tiny(eps0=args.eps0, entropy_mode=args.entropy_mode,
                                    skd_token_top_k=args.token_skd_top_k, teacher_temperature=args.teacher_temperature)
        self.train_cfg = TrainConfig(updates=args.updates, batch_size=args.batch_size, lr=args.lr,
                                     max_new_tokens=self.cfg.student_max_new_tokens,
                                     temperature=self.cfg.student_temperature)
        self.eval_cfg = EvalConfig(k=args.eval_k, max_new_tokens=96)
        self.generator = lambda salt: torch.Generator().manual_seed(1_000 * seed + salt)
        self._completions: list[list[int]] | None = None
        self._motab: dict[str, tuple[Any, float]] = {}
        self.monitor_quality: dict[str, dict[str, Any]] = {}
        self.best_monitor = "paper"

    # -- helpers -----------------------------------------------------------------------------

    def reset_student(self) -> None:
        self.pair.student.load_state_dict(self.init_state)

    def monitor_config(self, name: str):
        return dataclasses.replace(self.cfg, **MONITORS[name])

    def score(self, model, salt: int) -> float:
        return self.evaluate(model, salt)[0]

    def evaluate(self, model, salt: int):
        """Average@k on the test problems and what the sampled outputs do with the revise marker
        (:func:`distill_backend.motab.diagnostics.revision_stats`)."""
        from distill_backend.evaluation import grade_samples, summarize_grades
        from distill_backend.motab.diagnostics import revision_stats

        prompts = [self.prompt_text(p) for p in self.test]
        graded = grade_samples(model, self.pair.tokenizer, prompts, self.test, self.eval_cfg,
                               self.generator(salt), self.pair.device)
        k = graded.correct.shape[1]
        revisions = revision_stats(graded.texts, [p for p in self.test for _ in range(k)],
                                   graded.correct.reshape(-1) > 0.5, self.cfg.revise_marker)
        return summarize_grades(graded, self.test).average_at_k, revisions

    def right(self, row: int, ids_or_text) -> bool:
        """Whether a training text for pool question ``row`` ends with its right answer."""
        from distill_backend.evaluation import is_correct

        text = ids_or_text if isinstance(ids_or_text, str) else self.tok.decode(ids_or_text)
        return is_correct(text, self.pool[row].answer)

    def sft(self, rows: list[int], completions, loss_masks=None, updates=None):
        from distill_backend.motab.training import SftExample, train_sft

        masks = loss_masks or [[True] * len(c) for c in completions]
        examples = [SftExample(self.pool_prompts[r], c, m) for r, c, m in zip(rows, completions, masks) if c]
        cfg = dataclasses.replace(self.train_cfg, updates=self.train_cfg.updates if updates is None else updates)
        return train_sft(self.pair.student, examples, cfg, self.tok.pad_id, self.generator(7))

    def rkl(self, updates: int):
        """On-policy rKL; returns the stage log and whether each training rollout ended right."""
        from distill_backend.motab.training import train_onpolicy_rkl

        flags: list[bool] = []

        def record(rows, completions):
            flags.extend(self.right(r, c) for r, c in zip(rows, completions))

        cfg = dataclasses.replace(self.train_cfg, updates=updates)
        log = train_onpolicy_rkl(self.pair.student, self.pair.teacher, self.pool_prompts, self.pool_prompts, cfg,
                                 self.tok.eos_id, self.tok.pad_id, self.generator(8), on_rollouts=record)
        return log, flags

    def synthesize(self, fn, batch: int = 256):
        """Run a rollout function over the pool in batches; concatenates the per-batch outputs."""
        outs = []
        for start in range(0, len(self.pool_prompts), batch):
            chunk = self.pool_prompts[start:start + batch]
            outs.append(fn(self.pair.student, self.pair.teacher, chunk, chunk, self.tok, self.cfg,
                           self.generator(start + 3)))
        return outs

    # -- MOTAB: one set of student completions, judged by every monitor option ---------------

    def student_completions(self) -> list[list[int]]:
        """The initial student's completions of the pool (sampled once per seed)."""
        from distill_backend.motab.lm import sample

        if self._completions is None:
            self.reset_student()
            self._completions = []
            for i in range(0, len(self.pool_prompts), 256):
                self._completions += sample(
                    self.pair.student, self.pool_prompts[i:i + 256], self.cfg.student_max_new_tokens,
                    eos_id=self.tok.eos_id, pad_id=self.tok.pad_id, temperature=self.cfg.student_temperature,
                    generator=self.generator(i + 5)).tokens
        return self._completions

    def measure_monitors(self) -> dict[str, dict[str, Any]]:
        """Breach recall/precision of every monitor option on the pool; sets ``best_monitor``."""
        from distill_backend.motab.diagnostics import chain_step_errors, monitor_quality
        from distill_backend.motab.pipeline import judge, teacher_scores

        completions = self.student_completions()
        starts = range(0, len(completions), 256)
        # One teacher forward; every option judges the same scores (the base config's top-k entropies).
        scores = {i: teacher_scores(self.pair.teacher, self.pool_prompts[i:i + 256], completions[i:i + 256], self.tok,
                                    self.cfg) for i in starts}
        for name in self.args.monitors:
            cfg = self.monitor_config(name)
            verdicts = [v for i in starts for v in judge(scores[i], completions[i:i + 256], self.tok, cfg)]
            errors = []
            for row, (ids, verdict) in enumerate(zip(completions, verdicts)):
                texts = [self.tok.texts[t] for t in ids]
                steps = ["".join(texts[s.start:s.end]) for s in verdict.spans]
                errors.append(chain_step_errors(self.pool[row], steps, self.recipe.task.modulus))
            self.monitor_quality[name] = monitor_quality(verdicts, errors, cfg)._asdict()
        # Highest breach F1 on the training pool; nan (no breach or no error) ranks last; ties keep the order given.
        f1 = {name: q["breach_f1"] for name, q in self.monitor_quality.items()}
        self.best_monitor = max(f1, key=lambda n: (not math.isnan(f1[n]), f1[n] if not math.isnan(f1[n]) else 0.0))
        return self.monitor_quality

    def motab_batch(self, monitor: str):
        """MOTAB's stitched texts with the given monitor option (cached) and the seconds they took."""
        from distill_backend.motab.pipeline import MotabBatch, motab_from_completions

        if monitor not in self._motab:
            start = time.perf_counter()
            completions = self.student_completions()
            cfg = self.monitor_config(monitor)
            parts = [motab_from_completions(self.pair.teacher, self.pool_prompts[i:i + 256], completions[i:i + 256],
                                            self.tok, cfg, self.generator(i + 3))
                     for i in range(0, len(completions), 256)]
            batch = MotabBatch([s for p in parts for s in p.stitched], [c for p in parts for c in p.student_tokens],
                               [r for p in parts for r in p.records])
            self._motab[monitor] = (batch, time.perf_counter() - start)
        return self._motab[monitor]

    def motab_data(self, monitor: str, loss_on_strayed_steps: bool = True, drop_unbreached_wrong: bool = False):
        """Rows, completions, loss masks, bookkeeping and synthesis seconds of one MOTAB variant's SFT pool."""
        from distill_backend.motab.pipeline import breach_stats
        from distill_backend.motab.stitch import ORIGIN_STRAYED

        batch, seconds = self.motab_batch(monitor)
        rows, completions, masks, kept_right = [], [], [], []
        breached_right, unbreached_right, dropped = [], [], 0
        for row, (stitched, record) in enumerate(zip(batch.stitched, batch.records)):
            ok = self.right(row, record.stitched_text)
            if record.breach_step is None:
                unbreached_right.append(ok)
                if drop_unbreached_wrong and not ok:
                    dropped += 1
                    continue
            else:
                breached_right.append(ok)
            rows.append(row)
            completions.append(stitched.ids)
            masks.append([loss_on_strayed_steps or o != ORIGIN_STRAYED for o in stitched.origin])
            kept_right.append(ok)
        info = {"monitor": monitor, "right_answer_share": share(kept_right), "training_texts": len(rows),
                "dropped_unbreached_wrong": dropped, "breached_right_share": share(breached_right),
                "unbreached_right_share": share(unbreached_right), **breach_stats(batch.records)._asdict()}
        return rows, completions, masks, info, seconds

    def motab_records(self) -> list[tuple[str, Any]]:
        """(monitor, record) for every MOTAB trajectory synthesized so far."""
        return [(monitor, r) for monitor, (batch, _) in self._motab.items() for r in batch.records]

    # -- methods -----------------------------------------------------------------------------

    def teacher_completions(self) -> list[list[int]]:
        from distill_backend.motab.lm import sample

        completions: list[list[int]] = []
        for i in range(0, len(self.pool_prompts), 256):
            completions += sample(self.pair.teacher, self.pool_prompts[i:i + 256], self.cfg.teacher_max_new_tokens,
                                  eos_id=self.tok.eos_id, pad_id=self.tok.pad_id,
                                  temperature=self.cfg.teacher_temperature, generator=self.generator(i + 1)).tokens
        return completions

    def run(self, method: str) -> dict[str, Any]:
        """Train a fresh copy of the initial student with ``method`` and score it."""
        from distill_backend.motab.skd import step_skd_rollouts, token_skd_rollouts

        start = time.perf_counter()
        extra: dict[str, Any] = {"label": METHOD_LABELS[method]}
        all_rows = list(range(len(self.pool)))
        if method.startswith("motab"):
            monitor = self.best_monitor if method.startswith("motab_best") else "paper"
            rows, ids, masks, info, seconds = self.motab_data(
                monitor, loss_on_strayed_steps=method != "motab_masked",
                drop_unbreached_wrong=method.endswith("filtered"))
            extra.update(info)
            self.reset_student()
            synth = time.perf_counter()
            extra["time_synthesis"] = seconds  # shared by the variants: charged to each
            if method == "motab_rkl":
                half = self.args.updates // 2
                first = self.sft(rows, ids, masks, updates=half)
                second, flags = self.rkl(self.args.updates - half)
                extra["rollout_right_answer_share"] = share(flags)
                log = first._replace(losses=first.losses + second.losses, sequences=first.sequences + second.sequences,
                                     tokens=first.tokens + second.tokens)
            else:
                log = self.sft(rows, ids, masks)
        else:
            self.reset_student()
            if method == "onpolicy_rkl":
                synth = time.perf_counter()
                log, flags = self.rkl(self.args.updates)
                extra["right_answer_share"] = share(flags)
                extra["training_texts"] = len(flags)
            else:
                if method == "teacher_sft":
                    completions = self.teacher_completions()
                else:
                    batches = self.synthesize(step_skd_rollouts if method == "step_skd" else token_skd_rollouts)
                    completions = [c for b in batches for c in b.completions]
                    interventions = sum(sum(b.interventions) for b in batches)
                    extra["intervention_rate"] = interventions / max(1, sum(sum(b.units) for b in batches))
                extra["right_answer_share"] = share([self.right(r, c) for r, c in zip(all_rows, completions)])
                extra["training_texts"] = sum(1 for c in completions if c)
                synth = time.perf_counter()
                log = self.sft(all_rows, completions)
            extra["time_synthesis"] = synth - start
        trained = time.perf_counter()
        score, revisions = self.evaluate(self.pair.student, salt=99)
        extra.update({f"output_{key}": value for key, value in revisions._asdict().items()})
        done = time.perf_counter()
        return {"score": score, "sequences": log.sequences, "loss_tokens": log.tokens,
                "final_loss": float(sum(log.losses[-10:]) / max(1, len(log.losses[-10:]))),
                "time_training": trained - synth, "time_eval": done - trained, **extra}

    def bias_problems(self):
        problems = self.test[: self.args.bias_problems]
        return problems, [self.tok.encode(self.prompt_text(p)) for p in problems]

    def reversed_exposure_bias(self) -> dict[str, Any]:
        """Teacher continuing from the *initial* student's prefixes vs its own."""
        from distill_backend.motab.exposure_bias import measure_reversed_exposure_bias

        self.reset_student()
        problems, prompts = self.bias_problems()
        return measure_reversed_exposure_bias(self.pair.teacher, self.pair.student, problems, prompts, prompts,
                                              self.tok, self.generator(11))._asdict()

    def exposure_bias(self) -> dict[str, Any]:
        """Exposure bias of the student as it is now (call right after a method's training)."""
        from distill_backend.motab.exposure_bias import measure_exposure_bias

        problems, prompts = self.bias_problems()
        bias = measure_exposure_bias(self.pair.student, self.pair.teacher, problems, prompts, prompts, self.tok,
                                     self.generator(12))
        return {"nll": bias.nll._asdict(), "step_accuracy": bias.step_accuracy._asdict()}


# ----------------------------------------------------------------------------------------------
# Aggregation, plots, main
# ----------------------------------------------------------------------------------------------


def average_curves(curves: list[dict[str, Any]]) -> dict[str, Any]:
    """Count-weighted mean over seeds of :class:`PositionCurve` dicts (positions may differ)."""
    positions = sorted({p for c in curves for p in c["positions"]})
    kinds = list(curves[0]["series"])
    series, counts = {}, {}
    for kind in kinds:
        sums, ns = [0.0] * len(positions), [0] * len(positions)
        for c in curves:
            for p, v, n in zip(c["positions"], c["series"][kind], c["counts"][kind]):
                if n:
                    sums[positions.index(p)] += v * n
                    ns[positions.index(p)] += n
        series[kind] = [s / n if n else float("nan") for s, n in zip(sums, ns)]
        counts[kind] = ns
    return {"positions": positions, "series": series, "counts": counts}


def weighted_mean(curve: dict[str, Any], kind: str) -> float:
    pairs = [(v, n) for v, n in zip(curve["series"][kind], curve["counts"][kind]) if n]
    total = sum(n for _, n in pairs)
    return sum(v * n for v, n in pairs) / total if total else float("nan")


def plot_curves(path: Path, panels: list[tuple[str, str, dict[str, Any]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8))
    for ax, (title, ylabel, curve) in zip(list(axes) if len(panels) > 1 else [axes], panels):
        for kind, values in curve["series"].items():
            keep = [(p, v) for p, v, n in zip(curve["positions"], values, curve["counts"][kind]) if n >= 5]
            if keep:
                ax.plot([p for p, _ in keep], [v for _, v in keep], marker="o", label=kind)
        ax.set_title(title)
        ax.set_xlabel("step position j (context = first j steps)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def mean_of(runs: list[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in runs if key in r and r[key] is not None and not math.isnan(r[key])]
    return sum(values) / len(values) if values else float("nan")


METHOD_KEYS: tuple[str, ...] = (
    "right_answer_share", "rollout_right_answer_share", "training_texts", "breached_right_share",
    "unbreached_right_share", "dropped_unbreached_wrong", "breach_rate", "mean_backtrack_distance",
    "mean_breach_step", "mean_root_cause", "intervention_rate",
    # what the trained student writes on the test problems (RevisionStats)
    "output_with_revision", "output_revisions", "output_revised_wrong", "output_fixes", "output_breaks",
    "output_accuracy_with_revision", "output_accuracy_without_revision",
)


def summarize_methods(args: Args, per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    methods: dict[str, Any] = {}
    for method in args.methods:
        runs = [s["methods"][method] for s in per_seed if method in s["methods"]]
        if not runs:
            continue
        mean, ci = mean_ci([r["score"] for r in runs])
        walls = [r["time_synthesis"] + r["time_training"] + r["time_eval"] for r in runs]
        entry = {"label": METHOD_LABELS[method], "score_mean": mean, "score_ci": ci,
                 "scores": [r["score"] for r in runs], "sequences": runs[0]["sequences"],
                 "loss_tokens_mean": mean_of(runs, "loss_tokens"), "wall_time_mean": sum(walls) / len(walls)}
        if "monitor" in runs[0]:
            entry["monitors"] = [r["monitor"] for r in runs]
        for key in METHOD_KEYS:
            if key in runs[0]:
                entry[key + "_mean"] = mean_of(runs, key)
        methods[method] = entry
    # Paired by seed: each MOTAB variant minus the best baseline (highest mean score).
    baselines = [m for m in BASELINES if m in methods]
    if baselines:
        best = max(baselines, key=lambda m: methods[m]["score_mean"])
        for method, entry in methods.items():
            if method.startswith("motab"):
                diffs = [s["methods"][method]["score"] - s["methods"][best]["score"] for s in per_seed
                         if method in s["methods"] and best in s["methods"]]
                m, ci = mean_ci(diffs)
                entry["vs_best_baseline"] = {"baseline": best, "mean": m, "ci": ci}
    return methods


def summarize_monitors(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean (95% CI) over seeds of every monitor-quality statistic, per option."""
    out: dict[str, Any] = {}
    names = list(per_seed[0].get("monitors", {}))
    for name in names:
        rows = [s["monitors"][name] for s in per_seed]
        entry: dict[str, Any] = {}
        for key in rows[0]:
            if isinstance(rows[0][key], int):  # counts: summed over seeds
                entry[key] = sum(r[key] for r in rows)
                continue
            values = [r[key] for r in rows if not math.isnan(r[key])]  # nan: no case in that seed
            entry[key + "_mean"], entry[key + "_ci"] = mean_ci(values) if values else (math.nan, [math.nan] * 2)
            entry[key + "_seeds"] = len(values)
        out[name] = entry
    return out


def summarize(args: Args, per_seed: list[dict[str, Any]], pair_info: dict[str, Any], wall: float) -> dict[str, Any]:
    init_mean, init_ci = mean_ci([s["initial_student_score"] for s in per_seed])
    teacher_mean, teacher_ci = mean_ci([s["teacher_score"] for s in per_seed])
    result: dict[str, Any] = {
        "args": dataclasses.asdict(args), "budget_unit": "optimizer updates x batch size (sequences)",
        "pair": pair_info, "initial_student_score_mean": init_mean, "initial_student_score_ci": init_ci,
        "teacher_score_mean": teacher_mean, "teacher_score_ci": teacher_ci,
        "methods": summarize_methods(args, per_seed), "monitors": summarize_monitors(per_seed),
        "best_monitor_per_seed": [s.get("best_monitor") for s in per_seed],
        "seeds_done": len(per_seed), "wall_time_total": wall,
    }
    if per_seed and "reversed_exposure_bias" in per_seed[0]:
        rev = average_curves([s["reversed_exposure_bias"] for s in per_seed])
        result["reversed_exposure_bias"] = {
            "curve": rev, **{f"teacher_success_{k}": weighted_mean(rev, k) for k in rev["series"]}}
    if per_seed and "exposure_bias" in per_seed[0]:
        nll = average_curves([s["exposure_bias"]["nll"] for s in per_seed])
        acc = average_curves([s["exposure_bias"]["step_accuracy"] for s in per_seed])
        result["exposure_bias"] = {
            "student": "teacher_sft", "nll_curve": nll, "step_accuracy_curve": acc,
            **{f"nll_{k}": weighted_mean(nll, k) for k in nll["series"]},
            **{f"step_accuracy_{k}": weighted_mean(acc, k) for k in acc["series"]}}
    return result


def pair_config(args: Args):
    """The teacher–student pair of the benchmark (the default pair unless checkpoint paths are given)."""
    from distill_backend.motab.pair import PairConfig

    return PairConfig(student_path=args.student_path or None, teacher_path=args.teacher_path or None, device="cpu",
                      dtype="float32")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import torch

    from distill_backend.motab.pair import checkpoint_recipe, load_pair

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    began = time.perf_counter()
    pair_cfg = pair_config(args)
    pair = load_pair(pair_cfg)
    # The task and prompts are the student checkpoint's (a tiny warm start records its recipe).
    recipe = checkpoint_recipe(pair.student_path) or pair_cfg.student_recipe
    pair_info = {"student_path": pair.student_path, "teacher_path": pair.teacher_path,
                 "warmstart_greedy_accuracy": pair.warmstart_accuracy,
                 "student_parameters": sum(p.numel() for p in pair.student.parameters()),
                 "teacher_parameters": sum(p.numel() for p in pair.teacher.parameters()),
                 "task": dataclasses.asdict(recipe.task)}
    per_seed: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    init_state = {k: v.detach().clone() for k, v in pair.student.state_dict().items()}
    for seed in range(args.seeds):
        exp = Experiment(args, seed, pair, recipe, init_state)
        row: dict[str, Any] = {"seed": seed, "methods": {}}
        exp.reset_student()
        row["initial_student_score"] = exp.score(pair.student, salt=98)
        row["teacher_score"] = exp.score(pair.teacher, salt=97)
        row["reversed_exposure_bias"] = exp.reversed_exposure_bias()
        row["monitors"] = exp.measure_monitors()
        row["best_monitor"] = exp.best_monitor
        print(f"seed {seed}: initial student {row['initial_student_score']:.3f} teacher {row['teacher_score']:.3f} "
              f"best monitor {exp.best_monitor}", flush=True)
        for name, q in row["monitors"].items():
            print(f"  monitor {name:7s} breach recall {q['breach_recall']:.3f} precision {q['breach_precision']:.3f} "
                  f"step recall {q['step_recall']:.3f} precision {q['step_precision']:.3f}", flush=True)
        for method in args.methods:
            result = exp.run(method)
            if method == "teacher_sft":
                row["exposure_bias"] = exp.exposure_bias()
            row["methods"][method] = result
            right = result.get("right_answer_share", float("nan"))
            print(f"  {method:19s} score {result['score']:.3f}  right texts {right:.3f}  "
                  f"synth {result['time_synthesis']:.0f}s train {result['time_training']:.0f}s", flush=True)
        if seed == 0:  # every MOTAB trajectory of seed 0, once per monitor option that trained a variant
            records += [{"seed": seed, "monitor": monitor, **r._asdict()} for monitor, r in exp.motab_records()]
        per_seed.append(row)
        payload = summarize(args, per_seed, pair_info, time.perf_counter() - began)
        payload["per_seed"] = per_seed
        write_json(out, payload)  # after every seed: an interrupted run keeps what it has
        write_jsonl_dicts(records, out.with_name(out.stem + "_records.jsonl"))
    payload = summarize(args, per_seed, pair_info, time.perf_counter() - began)
    payload["per_seed"] = per_seed
    write_json(out, payload)
    if "exposure_bias" in payload:
        plot_curves(out.with_name(out.stem + "_exposure_bias.png"), [
            ("exposure bias: student NLL of the correct next step", "mean NLL / token", payload["exposure_bias"]["nll_curve"]),
            ("exposure bias: greedy next step correct", "step accuracy", payload["exposure_bias"]["step_accuracy_curve"]),
        ])
    if "reversed_exposure_bias" in payload:
        plot_curves(out.with_name(out.stem + "_reversed_exposure_bias.png"), [
            ("reversed exposure bias: teacher continues a prefix", "teacher final-answer success",
             payload["reversed_exposure_bias"]["curve"]),
        ])
    return payload


def write_jsonl_dicts(rows: list[dict[str, Any]], path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
