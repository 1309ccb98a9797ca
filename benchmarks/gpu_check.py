"""GPU check: the CUDA + bf16 path of ``ATESD-Qwen3-v0`` at Qwen3-0.6B scale, in one short run.

Question: on a CUDA machine, does ``ATESD-Qwen3-v0`` run end to end in bf16 on a real-vocabulary
Qwen3 of ~0.6B parameters, how many completion tokens per second does its update train, and how
much GPU memory does the fused loss take against the ``B x T x V`` fp32 logits it never builds?

What it does (nothing is downloaded):

1. builds a character-level tokenizer padded to Qwen3's 151,936-entry vocabulary and a random-init
   Qwen3 of the 0.6B shape (hidden 1024, 28 layers, 16 heads, 8 KV heads, head_dim 128,
   intermediate 3072, tied embeddings), saved in bf16 to a temporary directory;
2. ``gym.make("ATESD-Qwen3-v0", model=<that directory>, device=..., dtype=...)``: reset and
   ``env_steps`` decisions; every observation and reward must be finite;
3. times ``Qwen3DistillBackend.run_window`` (evaluation off) on the same checkpoint: completion
   tokens trained per second;
4. the fused loss (forward KL with the clip, forward + backward) at ``B x T = loss_positions``:
   peak memory above its inputs against one ``B x T x V`` fp32 tensor, and the same for the unfused
   reference (full logits, plain autograd) unless ``skip_unfused``; on CUDA from the allocator's
   peak statistics, on the CPU from the process's peak RSS.

``--small`` swaps in a tiny model, vocabulary and batch so the same code runs on a CPU in seconds
(``tests/test_gpu_check.py`` runs it). ``benchmarks/gpu_check.sh`` is the one-command wrapper.

Run: ``python -m benchmarks.gpu_check --out $OUT/gpu_check.json`` (CUDA), or
``python -m benchmarks.gpu_check --device cpu --dtype float32 --small --out /tmp/gpu_check.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exposure_env.commandline import parse_dataclass

QWEN3_VOCAB = 151_936
QWEN3_0_6B = dict(hidden_size=1024, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                  intermediate_size=3072)
SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
             intermediate_size=128)


@dataclass(frozen=True)
class Args:
    """Command-line arguments (each field is a ``--flag``)."""

    out: str = "gpu_check.json"
    """Where to write the JSON result (the wrapper passes ``$OUT/gpu_check.json``)."""
    device: str = "cuda"
    """``cuda`` or ``cpu``."""
    dtype: str = "bfloat16"
    """Model dtype (``ATESD-Qwen3-v0``'s CUDA default; ``float32`` is the faster choice for the CPU smoke mode)."""
    small: bool = False
    """Tiny model (2 x 64), 4,096-entry vocabulary and small batches: the CPU smoke mode."""
    seed: int = 0
    """Seed of the initialisation and of the run."""
    env_steps: int = 2
    """Decisions of the env run (each ``hold_window`` updates)."""
    timed_updates: int = 8
    """Updates timed through ``run_window`` (after ``warmup_updates``)."""
    warmup_updates: int = 2
    """Untimed updates before the timed ones."""
    loss_positions: int = 8192
    """B x T of the loss-memory measurement (``--small``: 512)."""
    skip_unfused: bool = False
    """Skip the unfused reference (full logits, plain autograd: tens of GB of GPU memory at full size)."""


def build_tokenizer(vocab_size: int):
    """The char tokenizer's vocabulary padded with never-produced filler tokens to ``vocab_size``."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from distill_backend.tokenizer import CHARACTERS, SPECIAL_TOKENS

    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for char in CHARACTERS:
        vocab.setdefault(char, len(vocab))
    for i in range(vocab_size - len(vocab)):
        vocab[f"<filler_{i}>"] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL_TOKENS[3]))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    pad, eos, bos, unk = SPECIAL_TOKENS
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token=pad, eos_token=eos, bos_token=bos, unk_token=unk,
                                   padding_side="left", clean_up_tokenization_spaces=False)


def build_checkpoint(directory: str, args: Args) -> int:
    """Random-init Qwen3 + tokenizer saved to ``directory``; returns the parameter count."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    vocab = 4096 if args.small else QWEN3_VOCAB
    tokenizer = build_tokenizer(vocab)
    config = Qwen3Config(vocab_size=vocab, max_position_embeddings=4096, tie_word_embeddings=True,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id, **(SMALL if args.small else QWEN3_0_6B))
    torch.manual_seed(args.seed)  # a script: the global RNG is ours
    with torch.device(args.device):
        model = Qwen3ForCausalLM(config).to(getattr(torch, args.dtype))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    count = sum(p.numel() for p in model.parameters())
    del model
    return count


def backend_kwargs(args: Args, checkpoint: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(model=checkpoint, device=args.device, dtype=args.dtype, seed=args.seed)
    if args.small:
        kwargs.update(questions_per_update=4, rollouts_per_question=2, max_new_tokens=12, eval_size=8, eval_k=1,
                      probe_batch=8)
    return kwargs


def run_env(args: Args, checkpoint: str) -> dict[str, Any]:
    """Reset and ``env_steps`` decisions of the registered env; everything must be finite."""
    import gymnasium as gym
    import numpy as np

    import exposure_env  # noqa: F401  (registers the env ids)

    env = gym.make("ATESD-Qwen3-v0", total_updates=64, hold_window=4, **backend_kwargs(args, checkpoint))
    start = time.perf_counter()
    obs, _ = env.reset(seed=args.seed)
    observations, rewards = [obs], []
    for step in range(args.env_steps):
        obs, reward, terminated, truncated, _ = env.step(np.array([0.5 + 0.25 * step], dtype=np.float32))
        observations.append(obs)
        rewards.append(float(reward))
        if terminated or truncated:
            break
    seconds = time.perf_counter() - start
    env.close()
    finite = bool(np.isfinite(np.stack(observations)).all() and all(math.isfinite(r) for r in rewards))
    return {"finite": finite, "decisions": len(rewards), "rewards": rewards,
            "observations": np.stack(observations).tolist(), "seconds": seconds}


def time_updates(args: Args, checkpoint: str) -> dict[str, Any]:
    """Completion tokens trained per second by ``run_window`` (no evaluation)."""
    import torch

    from distill_backend.backend import Qwen3DistillBackend
    from distill_backend.config import backend_config_from_kwargs

    config = backend_config_from_kwargs({**backend_kwargs(args, checkpoint), "eval_every": 0})
    backend = Qwen3DistillBackend(config)
    backend.reset(args.seed)
    backend.run_window(1.0, args.warmup_updates)
    if args.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = backend.run_window(1.0, args.timed_updates)
    if args.device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    rows = config.questions_per_update * config.rollouts_per_question
    tokens = float(sum(result.trace.rollout_length)) * rows
    trace_finite = all(math.isfinite(float(v)) for field in result.trace for v in field)
    out = {"tokens_per_s": tokens / seconds, "seconds_per_update": seconds / args.timed_updates,
           "completion_tokens_per_update": tokens / args.timed_updates, "rows_per_update": rows,
           "finite": trace_finite and not result.diverged, "diverged": result.diverged,
           "last_stats": {k: float(v) for k, v in result.stats._asdict().items()}}
    if args.device == "cuda":
        out["peak_gpu_bytes_during_updates"] = torch.cuda.max_memory_allocated()
    backend.close()
    return out


def _rss_kb(key: str) -> int:
    with open("/proc/self/status") as handle:
        return int(re.search(rf"^{key}:\s+(\d+) kB", handle.read(), re.M).group(1))


def loss_memory(args: Args, dtype_name: str, variant: str) -> dict[str, Any]:
    """Peak memory of one loss forward + backward above its inputs (CUDA allocator, or CPU peak RSS)."""
    import torch

    from distill_backend.losses import Head, LossConfig, fused_loss, unfused_loss

    positions = 512 if args.small else args.loss_positions
    hidden = SMALL["hidden_size"] if args.small else QWEN3_0_6B["hidden_size"]
    vocab = 4096 if args.small else QWEN3_VOCAB
    dtype, device = getattr(torch, dtype_name), torch.device(args.device)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    batch = 16
    length = positions // batch
    student = torch.randn(batch, length, hidden, generator=gen, device=device).to(dtype).requires_grad_(True)
    teacher = torch.randn(batch, length, hidden, generator=gen, device=device).to(dtype)
    weight = (torch.randn(vocab, hidden, generator=gen, device=device) * 3 * hidden**-0.5).to(dtype).requires_grad_(True)
    t_weight = (torch.randn(vocab, hidden, generator=gen, device=device) * 3 * hidden**-0.5).to(dtype)
    tokens = torch.randint(0, vocab, (batch, length), generator=gen, device=device)
    mask = torch.ones(batch, length, dtype=torch.bool, device=device)
    mask[:, int(length * 0.9):] = False
    fn = fused_loss if variant == "fused" else unfused_loss
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        baseline = _rss_kb("VmRSS") * 1024
    start = time.perf_counter()
    loss = fn(student, teacher, Head(weight), Head(t_weight), tokens, mask, LossConfig(kind="forward_kl", tau=0.05)).loss
    loss.backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - baseline
    else:
        peak = _rss_kb("VmHWM") * 1024 - baseline
    seconds = time.perf_counter() - start
    returned = student.grad.numel() * student.grad.element_size() + weight.grad.numel() * weight.grad.element_size()
    naive = positions * vocab * 4
    finite = bool(torch.isfinite(loss).item() and torch.isfinite(student.grad).all().item()
                  and torch.isfinite(weight.grad).all().item())
    result = {"positions": positions, "hidden": hidden, "vocab": vocab, "extra_bytes": peak,
              "returned_gradient_bytes": returned, "working_bytes": peak - returned, "naive_bytes": naive,
              "working_ratio": (peak - returned) / naive, "total_ratio": peak / naive, "seconds": seconds,
              "loss": float(loss), "finite": finite}
    del student, teacher, weight, t_weight, loss
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def environment(args: Args) -> dict[str, Any]:
    import torch
    import transformers

    info = {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "device": args.device}
    if args.device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_dataclass(Args, argv, __doc__.split("\n\n")[0])
    import torch

    from exposure_env.io import atomic_write_text

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: CUDA is not available (use --device cpu --small for the CPU smoke mode)")
    started = time.perf_counter()
    payload: dict[str, Any] = {"settings": dataclasses.asdict(args), "environment": environment(args)}
    with tempfile.TemporaryDirectory() as directory:
        payload["parameters"] = build_checkpoint(directory, args)
        payload["env"] = run_env(args, directory)
        print(f"[gpu_check] env: finite={payload['env']['finite']} in {payload['env']['seconds']:.1f} s", flush=True)
        payload["update"] = time_updates(args, directory)
        print(f"[gpu_check] update: {payload['update']['tokens_per_s']:.0f} tokens/s", flush=True)
    memory: dict[str, Any] = {}
    for dtype_name in ("bfloat16", "float32"):
        for variant in ("fused",) if args.skip_unfused else ("fused", "unfused"):
            memory[f"{variant}_{dtype_name}"] = run = loss_memory(args, dtype_name, variant)
            print(f"[gpu_check] loss {variant} {dtype_name}: working {run['working_ratio']:.4f} of B x T x V fp32, "
                  f"total {run['total_ratio']:.4f}", flush=True)
    payload["loss_memory"] = memory
    payload["finite"] = bool(payload["env"]["finite"] and payload["update"]["finite"]
                             and all(run["finite"] for run in memory.values()))
    payload["seconds"] = time.perf_counter() - started
    atomic_write_text(Path(args.out), json.dumps(payload, indent=2) + "\n")
    summary = {"finite": payload["finite"], "update_tokens_per_s": payload["update"]["tokens_per_s"],
               "fused_working_ratio": {k: v["working_ratio"] for k, v in memory.items() if k.startswith("fused")},
               "seconds": payload["seconds"]}
    print(json.dumps(summary))
    return payload


if __name__ == "__main__":
    main()
