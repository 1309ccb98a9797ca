"""Throughput of our on-policy distillation update against TRL's, and peak memory of the chunked loss.

Two questions, one script:

1. ``loss_memory_ratio``: how much memory does :func:`distill_backend.losses.distillation_loss`
   (forward + backward) need at a real Qwen3 vocabulary (151,936 entries), against the naive full
   ``B x T x V`` computation of the same loss with plain autograd? Each variant runs in a fresh
   subprocess; the extra memory is the process's peak RSS (``VmHWM``) minus its RSS once the
   inputs are allocated (the peak is reset with ``/proc/self/clear_refs`` after the inputs are
   built). The gradient w.r.t. the student logits (one ``B x T x V`` tensor in their dtype) is
   part of every variant: any logits-level loss must hand it to autograd.
2. ``ratio_vs_trl``: tokens/s of our update (KV-cache sampling with ``model.generate``, frozen
   teacher forward under ``no_grad``, student forward, chunked forward KL, grad clip, AdamW)
   against TRL's on-policy distillation trainers on the same random-init tiny Qwen3, tokenizer,
   prompts, batch, completion length and divergence (forward KL = TRL ``beta=0``), timed in one
   process with the contenders interleaved round by round. Tokens are completion tokens trained
   on. TRL's time per step is read from ``on_step_end`` callbacks, so trainer construction and the
   first warm-up steps are excluded. ``ratio_vs_trl`` is against the faster of TRL's
   ``DistillationTrainer`` (its on-policy distillation trainer) and the experimental
   ``GKDTrainer`` with ``lmbda=1``. A second variant of our update samples with
   :func:`lean_sample`, a lean KV-cache decode that calls the Qwen3 weights directly (checked
   against the transformers forward), to show how much of the step is decode overhead
   (``ratio_vs_trl_lean_decode``), and the real ``Qwen3DistillBackend.run_window`` on the same
   model saved as a checkpoint (``ratio_vs_trl_backend``; it does more per update, see
   :class:`BackendRunner`).

Run: ``python -m benchmarks.backend_throughput --out benchmarks/results/backend_throughput.json``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from benchmarks.common import args_from_namespace, dataclass_parser

QWEN3_VOCAB = 151_936
MMAP_THRESHOLD = 1 << 16
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@dataclass(frozen=True)
class Args:
    """Command-line arguments (each field is a ``--flag``; see the field docstrings)."""

    out: str = "benchmarks/results/backend_throughput.json"
    """Where to write the JSON result (atomically); a PNG with the same stem is written next to it."""
    seed: int = 0
    """Seed of the model initialisation, the prompts and the samplers."""
    threads: int = 1
    """torch intra-op threads for every measurement (the CI machine has 2 shared cores)."""
    memory_vocab: int = QWEN3_VOCAB
    """Vocabulary size of the memory measurement (Qwen3's real one by default)."""
    memory_batch: int = 4
    """Batch size B of the memory measurement."""
    memory_length: int = 256
    """Completion length T of the memory measurement."""
    memory_chunk_rows: tuple[int, ...] = (16, 64, 256)
    """Fixed rows per chunk to measure besides the library default (the headline, which caps rows x V)."""
    memory_dtypes: tuple[str, ...] = ("bfloat16", "float32")
    """Logit dtypes to measure; the first one is the headline (Qwen3's native dtype)."""
    batch: int = 16
    """Prompts per training step for the throughput comparison (one completion each)."""
    completion_length: int = 32
    """Completion tokens sampled per prompt (end-of-sequence suppressed so every step trains the same count)."""
    hidden: int = 64
    """Hidden size of the tiny Qwen3."""
    layers: int = 2
    """Number of decoder layers of the tiny Qwen3."""
    warmup_steps: int = 2
    """Untimed steps at the start of every round."""
    timed_steps: int = 10
    """Timed steps per round and contender."""
    rounds: int = 5
    """Interleaved rounds (ours, ours with lean decode, TRL Distillation, TRL GKD, then again)."""
    learning_rate: float = 1e-4
    """AdamW learning rate of every contender."""
    skip_memory: bool = False
    """Skip the memory measurement."""
    skip_throughput: bool = False
    """Skip the throughput comparison."""
    memory_child: str = ""
    """Internal: JSON spec of one memory measurement to run in this (fresh) process."""


# ----------------------------------------------------------------------------------------------
# Part 1: peak memory of the loss
# ----------------------------------------------------------------------------------------------


def _proc_status_kb(key: str) -> int:
    with open("/proc/self/status") as handle:
        return int(re.search(rf"^{key}:\s+(\d+) kB", handle.read(), re.M).group(1))


def _memory_child(spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement in this process: build inputs, reset the peak, run loss forward + backward."""
    import torch

    from distill_backend.losses import distillation_loss, forward_kl_clipped

    torch.set_num_threads(spec["threads"])
    dtype = getattr(torch, spec["dtype"])
    batch, length, vocab = spec["batch"], spec["length"], spec["vocab"]
    gen = torch.Generator().manual_seed(spec["seed"])

    def logits() -> torch.Tensor:
        out = torch.empty(batch, length, vocab, dtype=dtype)
        for row in range(batch):  # row by row, so building the inputs does not set the peak
            out[row] = (torch.randn(length, vocab, generator=gen) * 3).to(dtype)
        return out

    student, teacher = logits().requires_grad_(True), logits()
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[:, int(length * 0.9):] = False  # some right padding, as real batches have
    # Warm the allocator and kernels on a tiny case so one-off setup is not counted.
    small = torch.randn(2, 3, 5, requires_grad=True)
    distillation_loss(small, torch.randn(2, 3, 5), torch.ones(2, 3)).loss.backward()
    forward_kl_clipped(small, torch.randn(2, 3, 5)).sum().backward()

    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # reset VmHWM to the current RSS
    baseline_kb = _proc_status_kb("VmRSS")
    start = time.perf_counter()
    variant, tau, chunk = spec["variant"], 0.05, spec["chunk_size"]
    if variant == "ours":  # chunk 0: the library defaults
        rows = {"chunk_size": chunk, "chunk_elements": chunk * vocab} if chunk else {}
        loss = distillation_loss(student, teacher, mask, kind="forward_kl", tau=tau, **rows).loss
    elif variant == "naive":
        loss = forward_kl_clipped(student, teacher, tau)[mask].sum() / mask.sum()
    elif variant == "chunked_autograd":  # a plain Python loop over chunks: autograd keeps every chunk alive
        flat_s, flat_t = student[mask], teacher[mask]
        loss = sum(
            forward_kl_clipped(flat_s[i : i + chunk], flat_t[i : i + chunk], tau).sum()
            for i in range(0, flat_s.shape[0], chunk)
        ) / mask.sum()
    else:
        raise ValueError(f"unknown variant {variant!r}")
    loss.backward()
    seconds = time.perf_counter() - start
    peak_kb = _proc_status_kb("VmHWM")
    grad_bytes = student.grad.numel() * student.grad.element_size()
    return {
        "extra_bytes": (peak_kb - baseline_kb) * 1024,
        "baseline_bytes": baseline_kb * 1024,
        "logits_grad_bytes": grad_bytes,
        "seconds": seconds,
        "loss": float(loss),
    }


def _run_memory_child(spec: dict[str, Any]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.backend_throughput", "--memory-child", json.dumps(spec)]
    # glibc keeps freed blocks below its (adaptive, up to 32 MB) mmap threshold in the heap, so RSS
    # would count dead chunk buffers as live. A fixed small threshold maps every large tensor on its
    # own and returns it on free: peak RSS then tracks peak live tensor bytes, for every variant.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"memory child {spec} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_loss_memory(args: Args) -> dict[str, Any]:
    """Extra peak memory of each loss variant, per dtype; ratios ours / naive."""
    from distill_backend.losses import LossConfig

    results: dict[str, Any] = {}
    for dtype in args.memory_dtypes:
        base = dict(dtype=dtype, batch=args.memory_batch, length=args.memory_length, vocab=args.memory_vocab,
                    seed=args.seed, threads=args.threads)
        default_rows = LossConfig().rows_per_chunk(args.memory_vocab)
        runs = {"naive": _run_memory_child({**base, "variant": "naive", "chunk_size": 0})}
        runs["chunked_autograd"] = _run_memory_child(
            {**base, "variant": "chunked_autograd", "chunk_size": default_rows}
        )
        runs["ours_default"] = _run_memory_child({**base, "variant": "ours", "chunk_size": 0})
        for rows in args.memory_chunk_rows:
            runs[f"ours_rows{rows}"] = _run_memory_child({**base, "variant": "ours", "chunk_size": rows})
        naive = runs["naive"]["extra_bytes"]
        results[dtype] = {
            "default_rows_per_chunk": default_rows,
            "runs": runs,
            "ratio_ours_vs_naive": {
                name[len("ours_"):]: run["extra_bytes"] / naive for name, run in runs.items() if name.startswith("ours")
            },
            "ratio_chunked_autograd_vs_naive": runs["chunked_autograd"]["extra_bytes"] / naive,
            "max_abs_loss_difference": max(abs(r["loss"] - runs["naive"]["loss"]) for r in runs.values()),
        }
        print(f"[memory] {dtype}: " + ", ".join(f"{k} {v['extra_bytes'] / 2**20:.0f} MiB" for k, v in runs.items()))
    return results


# ----------------------------------------------------------------------------------------------
# Part 2: throughput against TRL
# ----------------------------------------------------------------------------------------------


class Workload(NamedTuple):
    tokenizer: Any
    model: Any  # initial student; every contender trains its own deep copy
    teacher: Any  # frozen teacher with its own random init (a copy of the student would give zero loss)
    conversations: list  # one user message each
    prompt_ids: Any  # (batch, P) token ids of the chat-formatted prompts (all the same length)


def build_workload(args: Args) -> Workload:
    """Tokenizer with a chat template, random-init tiny Qwen3, and fixed-length prompts."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from distill_backend.tokenizer import build_char_tokenizer

    tokenizer = build_char_tokenizer(padding_side="left")
    tokenizer.chat_template = CHAT_TEMPLATE
    config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=args.hidden, intermediate_size=2 * args.hidden,
        num_hidden_layers=args.layers, num_attention_heads=4, num_key_value_heads=2, head_dim=args.hidden // 4,
        max_position_embeddings=512, tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(args.seed)
    model = Qwen3ForCausalLM(config)
    teacher = Qwen3ForCausalLM(config)
    for m in (model, teacher):
        m.generation_config.eos_token_id = tokenizer.eos_token_id
        m.generation_config.pad_token_id = tokenizer.pad_token_id
    gen = torch.Generator().manual_seed(args.seed)
    conversations = []
    for _ in range(args.batch):
        digits = torch.randint(0, 10, (4,), generator=gen).tolist()
        question = "Compute {}+{}-{}+{} mod 10 step by step.".format(*digits)
        conversations.append([{"role": "user", "content": question}])
    texts = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert len({len(i) for i in ids}) == 1, "prompts are built to have one length"
    return Workload(tokenizer, model, teacher, conversations, torch.tensor(ids))


def _rms(x, norm):
    """Qwen3RMSNorm.forward without the module call (fp32 statistics, weight in the input dtype)."""
    import torch

    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    return norm.weight * x32.to(x.dtype)


def lean_sample(model, prompt_ids, max_new_tokens: int, suppress_id: int, generator=None, return_logits=False):
    """KV-cache sampling for equal-length prompts that calls the Qwen3 weights directly.

    A benchmark-only sketch of a lean decode path: a preallocated cache and plain tensor ops per
    token instead of the transformers forward, whose Python overhead (cache objects, mask
    construction, output records) dominates a decode step of a tiny model. No padding support.
    Its logits are checked against the transformers forward in :func:`check_lean_sample`.
    """
    import torch
    import torch.nn.functional as F
    from transformers.models.qwen3.modeling_qwen3 import apply_rotary_pos_emb

    cfg, inner = model.config, model.model
    batch, prompt_length = prompt_ids.shape
    total = prompt_length + max_new_tokens
    heads, kv_heads, head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    dtype = inner.embed_tokens.weight.dtype
    caches = [
        (torch.empty(batch, kv_heads, total, head_dim, dtype=dtype), torch.empty(batch, kv_heads, total, head_dim, dtype=dtype))
        for _ in inner.layers
    ]

    def forward(ids, start):
        n = ids.shape[1]
        h = inner.embed_tokens(ids)
        positions = torch.arange(start, start + n).expand(batch, n)
        cos, sin = inner.rotary_emb(h, positions)
        for layer, (key_cache, value_cache) in zip(inner.layers, caches):
            attn = layer.self_attn
            x = _rms(h, layer.input_layernorm)
            q = _rms(attn.q_proj(x).view(batch, n, heads, head_dim), attn.q_norm).transpose(1, 2)
            k = _rms(attn.k_proj(x).view(batch, n, kv_heads, head_dim), attn.k_norm).transpose(1, 2)
            v = attn.v_proj(x).view(batch, n, kv_heads, head_dim).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            key_cache[:, :, start : start + n] = k
            value_cache[:, :, start : start + n] = v
            out = F.scaled_dot_product_attention(
                q, key_cache[:, :, : start + n], value_cache[:, :, : start + n],
                is_causal=n > 1, scale=attn.scaling, enable_gqa=True,
            )
            h = h + attn.o_proj(out.transpose(1, 2).reshape(batch, n, heads * head_dim))
            x = _rms(h, layer.post_attention_layernorm)
            h = h + layer.mlp.down_proj(layer.mlp.act_fn(layer.mlp.gate_proj(x)) * layer.mlp.up_proj(x))
        return model.lm_head(_rms(h[:, -1], inner.norm))

    tokens, step_logits = [], []
    with torch.no_grad():
        logits = forward(prompt_ids, 0)
        for step in range(max_new_tokens):
            if return_logits:
                step_logits.append(logits.clone())
            logits[:, suppress_id] = float("-inf")
            token = torch.multinomial(torch.softmax(logits.float(), dim=-1), 1, generator=generator)
            tokens.append(token)
            if step + 1 < max_new_tokens:
                logits = forward(token, prompt_length + step)
    sequences = torch.cat([prompt_ids, *tokens], dim=1)
    return (sequences, torch.stack(step_logits, dim=1)) if return_logits else sequences


def check_lean_sample(model, prompt_ids, max_new_tokens: int, suppress_id: int) -> float:
    """Max |logit difference| between the lean decode and the transformers forward on its samples."""
    import torch

    sequences, logits = lean_sample(model, prompt_ids, max_new_tokens, suppress_id,
                                    generator=torch.Generator().manual_seed(0), return_logits=True)
    with torch.no_grad():
        reference = model(input_ids=sequences[:, :-1], logits_to_keep=max_new_tokens).logits
    return float((reference - logits).abs().max())


class OurUpdate:
    """The on-policy distillation update as the backend runs it, written out with its ingredients."""

    def __init__(self, workload: Workload, args: Args, sampler: str = "generate") -> None:
        import torch

        self.sampler = sampler  # "generate" (transformers) or "lean" (lean_sample)
        self.generator = torch.Generator().manual_seed(args.seed)
        self.model = copy.deepcopy(workload.model).train()
        self.teacher = copy.deepcopy(workload.teacher).eval().requires_grad_(False)
        # fused=True: one kernel for all parameters, as transformers' default optimizer (adamw_torch_fused).
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=args.learning_rate, fused=True)
        self.prompt_ids = workload.prompt_ids
        self.eos = workload.tokenizer.eos_token_id
        self.pad = workload.tokenizer.pad_token_id
        self.completion_length = args.completion_length
        self.tokens_trained = 0
        self.generation_seconds = 0.0

    def step(self) -> None:
        import torch

        from distill_backend.losses import distillation_loss

        prompt_length = self.prompt_ids.shape[1]
        start = time.perf_counter()
        with torch.no_grad():
            if self.sampler == "lean":
                sequences = lean_sample(self.model, self.prompt_ids, self.completion_length, self.eos, self.generator)
            else:
                sequences = self.model.generate(
                    input_ids=self.prompt_ids, attention_mask=torch.ones_like(self.prompt_ids), do_sample=True,
                    temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=self.completion_length,
                    suppress_tokens=[self.eos], pad_token_id=self.pad, use_cache=True,
                )
            self.generation_seconds += time.perf_counter() - start
            keep = sequences.shape[1] - prompt_length + 1  # logits that predict the completion tokens
            teacher_logits = self.teacher(input_ids=sequences, logits_to_keep=keep).logits[:, :-1]
        student_logits = self.model(input_ids=sequences, logits_to_keep=keep).logits[:, :-1]
        mask = torch.ones(sequences.shape[0], keep - 1, dtype=torch.bool)
        out = distillation_loss(student_logits, teacher_logits, mask, kind="forward_kl", tau=None)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.tokens_trained += int(mask.sum())


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


def _trl_common(args: Args, out_dir: str, steps: int) -> dict[str, Any]:
    return dict(
        output_dir=out_dir, per_device_train_batch_size=args.batch, gradient_accumulation_steps=1,
        learning_rate=args.learning_rate, max_steps=steps, logging_steps=10_000, save_strategy="no",
        report_to="none", use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
        dataloader_num_workers=0, disable_tqdm=True, seed=args.seed, temperature=1.0, beta=0.0,
        lr_scheduler_type="constant", max_grad_norm=1.0,
    )


class TrlRunner:
    """Builds a fresh TRL trainer per round (same initial weights) and times its steady-state steps."""

    def __init__(self, name: str, workload: Workload, args: Args) -> None:
        self.name, self.workload, self.args = name, workload, args
        self.tokens_per_step: list[int] = []
        self.generation_seconds = 0.0

    def _trainer(self, steps: int, out_dir: str, clock):
        from datasets import Dataset

        wl, args = self.workload, self.args
        student = copy.deepcopy(wl.model)
        teacher = copy.deepcopy(wl.teacher).eval()
        record = self.tokens_per_step
        if self.name == "trl_distillation":
            from trl import DistillationConfig, DistillationTrainer

            config = DistillationConfig(
                **_trl_common(args, out_dir, steps), max_completion_length=args.completion_length,
                generation_kwargs={"suppress_tokens": [wl.tokenizer.eos_token_id]}, top_k=0, top_p=1.0,
                shuffle_dataset=False,
            )
            dataset = Dataset.from_dict({"prompt": [c for c in wl.conversations] * steps})
            trainer = DistillationTrainer(model=student, teacher_model=teacher, args=config, train_dataset=dataset,
                                          processing_class=wl.tokenizer, callbacks=[clock])
            original = trainer._generate_single_turn

            def counted(*a, **k):
                start = time.perf_counter()
                completions = original(*a, **k)
                self.generation_seconds += time.perf_counter() - start
                record.append(sum(len(c) for c in completions))
                return completions

            trainer._generate_single_turn = counted
            return trainer
        from trl.experimental.gkd import GKDConfig, GKDTrainer

        # GKD has no generation kwargs; without an eos id generate() runs to max_new_tokens, as the others do.
        student.generation_config.eos_token_id = None
        config = GKDConfig(**_trl_common(args, out_dir, steps), lmbda=1.0, max_new_tokens=args.completion_length,
                           max_length=1024)
        messages = [c + [{"role": "assistant", "content": "0"}] for c in wl.conversations]
        dataset = Dataset.from_dict({"messages": messages * steps})
        trainer = GKDTrainer(model=student, teacher_model=teacher, args=config, train_dataset=dataset,
                             processing_class=wl.tokenizer, callbacks=[clock])
        original_gen = trainer.generate_on_policy_outputs

        def counted_gen(*a, **k):
            start = time.perf_counter()
            ids, attention, labels = original_gen(*a, **k)
            self.generation_seconds += time.perf_counter() - start
            record.append(int((labels != -100).sum()))
            return ids, attention, labels

        trainer.generate_on_policy_outputs = counted_gen
        return trainer

    def round(self, warmup: int, timed: int) -> float:
        """Seconds per step over ``timed`` steps after ``warmup`` steps of one fresh trainer."""
        clock = _StepClock()
        with tempfile.TemporaryDirectory() as out_dir, contextlib.redirect_stdout(io.StringIO()):
            trainer = self._trainer(warmup + timed, out_dir, clock)
            trainer.train()  # its end-of-training log line is printed; kept out of our output
        stamps = clock.stamps
        return (stamps[-1] - stamps[warmup - 1]) / timed


class OurRunner:
    """Times our update like :class:`TrlRunner` times a trainer: a fresh copy of the models per round."""

    def __init__(self, sampler: str, workload: Workload, args: Args) -> None:
        self.sampler, self.workload, self.args = sampler, workload, args
        self.tokens_per_step: list[int] = []
        self.generation_seconds = 0.0

    def round(self, warmup: int, timed: int) -> float:
        update = OurUpdate(self.workload, self.args, self.sampler)
        for _ in range(warmup):
            update.step()
        start = time.perf_counter()
        for _ in range(timed):
            update.step()
        elapsed = time.perf_counter() - start
        steps = warmup + timed
        self.tokens_per_step.extend([update.tokens_trained // steps] * steps)
        self.generation_seconds += update.generation_seconds
        return elapsed / timed


class BackendRunner:
    """Times ``Qwen3DistillBackend.run_window`` on the same tiny model, saved as a local checkpoint.

    This is the real update, so it also does what the others do not: the teacher reads a longer
    prompt (question + revealed reference, alpha = 1), rollouts stop at end-of-sequence, and every
    update measures the observation statistics (probe NLL on ``probe_batch`` references, the
    teacher's answer log-prob). Its prompts are the backend's task prompts, not the shared ones.
    """

    def __init__(self, workload: Workload, args: Args) -> None:
        from distill_backend.config import BackendConfig

        self.directory = tempfile.TemporaryDirectory()
        workload.model.save_pretrained(self.directory.name)
        workload.tokenizer.save_pretrained(self.directory.name)
        self.config = BackendConfig(
            model=self.directory.name, questions_per_update=args.batch, rollouts_per_question=1,
            max_new_tokens=args.completion_length, lr=args.learning_rate, eval_every=0, eval_size=1, eval_k=1,
            device="cpu", dtype="float32", seed=args.seed,
        )
        self.batch = args.batch
        self.tokens_per_step: list[int] = []
        self.generation_seconds = 0.0

    def round(self, warmup: int, timed: int) -> float:
        import distill_backend.backend as backend_module

        backend = backend_module.Qwen3DistillBackend(self.config)
        backend.reset(self.config.seed)
        sample = backend_module.sample_completions

        def timed_sample(*a, **k):
            start = time.perf_counter()
            rollouts = sample(*a, **k)
            self.generation_seconds += time.perf_counter() - start
            return rollouts

        backend_module.sample_completions = timed_sample  # restored below; benchmark-only instrumentation
        try:
            warm = backend.run_window(1.0, warmup)
            start = time.perf_counter()
            result = backend.run_window(1.0, timed)
            elapsed = time.perf_counter() - start
        finally:
            backend_module.sample_completions = sample
        for trace in (warm.trace, result.trace):
            self.tokens_per_step.extend(int(round(length * self.batch)) for length in trace.rollout_length)
        backend.close()
        return elapsed / timed


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else 0.5 * (ordered[middle - 1] + ordered[middle])


def _mean_ci95(values: list[float]) -> list[float]:
    """[mean, low, high]: Student-t 95% interval over rounds (rounds are the independent repeats)."""
    import numpy as np
    from scipy import stats

    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    if data.size < 2:
        return [mean, mean, mean]
    half = float(stats.t.ppf(0.975, data.size - 1) * data.std(ddof=1) / np.sqrt(data.size))
    return [mean, mean - half, mean + half]


OURS, OURS_LEAN, OURS_BACKEND = "ours", "ours_lean_decode", "ours_backend"
TRL_CONTENDERS = ("trl_distillation", "trl_gkd")


def measure_throughput(args: Args) -> dict[str, Any]:
    """Interleaved rounds of every contender; tokens/s, per-round ratios and medians."""
    import logging

    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    logging.getLogger("trl").setLevel(logging.ERROR)
    torch.manual_seed(args.seed)
    workload = build_workload(args)
    runners: dict[str, Any] = {OURS: OurRunner("generate", workload, args), OURS_LEAN: OurRunner("lean", workload, args)}
    runners[OURS_BACKEND] = BackendRunner(workload, args)
    runners.update({name: TrlRunner(name, workload, args) for name in TRL_CONTENDERS})
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    for round_index in range(args.rounds):
        for name, runner in runners.items():
            seconds[name].append(runner.round(args.warmup_steps, args.timed_steps))
            print(f"[throughput] round {round_index}: {name} {seconds[name][-1] * 1e3:.0f} ms/step", flush=True)
    tokens = {n: sum(r.tokens_per_step) / max(len(r.tokens_per_step), 1) for n, r in runners.items()}
    tokens_per_s = {n: [tokens[n] / s for s in seconds[n]] for n in runners}
    ratios = {
        f"{ours}_vs_{trl}": [a / b for a, b in zip(tokens_per_s[ours], tokens_per_s[trl])]
        for ours in (OURS, OURS_LEAN, OURS_BACKEND) for trl in TRL_CONTENDERS
    }
    generation = {n: r.generation_seconds / max(len(r.tokens_per_step), 1) for n, r in runners.items()}
    step = {n: _median(v) for n, v in seconds.items()}
    return {
        "seconds_per_step_median": step,
        "generation_seconds_per_step_mean": generation,
        "non_generation_seconds_per_step": {n: step[n] - generation[n] for n in runners},
        "completion_tokens_per_step": tokens,
        "tokens_per_s_per_round": tokens_per_s,
        "tokens_per_s_median": {n: _median(v) for n, v in tokens_per_s.items()},
        "ratio_per_round": ratios,
        "ratio_median": {n: _median(v) for n, v in ratios.items()},
        "ratio_mean_ci95": {n: _mean_ci95(v) for n, v in ratios.items()},
        "lean_decode_max_abs_logit_difference": check_lean_sample(
            workload.model, workload.prompt_ids, args.completion_length, workload.tokenizer.eos_token_id
        ),
        "prompt_length": int(workload.prompt_ids.shape[1]),
        "vocab_size": len(workload.tokenizer),
        "parameters": sum(p.numel() for p in workload.model.parameters()),
    }


# ----------------------------------------------------------------------------------------------
# CLI, output
# ----------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> Args:
    parser = dataclass_parser(Args, __doc__.split("\n\n")[0])
    return args_from_namespace(Args, parser.parse_args(argv))


def _write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


def _plot(path: Path, payload: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    memory = payload.get("memory")
    if memory:
        labels, values, colors = [], [], []
        for dtype, result in memory.items():
            for name, run in result["runs"].items():
                labels.append(f"{name}\n{dtype}")
                values.append(run["extra_bytes"] / 2**30)
                colors.append("tab:green" if name.startswith("ours") else "tab:gray")
        axes[0].bar(range(len(values)), values, color=colors)
        axes[0].set_xticks(range(len(values)), labels, rotation=60, ha="right", fontsize=7)
        axes[0].set_ylabel("extra peak memory (GiB)")
        s = payload["settings"]
        axes[0].set_title(f"loss fwd+bwd, B={s['memory_batch']} T={s['memory_length']} V={s['memory_vocab']}")
    throughput = payload.get("throughput")
    if throughput:
        for name, values in throughput["tokens_per_s_per_round"].items():
            axes[1].plot(range(len(values)), values, marker="o", label=name)
        axes[1].set_xlabel("interleaved round")
        axes[1].set_ylabel("completion tokens / s")
        axes[1].set_title("on-policy distillation update, tiny Qwen3")
        axes[1].legend()
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.memory_child:
        print(json.dumps(_memory_child(json.loads(args.memory_child))))
        return {}
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    payload: dict[str, Any] = {"settings": dataclasses.asdict(args), "torch": torch.__version__}
    del payload["settings"]["memory_child"]
    if not args.skip_memory:
        payload["memory"] = measure_loss_memory(args)
        dtype = args.memory_dtypes[0]
        payload["loss_memory_ratio"] = payload["memory"][dtype]["ratio_ours_vs_naive"]["default"]
        payload["loss_memory_ratio_settings"] = {
            "dtype": dtype, "rows_per_chunk": payload["memory"][dtype]["default_rows_per_chunk"],
            "chunking": "library defaults (LossConfig.chunk_size=256 rows capped at chunk_elements=2**22 rows x V)",
            "batch": args.memory_batch, "length": args.memory_length, "vocab": args.memory_vocab,
            "valid_fraction": 0.9, "loss": "forward_kl, tau=0.05",
            "measure": f"peak RSS minus RSS with inputs built, fresh process, MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD}",
        }
        payload["loss_memory_ratio_by_dtype_and_chunk"] = {
            d: r["ratio_ours_vs_naive"] for d, r in payload["memory"].items()
        }
        _write_json_atomic(out, payload)  # keep what is done even if the next part fails
    if not args.skip_throughput:
        import trl

        payload["trl_version"] = trl.__version__
        payload["our_update_impl"] = (
            "benchmarks.backend_throughput.OurUpdate: model.generate (KV cache) sampling, frozen teacher forward "
            "under no_grad, student forward, distill_backend.losses.distillation_loss (forward KL, no clip), "
            "grad-norm clip 1.0, AdamW; 'ours_lean_decode' is the same update sampling with lean_sample"
        )
        payload["trl_settings"] = (
            "bf16=False, gradient_checkpointing=False (TRL's defaults are True; off is faster here and matches ours), "
            "use_cpu=True, constant lr, max_grad_norm=1.0, beta=0.0 (forward KL), temperature=1.0, top_k=0, "
            "top_p=1.0; DistillationTrainer: generation_kwargs suppress_tokens=[eos]; GKDTrainer: lmbda=1.0 and "
            "eos_token_id=None on the student's generation config (it takes no generation kwargs)"
        )
        payload["trl_quirks"] = [
            "GKDTrainer (experimental, lmbda=1) divides the summed divergence by num_items_in_batch, which "
            "transformers' Trainer counts on the dataset's labels before on-policy generation replaces them: the "
            "loss (and the effective learning rate) scales with generated/dataset completion tokens (train_loss "
            "~16x DistillationTrainer's on the same models here: 32 generated vs 2 label tokens). "
            "DistillationTrainer counts the generated tokens (trl PR #6478).",
            "generalized JSD: the interior formula tends to 0, not to the KLs, at beta -> 0/1; beta=0/1 are "
            "separate branches (trl#6780, docs clarified in #6781). distill_backend.losses follows the same convention.",
            "DistillationTrainer feeds the teacher the student's prompt; OPSD's privileged teacher context needs a "
            "custom trainer.",
            "GKDTrainer logs a warning that lmbda=1, temperature=1 is covered by DistillationTrainer.",
        ]
        payload["throughput"] = result = measure_throughput(args)
        # Against the faster TRL trainer, so the headline never flatters us.
        payload["ratio_vs_trl"] = min(result["ratio_median"][f"{OURS}_vs_{t}"] for t in TRL_CONTENDERS)
        payload["ratio_vs_trl_lean_decode"] = min(result["ratio_median"][f"{OURS_LEAN}_vs_{t}"] for t in TRL_CONTENDERS)
        payload["ratio_vs_trl_backend"] = min(result["ratio_median"][f"{OURS_BACKEND}_vs_{t}"] for t in TRL_CONTENDERS)
    _write_json_atomic(out, payload)
    _plot(out.with_suffix(".png"), payload)
    headline = ("loss_memory_ratio", "ratio_vs_trl", "ratio_vs_trl_lean_decode", "ratio_vs_trl_backend")
    print(json.dumps({k: payload.get(k) for k in headline}))
    return payload


if __name__ == "__main__":
    main()
