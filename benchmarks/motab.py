"""MOTAB against its baselines on the tiny teacher–student pair, with the dual exposure biases.

One question: does monitoring the student and backtracking when it strays (MOTAB) give a better
student than off-policy SFT on teacher trajectories, speculative KD (step or token level) and
on-policy reverse-KL distillation, at an equal training budget? And are the two exposure biases
the method is built on visible at this scale?

Per seed, every method starts from the same warm-started student and gets the same budget:
``updates`` optimizer updates on batches of ``batch_size`` sequences (MOTAB + rKL: half SFT on
MOTAB texts, half on-policy rKL). SFT methods synthesize their texts once, from the initial
student, on a seeded pool of ``pool_size`` training questions; no text is filtered for
correctness. The final student is scored by Average@k on test problems (temperature 1, top-p .95).

Run: ``python -m benchmarks.motab --seeds 3 --out benchmarks/results/motab.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import args_from_namespace, dataclass_parser

METHODS: tuple[str, ...] = (
    "teacher_sft", "step_skd", "token_skd", "onpolicy_rkl", "motab", "motab_rkl", "motab_masked",
)
"""``motab_masked`` is an ablation: MOTAB with ``loss_on_strayed_steps=False`` (no SFT on the strayed
student steps kept before the revise marker)."""


@dataclass(frozen=True)
class Args:
    """Command-line arguments (each field is a ``--flag``)."""

    out: str = "benchmarks/results/motab.json"
    """Where to write the JSON (atomically); PNGs and the JSONL records go next to it."""
    seeds: int = 3
    """Number of seeds (0..seeds-1); each seed redraws the question pool and every random draw."""
    methods: tuple[str, ...] = METHODS
    """Methods to run (subset of the default)."""
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
    """MOTAB base boundary."""
    entropy_mode: str = "topk"
    """MOTAB boundary mode (``topk`` or ``static``)."""
    token_skd_top_k: int = 1
    """Token-SKD K. The paper's K=20 is 0.013% of Qwen3's 151,936 tokens; of our 104 characters it
    is 19% and admits every digit, so the teacher would almost never intervene (0.8% of tokens in a
    trial run). Scaled to the vocabulary, K=1."""
    threads: int = 1
    """torch intra-op threads (1: on 2 shared cores, 2 threads made an SFT update ~80x slower)."""
    task_steps: tuple[int, ...] = (2, 4, 6)
    """Steps of the task's difficulty levels (easy, medium, hard); must match the checkpoints' task."""
    student_path: str = ""
    """Local checkpoint of the student ("" = build/load the tiny warm start of :mod:`distill_backend.motab.pair`)."""
    teacher_path: str = ""
    """Local checkpoint of the teacher ("" = the tiny warm start)."""


def parse_args(argv: list[str] | None = None) -> Args:
    parser = dataclass_parser(Args, (__doc__ or "").split("\n\n")[0])
    args = args_from_namespace(Args, parser.parse_args(argv))
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
    return args


def mean_ci(values: list[float]) -> tuple[float, list[float]]:
    """Mean and 95% Student-t confidence interval over seeds (degenerate for one seed)."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, [mean, mean]
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return mean, [mean - half, mean + half]


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


class Experiment:
    """Everything one seed needs: the pair, prompts, data pool, and the method runners."""

    def __init__(self, args: Args, seed: int, pair, splits, init_state: dict[str, Any]) -> None:
        import torch

        from distill_backend.evaluation import EvalConfig
        from distill_backend.motab import MotabConfig
        from distill_backend.motab.pipeline import TokenizerInfo
        from distill_backend.motab.training import TrainConfig
        from distill_backend.prompts import student_prompt

        self.args, self.seed, self.pair = args, seed, pair
        self.tok = TokenizerInfo.of(pair.tokenizer)
        # The warm start, taken once in main(): the shared student module is retrained by every method.
        self.init_state = init_state
        pick = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(10_000 + seed))
        self.pool = [splits.train[i] for i in pick[: args.pool_size].tolist()]
        self.test = list(splits.test[: args.test_size])
        self.prompt_text = lambda p: student_prompt(p.problem, pair.tokenizer)
        # The MOTAB teacher is a stronger model answering the same question: same prompt as the student.
        self.pool_prompts = [self.tok.encode(self.prompt_text(p)) for p in self.pool]
        self.cfg = MotabConfig.tiny(eps0=args.eps0, entropy_mode=args.entropy_mode, skd_token_top_k=args.token_skd_top_k)
        self.train_cfg = TrainConfig(updates=args.updates, batch_size=args.batch_size, lr=args.lr,
                                     max_new_tokens=self.cfg.student_max_new_tokens)
        self.eval_cfg = EvalConfig(k=args.eval_k, max_new_tokens=96)
        self.generator = lambda salt: torch.Generator().manual_seed(1_000 * seed + salt)

    # -- helpers -----------------------------------------------------------------------------

    def reset_student(self) -> None:
        self.pair.student.load_state_dict(self.init_state)

    def score(self, model, salt: int) -> float:
        from distill_backend.evaluation import evaluate_prompts

        prompts = [self.prompt_text(p) for p in self.test]
        return evaluate_prompts(model, self.pair.tokenizer, prompts, self.test, self.eval_cfg,
                                self.generator(salt), self.pair.device).average_at_k

    def sft(self, completions, loss_masks=None, updates=None):
        from distill_backend.motab.training import SftExample, train_sft

        masks = loss_masks or [[True] * len(c) for c in completions]
        examples = [SftExample(p, c, m) for p, c, m in zip(self.pool_prompts, completions, masks) if c]
        cfg = dataclasses.replace(self.train_cfg, updates=self.train_cfg.updates if updates is None else updates)
        return train_sft(self.pair.student, examples, cfg, self.tok.pad_id, self.generator(7))

    def rkl(self, updates: int):
        from distill_backend.motab.training import train_onpolicy_rkl

        cfg = dataclasses.replace(self.train_cfg, updates=updates)
        return train_onpolicy_rkl(self.pair.student, self.pair.teacher, self.pool_prompts, self.pool_prompts, cfg,
                                  self.tok.eos_id, self.tok.pad_id, self.generator(8))

    def synthesize(self, fn, batch: int = 256):
        """Run a rollout function over the pool in batches; concatenates the per-batch outputs."""
        outs = []
        for start in range(0, len(self.pool_prompts), batch):
            chunk = self.pool_prompts[start:start + batch]
            outs.append(fn(self.pair.student, self.pair.teacher, chunk, chunk, self.tok, self.cfg, self.generator(start + 3)))
        return outs

    def motab_data(self, loss_on_strayed_steps: bool = True):
        from distill_backend.motab.pipeline import motab_rollouts
        from distill_backend.motab.stitch import ORIGIN_STRAYED

        batches = self.synthesize(motab_rollouts)
        stitched = [s for b in batches for s in b.stitched]
        records = [r for b in batches for r in b.records]
        masks = [[loss_on_strayed_steps or o != ORIGIN_STRAYED for o in s.origin] for s in stitched]
        return [s.ids for s in stitched], masks, records

    # -- methods -----------------------------------------------------------------------------

    def teacher_completions(self) -> list[list[int]]:
        from distill_backend.motab.lm import sample

        completions: list[list[int]] = []
        for i in range(0, len(self.pool_prompts), 256):
            completions += sample(self.pair.teacher, self.pool_prompts[i:i + 256], self.cfg.teacher_max_new_tokens,
                                  eos_id=self.tok.eos_id, pad_id=self.tok.pad_id, temperature=self.cfg.temperature,
                                  generator=self.generator(i + 1)).tokens
        return completions

    def run(self, method: str) -> dict[str, Any]:
        """Train a fresh copy of the initial student with ``method`` and score it."""
        from distill_backend.motab.pipeline import breach_stats
        from distill_backend.motab.skd import step_skd_rollouts, token_skd_rollouts

        self.reset_student()
        start = time.perf_counter()
        extra: dict[str, Any] = {}
        if method == "teacher_sft":
            completions = self.teacher_completions()
            synth = time.perf_counter()
            log = self.sft(completions)
        elif method in ("step_skd", "token_skd"):
            batches = self.synthesize(step_skd_rollouts if method == "step_skd" else token_skd_rollouts)
            completions = [c for b in batches for c in b.completions]
            interventions = sum(sum(b.interventions) for b in batches)
            extra["intervention_rate"] = interventions / max(1, sum(sum(b.units) for b in batches))
            synth = time.perf_counter()
            log = self.sft(completions)
        elif method == "onpolicy_rkl":
            synth = time.perf_counter()
            log = self.rkl(self.args.updates)
        else:
            ids, masks, records = self.motab_data(loss_on_strayed_steps=method != "motab_masked")
            extra.update(breach_stats(records)._asdict())
            extra.update(monitor_diagnostics(records, self.pool))
            extra["records"] = records
            synth = time.perf_counter()
            if method in ("motab", "motab_masked"):
                log = self.sft(ids, masks)
            else:
                half = self.args.updates // 2
                first = self.sft(ids, masks, updates=half)
                second = self.rkl(self.args.updates - half)
                log = first._replace(losses=first.losses + second.losses, sequences=first.sequences + second.sequences,
                                     tokens=first.tokens + second.tokens)
        trained = time.perf_counter()
        score = self.score(self.pair.student, salt=99)
        done = time.perf_counter()
        return {"score": score, "sequences": log.sequences, "loss_tokens": log.tokens,
                "final_loss": float(sum(log.losses[-10:]) / max(1, len(log.losses[-10:]))),
                "time_synthesis": synth - start, "time_training": trained - synth, "time_eval": done - trained, **extra}

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


def monitor_diagnostics(records, problems) -> dict[str, float]:
    """How well the teacher's monitor finds the student's real mistakes (the chain task is checkable).

    A step is wrong when it differs from the locally correct next line (:func:`chain_next_step`).
    ``monitor_auc``: probability that a wrong step has a lower oracle value than a right one.
    ``breach_recall``: share of trajectories containing a wrong step that breached.
    ``breach_precision``: share of breached trajectories with a wrong step at or before the breach.
    ``root_cause_hit``: share of those where the root cause is the first wrong step.
    """
    from distill_backend.motab.exposure_bias import chain_next_step

    right, wrong = [], []
    erroneous = breached_with_error = breached = precise = hits = 0
    for record, problem in zip(records, problems):
        lines = record.student_text.split("\n")
        labels = [lines[k].strip() == chain_next_step(problem, [x.strip() for x in lines[:k]])
                  for k in range(min(len(lines), len(record.oracle_values)))]
        for ok, value in zip(labels, record.oracle_values):
            (right if ok else wrong).append(value)
        first_wrong = next((k for k, ok in enumerate(labels) if not ok), None)
        erroneous += first_wrong is not None
        if record.breach_step is not None:
            breached += 1
            if first_wrong is not None:
                breached_with_error += 1
                if first_wrong <= record.breach_step:
                    precise += 1
                    hits += record.root_cause == first_wrong
    from scipy.stats import mannwhitneyu

    # AUC = P(V_wrong < V_right) (ties count half) = Mann-Whitney U of "right" over "wrong" / pairs.
    auc = float(mannwhitneyu(right, wrong).statistic) / (len(right) * len(wrong)) if right and wrong else float("nan")
    return {"monitor_auc": auc, "wrong_step_value_mean": sum(wrong) / len(wrong) if wrong else float("nan"),
            "right_step_value_mean": sum(right) / len(right) if right else float("nan"),
            "breach_recall": breached_with_error / erroneous if erroneous else float("nan"),
            "breach_precision": precise / breached if breached else float("nan"),
            "root_cause_hit": hits / precise if precise else float("nan")}


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


def summarize(args: Args, per_seed: list[dict[str, Any]], pair_info: dict[str, Any], wall: float) -> dict[str, Any]:
    methods: dict[str, Any] = {}
    for method in args.methods:
        runs = [s["methods"][method] for s in per_seed if method in s["methods"]]
        if not runs:
            continue
        mean, ci = mean_ci([r["score"] for r in runs])
        entry = {"score_mean": mean, "score_ci": ci, "scores": [r["score"] for r in runs],
                 "sequences": runs[0]["sequences"], "loss_tokens_mean": sum(r["loss_tokens"] for r in runs) / len(runs),
                 "wall_time_mean": sum(r["time_synthesis"] + r["time_training"] + r["time_eval"] for r in runs) / len(runs)}
        for key in ("breach_rate", "mean_backtrack_distance", "mean_breach_step", "mean_root_cause", "intervention_rate",
                    "monitor_auc", "wrong_step_value_mean", "right_step_value_mean", "breach_recall",
                    "breach_precision", "root_cause_hit"):
            if key in runs[0]:
                entry[key + "_mean"] = sum(r[key] for r in runs) / len(runs)
        methods[method] = entry
    init_mean, init_ci = mean_ci([s["initial_student_score"] for s in per_seed])
    teacher_mean, teacher_ci = mean_ci([s["teacher_score"] for s in per_seed])
    result: dict[str, Any] = {
        "args": dataclasses.asdict(args), "budget_unit": "optimizer updates x batch size (sequences)",
        "pair": pair_info, "initial_student_score_mean": init_mean, "initial_student_score_ci": init_ci,
        "teacher_score_mean": teacher_mean, "teacher_score_ci": teacher_ci, "methods": methods,
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
    """The teacher–student pair of the benchmark (tiny warm starts on ``args.task_steps`` unless
    checkpoint paths are given)."""
    from distill_backend.motab.pair import PairConfig, default_student_recipe
    from distill_backend.task import TaskConfig

    student_recipe = dataclasses.replace(default_student_recipe(), task=TaskConfig(num_steps=args.task_steps))
    return PairConfig(student_recipe=student_recipe, student_path=args.student_path or None,
                      teacher_path=args.teacher_path or None, device="cpu", dtype="float32")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import torch

    from distill_backend.motab.pair import load_pair
    from distill_backend.task import make_splits

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    began = time.perf_counter()
    pair_cfg = pair_config(args)
    pair = load_pair(pair_cfg)
    splits = make_splits(pair_cfg.student_recipe.task)
    pair_info = {"student_path": pair.student_path, "teacher_path": pair.teacher_path,
                 "warmstart_greedy_accuracy": pair.warmstart_accuracy,
                 "student_parameters": sum(p.numel() for p in pair.student.parameters()),
                 "teacher_parameters": sum(p.numel() for p in pair.teacher.parameters())}
    per_seed: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    init_state = {k: v.detach().clone() for k, v in pair.student.state_dict().items()}
    for seed in range(args.seeds):
        exp = Experiment(args, seed, pair, splits, init_state)
        row: dict[str, Any] = {"seed": seed, "methods": {}}
        exp.reset_student()
        row["initial_student_score"] = exp.score(pair.student, salt=98)
        row["teacher_score"] = exp.score(pair.teacher, salt=97)
        row["reversed_exposure_bias"] = exp.reversed_exposure_bias()
        print(f"seed {seed}: initial student {row['initial_student_score']:.3f} teacher {row['teacher_score']:.3f}",
              flush=True)
        for method in args.methods:
            result = exp.run(method)
            for r in result.pop("records", []):
                # The other MOTAB variants synthesize the same texts; seed 0 keeps the file small.
                if method == "motab" and seed == 0:
                    records.append({"seed": seed, **r._asdict()})
            if method == "teacher_sft":
                row["exposure_bias"] = exp.exposure_bias()
            row["methods"][method] = result
            print(f"  {method:13s} score {result['score']:.3f}  synth {result['time_synthesis']:.0f}s "
                  f"train {result['time_training']:.0f}s", flush=True)
        per_seed.append(row)
        payload = summarize(args, per_seed, pair_info, time.perf_counter() - began)
        payload["per_seed"] = per_seed
        write_json_atomic(out, payload)  # after every seed: an interrupted run keeps what it has
        write_jsonl_dicts(records, out.with_name(out.stem + "_records.jsonl"))
    payload = summarize(args, per_seed, pair_info, time.perf_counter() - began)
    payload["per_seed"] = per_seed
    write_json_atomic(out, payload)
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
