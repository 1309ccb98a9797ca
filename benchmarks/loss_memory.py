"""Loss memory: peak memory of the fused distillation loss against B x T x V, and against TRL's.

Question: how much memory does one forward + backward of the training loss take at a real Qwen3
vocabulary (151,936 entries) and ``B x T = 8192`` completion positions, compared with one
``B x T x V`` fp32 tensor (the size of the full logits, ``naive_bytes``), and compared with TRL
1.16's chunked loss (``DistillationTrainer``'s ``_chunked_divergence_loss``) on the same inputs?

Each variant runs in a fresh subprocess on the CPU: it builds its inputs (student and teacher
hidden states ``(B, T, H)``, separate student and teacher output heads ``(V, H)``, 90% of the
positions valid), resets the kernel's peak-RSS counter, runs the loss forward and backward, and
reports the peak RSS minus the RSS with the inputs built (``extra_bytes``). glibc is told to map
every large block on its own (``MALLOC_MMAP_THRESHOLD_``) so freed tensors leave the RSS and the peak
tracks live tensor bytes. The gradients the loss hands back (hidden states ``B x T x H`` and head
weight ``V x H``, in the inputs' dtype) are part of every variant's peak and must exist after any
backward; ``working_bytes`` is the peak without them, the loss's own memory, and the headline
ratio is ``working_bytes / naive_bytes`` (goal <= 1/32). ``unfused`` (full logits, plain autograd)
is measured at a smaller ``naive_positions`` (the full-size one needs tens of GB).

Variants: ``fused`` (:func:`distill_backend.losses.fused_loss`), ``trl`` (TRL's loss), ``unfused``
(:func:`distill_backend.losses.unfused_loss`), all computing the forward KL without clip (TRL's
``beta=0``), so their loss values must agree (``loss_difference_vs_trl``); the clip changes no
buffer sizes.

Run: ``python -m benchmarks.loss_memory`` (writes ``benchmarks/results/loss_memory.json``; several
minutes of CPU: each projection of 8192 positions is 0.3 TFLOP at H = 128).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exposure_env.commandline import parse_dataclass

QWEN3_VOCAB = 151_936
MMAP_THRESHOLD = 1 << 16


@dataclass(frozen=True)
class Args:
    """Command-line arguments (each field is a ``--flag``)."""

    out: str = "benchmarks/results/loss_memory.json"
    """Where to write the JSON result (atomically)."""
    seed: int = 0
    """Seed of the random inputs."""
    threads: int = 2
    """torch intra-op threads in each child process."""
    vocab: int = QWEN3_VOCAB
    """Vocabulary size V."""
    positions: int = 8192
    """Completion positions B x T (as B = 16 sequences of T = positions / 16)."""
    hidden: int = 128
    """Hidden size H of both models (the tiny default's width: the tile buffers do not depend on H, the
    gradient accumulators grow with it; keeps the CPU run to minutes; ``gpu_check`` measures H = 1024)."""
    dtypes: tuple[str, ...] = ("bfloat16", "float32")
    """Dtypes of hidden states and heads to measure."""
    variants: tuple[str, ...] = ("fused", "trl")
    """Variants at full size (``fused``, ``trl``)."""
    naive_positions: int = 1024
    """Positions of the ``unfused`` reference run (0 skips it)."""
    child: str = ""
    """Internal: JSON spec of one measurement to run in this (fresh) process."""


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as handle:
        return int(re.search(rf"^{key}:\s+(\d+) kB", handle.read(), re.M).group(1))


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement in this process: build the inputs, reset the peak, run forward + backward."""
    import torch

    from distill_backend.losses import Head, LossConfig, fused_loss, unfused_loss

    torch.set_num_threads(spec["threads"])
    dtype = getattr(torch, spec["dtype"])
    positions, hidden, vocab = spec["positions"], spec["hidden"], spec["vocab"]
    batch = 16
    length = positions // batch
    gen = torch.Generator().manual_seed(spec["seed"])

    def randn(*shape, scale=1.0):
        out = torch.empty(*shape, dtype=dtype)
        for row in range(shape[0]):  # row by row, so building the inputs does not set the peak
            out[row] = (torch.randn(*shape[1:], generator=gen) * scale).to(dtype)
        return out

    student = randn(batch, length, hidden).requires_grad_(True)
    teacher = randn(batch, length, hidden)
    weight = randn(vocab, hidden, scale=hidden**-0.5 * 3).requires_grad_(True)
    t_weight = randn(vocab, hidden, scale=hidden**-0.5 * 3)
    tokens = torch.randint(0, vocab, (batch, length), generator=gen)
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[:, int(length * 0.9):] = False  # some right padding, as real batches have
    config = LossConfig(kind="forward_kl", tau=None)  # = TRL's beta=0, so the loss values must agree

    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # reset VmHWM to the current RSS
    baseline_kb = _status_kb("VmRSS")
    start = time.perf_counter()
    if spec["variant"] == "trl":
        from trl.trainer.distillation_trainer import _chunked_divergence_loss

        loss = _chunked_divergence_loss(student, teacher, weight, t_weight, mask, beta=0.0)[0]
    else:
        fn = fused_loss if spec["variant"] == "fused" else unfused_loss
        loss = fn(student, teacher, Head(weight), Head(t_weight), tokens, mask, config).loss
    loss.backward()
    seconds = time.perf_counter() - start
    peak_kb = _status_kb("VmHWM")
    returned = student.grad.numel() * student.grad.element_size() + weight.grad.numel() * weight.grad.element_size()
    extra = (peak_kb - baseline_kb) * 1024
    return {"extra_bytes": extra, "returned_gradient_bytes": returned, "working_bytes": extra - returned,
            "baseline_bytes": baseline_kb * 1024, "seconds": seconds, "loss": float(loss)}


def _run_child(spec: dict[str, Any]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.loss_memory", "--child", json.dumps(spec)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"memory child {spec} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(args: Args) -> dict[str, Any]:
    results: dict[str, Any] = {}
    base = dict(seed=args.seed, threads=args.threads, vocab=args.vocab, hidden=args.hidden)
    for dtype in args.dtypes:
        runs: dict[str, Any] = {}
        naive_bytes = args.positions * args.vocab * 4
        for variant in args.variants:
            runs[variant] = run = _run_child({**base, "dtype": dtype, "variant": variant, "positions": args.positions})
            run["working_ratio"] = run["working_bytes"] / naive_bytes
            run["total_ratio"] = run["extra_bytes"] / naive_bytes
            print(f"[loss_memory] {dtype} {variant}: working {run['working_bytes'] / 2**20:.0f} MiB "
                  f"({run['working_ratio']:.4f} of B x T x V fp32), total {run['extra_bytes'] / 2**20:.0f} MiB, "
                  f"{run['seconds']:.0f} s", flush=True)
        if args.naive_positions:
            small = args.naive_positions * args.vocab * 4
            for variant in ("unfused", "fused"):
                run = _run_child({**base, "dtype": dtype, "variant": variant, "positions": args.naive_positions})
                run["working_ratio"] = run["working_bytes"] / small
                runs[f"{variant}_at_{args.naive_positions}"] = run
        entry: dict[str, Any] = {"naive_bytes": naive_bytes, "runs": runs}
        if "fused" in runs and "trl" in runs:
            entry["fused_vs_trl_working"] = runs["fused"]["working_bytes"] / runs["trl"]["working_bytes"]
            entry["fused_vs_trl_total"] = runs["fused"]["extra_bytes"] / runs["trl"]["extra_bytes"]
            entry["loss_difference_vs_trl"] = abs(runs["fused"]["loss"] - runs["trl"]["loss"])
        results[dtype] = entry
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_dataclass(Args, argv, __doc__.split("\n\n")[0])
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return {}
    import torch

    from exposure_env.io import atomic_write_text

    payload: dict[str, Any] = {"settings": dataclasses.asdict(args), "torch": torch.__version__}
    del payload["settings"]["child"]
    if "trl" in args.variants:
        import trl

        payload["trl_version"] = trl.__version__
    payload["memory"] = memory = measure(args)
    payload["loss_memory_ratio"] = {d: m["runs"]["fused"]["working_ratio"] for d, m in memory.items()
                                    if "fused" in m["runs"]}
    payload["measure"] = (f"peak RSS minus RSS with inputs built, fresh process, MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD}; "
                          "working = that minus the returned gradients (hidden states and head weight)")
    atomic_write_text(Path(args.out), json.dumps(payload, indent=2) + "\n")
    print(json.dumps({"loss_memory_ratio": payload["loss_memory_ratio"],
                      "fused_vs_trl_working": {d: m.get("fused_vs_trl_working") for d, m in memory.items()}}))
    return payload


if __name__ == "__main__":
    main()
