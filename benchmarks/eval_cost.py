"""Evaluation cost: what the in-run score costs per window, and how noisy cheaper settings are.

Question: with ``ATESD-Qwen3-v0``'s defaults (``eval_every=1``, ``eval_size=200``, ``eval_k=4``:
800 sampled completions after every window of ``hold_window=4`` updates of 16 x 4 rollouts), how
does one evaluation's wall time compare with the window's updates, and what would cheaper
settings cost and lose in precision?

For each setting ``(eval_size, eval_k)`` the backend's own ``evaluate`` runs ``repeats`` times at
fixed weights with different evaluation seeds (the in-run score uses a fresh seed per window): the
mean wall time, and the standard deviation of the score across seeds, which is the window-to-window
noise the controller sees from sampling alone (the problem set is fixed). The window's cost is
``run_window(alpha, hold_window)`` with evaluation off, timed the same number of times.

The noise needs a partly competent model: pass ``--checkpoint`` (a local warm-start directory);
without one a random-init model of the tiny default's shape is timed and the noise is reported
as 0-accuracy (not informative).

Run: ``python -m benchmarks.eval_cost --checkpoint DIR`` (writes ``benchmarks/results/eval_cost.json``).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import args_from_namespace, dataclass_parser


@dataclass(frozen=True)
class Args:
    """Command-line arguments (each field is a ``--flag``)."""

    out: str = "benchmarks/results/eval_cost.json"
    """Where to write the JSON result (atomically)."""
    checkpoint: str = ""
    """Local checkpoint directory of a warm start (empty: a random-init model of the tiny default's shape)."""
    seed: int = 0
    """Run seed (question order, rollouts) and first evaluation seed."""
    threads: int = 1
    """torch intra-op threads."""
    hold_window: int = 4
    """Updates per window (the env default)."""
    reveal_ratio: float = 1.0
    """Reveal ratio of the timed windows."""
    settings: tuple[str, ...] = ("200x4", "200x2", "100x4", "200x1", "100x2", "64x2")
    """Evaluation settings as ``SIZExK`` (problems x samples per problem); the first is the default."""
    repeats: int = 6
    """Evaluations per setting (different evaluation seeds) and timed windows."""


def measure(args: Args) -> dict[str, Any]:
    import torch

    from distill_backend.backend import Qwen3DistillBackend
    from distill_backend.config import BackendConfig
    from distill_backend.evaluation import EvalConfig

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as directory:
        checkpoint = args.checkpoint
        if not checkpoint:
            from distill_backend.models import init_tiny_qwen3
            from distill_backend.tokenizer import build_char_tokenizer
            from distill_backend.warmstart import WarmStartConfig

            tokenizer = build_char_tokenizer()
            init_tiny_qwen3(WarmStartConfig().model, tokenizer, seed=args.seed).save_pretrained(directory)
            tokenizer.save_pretrained(directory)
            checkpoint = directory
        sizes = [tuple(int(x) for x in s.split("x")) for s in args.settings]
        config = BackendConfig(model=checkpoint, eval_every=0, eval_size=max(n for n, _ in sizes), eval_k=1,
                               device="cpu", dtype="float32", seed=args.seed)
        backend = Qwen3DistillBackend(config)
        backend.reset(args.seed)
        window = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            backend.run_window(args.reveal_ratio, args.hold_window)
            window.append(time.perf_counter() - start)
        backend.reset(args.seed)  # evaluate the initial weights
        results: dict[str, Any] = {}
        for name, (size, k) in zip(args.settings, sizes):
            eval_config = EvalConfig(k=k, temperature=config.eval_temperature, top_p=config.eval_top_p,
                                     max_new_tokens=config.max_new_tokens)
            seconds, scores = [], []
            for repeat in range(args.repeats):
                start = time.perf_counter()
                result = backend.evaluate(backend.eval_problems[:size], eval_config, seed=args.seed + 1000 + repeat)
                seconds.append(time.perf_counter() - start)
                scores.append(result.average_at_k)
            results[name] = {
                "eval_size": size, "eval_k": k, "completions": size * k,
                "seconds_mean": statistics.fmean(seconds), "score_mean": statistics.fmean(scores),
                "score_sd_across_seeds": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                "scores": scores,
            }
            print(f"[eval_cost] {name}: {results[name]['seconds_mean']:.2f} s, score "
                  f"{results[name]['score_mean']:.3f} +- {results[name]['score_sd_across_seeds']:.3f}", flush=True)
        backend.close()
    window_s = statistics.fmean(window)
    for entry in results.values():
        entry["eval_over_window"] = entry["seconds_mean"] / window_s
        entry["share_of_window_wall_time"] = entry["seconds_mean"] / (entry["seconds_mean"] + window_s)
    return {"window_seconds_mean": window_s, "window_seconds": window, "evaluations": results,
            "rollouts_per_window": args.hold_window * config.questions_per_update * config.rollouts_per_question}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = args_from_namespace(Args, dataclass_parser(Args, __doc__.split("\n\n")[0]).parse_args(argv))
    import torch

    from agents.base import atomic_write_text

    payload: dict[str, Any] = {"settings": dataclasses.asdict(args), "torch": torch.__version__}
    if args.checkpoint:
        info = Path(args.checkpoint) / "warmstart.json"
        if info.is_file():
            record = json.loads(info.read_text())
            payload["checkpoint_info"] = {k: record.get(k) for k in ("selected_step", "student_accuracy")}
    payload.update(measure(args))
    atomic_write_text(Path(args.out), json.dumps(payload, indent=2) + "\n")
    print(json.dumps({"window_seconds_mean": payload["window_seconds_mean"],
                      "default": payload["evaluations"][args.settings[0]]}))
    return payload


if __name__ == "__main__":
    main()
