"""Update speed: the product's own update against TRL's ``DistillationTrainer``, in tokens per second.

Question: how many completion tokens per second does ``Qwen3DistillBackend.run_window`` (the update
``ATESD-Qwen3-v0`` runs, with every per-update statistic the env needs: loss and its tail,
mismatch, confidence, probe NLL, the teacher's reference log-prob, gradient norm, rollout length)
train, against TRL's on-policy ``DistillationTrainer`` on the same model, batch, prompts, completion
budget and divergence?

Setup (both sides): a random-init Qwen3 of the tiny default's shape (``WarmStartConfig().model``,
char tokenizer) saved as a local checkpoint; ``batch`` training questions of the synthetic task per
update, ``rollouts`` completions each, their student prompts in the backend's own draw order; sampling at
temperature 1 (no top-p / top-k), at most ``completion_length`` tokens, a row stops at
end-of-sequence; forward KL (``loss="forward_kl"`` without clip = TRL ``beta=0``), temperature 1;
AdamW at ``learning_rate``, gradient-norm clip 1.0; fp32 on CPU with ``threads`` intra-op threads.
Differences that stay: our teacher reads the teacher prompt at ``reveal_ratio`` (longer than the
student prompt; TRL's teacher reads the student's prompt), and our update also computes the env's
statistics. The in-run evaluation (``eval_every``) is off: it is a per-window cost, measured by
``benchmarks/eval_cost.py``.

Tokens are completion tokens trained on (end-of-sequence included). Each round builds a fresh
backend and a fresh trainer from the same weights, runs ``warmup_steps`` untimed updates, then
times ``timed_steps``; contenders alternate round by round in one process, so machine load hits
both alike. TRL's step time is read from ``on_step_end`` callbacks (construction excluded).
``--profile-updates N`` adds a cProfile of N backend updates (cumulative seconds per update of the
heaviest product functions), the "where does the time go" table of the closing note.

Run: ``python -m benchmarks.update_speed`` (writes ``benchmarks/results/update_speed.json`` and ``.png``).
"""

from __future__ import annotations

import contextlib
import copy
import cProfile
import dataclasses
import io
import json
import math
import pstats
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from exposure_env.commandline import parse_dataclass


@dataclass(frozen=True)
class Args:
    """Command-line arguments (each field is a ``--flag``)."""

    out: str = "benchmarks/results/update_speed.json"
    """Where to write the JSON result (atomically); a PNG with the same stem is written next to it."""
    seed: int = 0
    """Seed of the model initialisation, the question order and both samplers."""
    threads: int = 1
    """torch intra-op threads (the CI machine has 2 shared cores)."""
    batch: int = 16
    """Questions per update."""
    rollouts: int = 1
    """Rollouts per question (the env's default is 4). TRL's batch is ``batch x rollouts`` prompts, each
    question's prompt repeated ``rollouts`` times in a row (its trainer samples one completion per prompt)."""
    completion_length: int = 32
    """Most completion tokens sampled per prompt."""
    reveal_ratio: float = 1.0
    """Reveal ratio of our teacher prompt (1.0 = plain OPSD, the longest teacher prompt)."""
    warmup_steps: int = 2
    """Untimed updates at the start of every round."""
    timed_steps: int = 10
    """Timed updates per round and contender."""
    rounds: int = 5
    """Interleaved rounds (ours, TRL, ours, TRL, ...)."""
    learning_rate: float = 1e-4
    """AdamW learning rate of both."""
    profile_updates: int = 0
    """If > 0, cProfile this many backend updates after the rounds and report the heaviest functions."""
    skip_trl: bool = False
    """Time only our update (no TRL contender; no ratio)."""


class Workload(NamedTuple):
    checkpoint: str
    """Directory of the random-init student (and our frozen teacher's initial weights)."""
    teacher: Any
    """TRL's teacher: its own random init (a copy of the student would give TRL a zero loss)."""
    prompts: list[str]
    """Student prompts in the backend's draw order."""
    parameters: int


def build_workload(args: Args, directory: str) -> Workload:
    import numpy as np

    from distill_backend.models import init_tiny_qwen3
    from distill_backend.prompts import PromptConfig, student_prompt
    from distill_backend.task import make_splits
    from distill_backend.tokenizer import build_char_tokenizer
    from distill_backend.warmstart import WarmStartConfig

    recipe = WarmStartConfig()
    tokenizer = build_char_tokenizer(padding_side="left")
    model = init_tiny_qwen3(recipe.model, tokenizer, seed=args.seed)
    teacher = init_tiny_qwen3(recipe.model, tokenizer, seed=args.seed + 1)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    train = make_splits(recipe.task).train
    order = np.random.default_rng(args.seed).permutation(len(train))  # the backend's first epoch
    prompts = [student_prompt(train[i].problem, tokenizer, PromptConfig()) for i in order]
    return Workload(directory, teacher, prompts, sum(p.numel() for p in model.parameters()))


def backend_config(args: Args, checkpoint: str):
    from distill_backend.config import BackendConfig

    return BackendConfig(
        model=checkpoint, questions_per_update=args.batch, rollouts_per_question=args.rollouts,
        max_new_tokens=args.completion_length, rollout_temperature=1.0, rollout_top_p=1.0,
        loss="forward_kl", tau=math.inf, lr=args.learning_rate, grad_clip=1.0,
        eval_every=0, eval_size=1, eval_k=1, device="cpu", dtype="float32", seed=args.seed,
    )


class OursRunner:
    """Times ``Qwen3DistillBackend.run_window``: a fresh backend per round, construction and reset untimed."""

    def __init__(self, workload: Workload, args: Args) -> None:
        self.config = backend_config(args, workload.checkpoint)
        self.args = args
        self.tokens_per_step: list[float] = []

    def round(self) -> float:
        from distill_backend.backend import Qwen3DistillBackend

        backend = Qwen3DistillBackend(self.config)
        backend.reset(self.config.seed)
        warm = backend.run_window(self.args.reveal_ratio, self.args.warmup_steps)
        start = time.perf_counter()
        timed = backend.run_window(self.args.reveal_ratio, self.args.timed_steps)
        elapsed = time.perf_counter() - start
        assert not warm.diverged and not timed.diverged, "a timed window diverged"
        rows = self.args.batch * self.args.rollouts
        self.tokens_per_step.extend(float(n) * rows for n in timed.trace.rollout_length)
        backend.close()
        return elapsed / self.args.timed_steps


class _StepClock:
    """A TrainerCallback recording the wall time at the end of every optimizer step."""

    def __new__(cls):
        from transformers import TrainerCallback

        class Clock(TrainerCallback):
            def __init__(self) -> None:
                self.stamps: list[float] = []

            def on_step_end(self, args, state, control, **kwargs):
                self.stamps.append(time.perf_counter())

        return Clock()


class TrlRunner:
    """Builds a fresh ``DistillationTrainer`` per round (same initial weights) and times its steady steps."""

    def __init__(self, workload: Workload, args: Args) -> None:
        self.workload, self.args = workload, args
        self.tokens_per_step: list[float] = []

    def round(self) -> float:
        from datasets import Dataset
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from trl import DistillationConfig, DistillationTrainer

        args, wl = self.args, self.workload
        steps = args.warmup_steps + args.timed_steps
        clock = _StepClock()
        counts: list[int] = []
        tokenizer = AutoTokenizer.from_pretrained(wl.checkpoint, padding_side="left")
        student = AutoModelForCausalLM.from_pretrained(wl.checkpoint, dtype="float32")
        with tempfile.TemporaryDirectory() as out_dir, contextlib.redirect_stdout(io.StringIO()):
            config = DistillationConfig(
                output_dir=out_dir, per_device_train_batch_size=args.batch * args.rollouts, gradient_accumulation_steps=1,
                learning_rate=args.learning_rate, max_steps=steps, logging_steps=10_000, save_strategy="no",
                report_to="none", use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
                dataloader_num_workers=0, disable_tqdm=True, seed=args.seed, temperature=1.0, beta=0.0,
                lr_scheduler_type="constant", max_grad_norm=1.0, max_completion_length=args.completion_length,
                top_k=0, top_p=1.0, shuffle_dataset=False,
            )
            prompts = [p for p in wl.prompts[: args.batch * steps] for _ in range(args.rollouts)]
            dataset = Dataset.from_dict({"prompt": prompts})
            trainer = DistillationTrainer(model=student, teacher_model=copy.deepcopy(wl.teacher).eval(), args=config,
                                          train_dataset=dataset, processing_class=tokenizer, callbacks=[clock])
            original = trainer._generate_single_turn

            def counted(*a, **k):  # instrumentation only: counts the tokens each step trains on
                completions = original(*a, **k)
                counts.append(sum(len(c) for c in completions))
                return completions

            trainer._generate_single_turn = counted
            trainer.train()
        stamps, warm = clock.stamps, args.warmup_steps
        self.tokens_per_step.extend(counts[warm:steps])
        return (stamps[-1] - stamps[warm - 1]) / args.timed_steps


def profile_backend(workload: Workload, args: Args, top: int = 25) -> dict[str, Any]:
    """Cumulative seconds per update of the heaviest functions in a cProfile of ``profile_updates`` updates."""
    from distill_backend.backend import Qwen3DistillBackend

    config = backend_config(args, workload.checkpoint)
    backend = Qwen3DistillBackend(config)
    backend.reset(config.seed)
    backend.run_window(args.reveal_ratio, args.warmup_steps)
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    backend.run_window(args.reveal_ratio, args.profile_updates)
    profiler.disable()
    wall = (time.perf_counter() - start) / args.profile_updates
    stats = pstats.Stats(profiler)
    rows = []
    for (filename, line, name), (_, calls, _, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        ours = "distill_backend" in filename
        engine = ("run_backward" in name or name == "clip_grad_norm_"
                  or ("torch/optim" in filename and name in ("step", "adamw")))
        if ours or engine:
            where = filename.split("site-packages/")[-1].split("wt-perf/")[-1]
            rows.append({"function": f"{where}:{line}({name})", "calls_per_update": calls / args.profile_updates,
                         "seconds_per_update": cumulative / args.profile_updates,
                         "share": cumulative / args.profile_updates / wall})
    rows.sort(key=lambda r: -r["seconds_per_update"])
    backend.close()
    return {"updates": args.profile_updates, "seconds_per_update_profiled": wall, "top": rows[:top]}


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def measure(args: Args) -> dict[str, Any]:
    import logging

    import torch
    import transformers

    from exposure_env.stats import mean_ci

    transformers.logging.set_verbosity_error()
    logging.getLogger("trl").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as directory:
        workload = build_workload(args, directory)
        runners: dict[str, Any] = {"ours": OursRunner(workload, args)}
        if not args.skip_trl:
            runners["trl_distillation"] = TrlRunner(workload, args)
        seconds: dict[str, list[float]] = {name: [] for name in runners}
        for index in range(args.rounds):
            for name, runner in runners.items():
                seconds[name].append(runner.round())
                print(f"[update_speed] round {index}: {name} {seconds[name][-1] * 1e3:.0f} ms/update", flush=True)
        profile = profile_backend(workload, args) if args.profile_updates else None
    tokens = {n: sum(r.tokens_per_step) / len(r.tokens_per_step) for n, r in runners.items()}
    tokens_per_s = {n: [tokens[n] / s for s in seconds[n]] for n in runners}
    result: dict[str, Any] = {
        "seconds_per_update_per_round": seconds,
        "completion_tokens_per_update": tokens,
        "tokens_per_s_per_round": tokens_per_s,
        "tokens_per_s_median": {n: _median(v) for n, v in tokens_per_s.items()},
        "parameters": workload.parameters,
    }
    if "trl_distillation" in runners:
        ratios = [a / b for a, b in zip(tokens_per_s["ours"], tokens_per_s["trl_distillation"])]
        mean, interval = mean_ci(ratios)
        result.update(ratio_per_round=ratios, ratio_vs_trl=_median(ratios), ratio_mean_ci95=[mean, *interval])
    if profile is not None:
        result["profile"] = profile
    return result


def _plot(path: Path, result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in result["tokens_per_s_per_round"].items():
        ax.plot(range(len(values)), values, marker="o", label=name)
    ax.set_xlabel("interleaved round")
    ax.set_ylabel("completion tokens trained / s")
    ax.set_title("on-policy distillation update, tiny Qwen3 (CPU)")
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_dataclass(Args, argv, __doc__.split("\n\n")[0])
    import torch

    from agents.base import atomic_write_text

    payload: dict[str, Any] = {"settings": dataclasses.asdict(args), "torch": torch.__version__}
    if not args.skip_trl:
        import trl

        payload["trl_version"] = trl.__version__
    payload.update(measure(args))
    out = Path(args.out)
    atomic_write_text(out, json.dumps(payload, indent=2) + "\n")
    _plot(out.with_suffix(".png"), payload)
    print(json.dumps({k: payload.get(k) for k in ("tokens_per_s_median", "ratio_vs_trl", "ratio_mean_ci95")}))
    return payload


if __name__ == "__main__":
    main()
