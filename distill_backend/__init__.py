"""distill_backend: real on-policy self-distillation of Qwen3-architecture models behind the exposure_env seam.

Modules (import them directly; this package imports nothing heavy on its own):

- ``task``: the synthetic add/sub-chain task, its splits, and the local JSONL/Parquet loader;
- ``tokenizer``: the offline character-level tokenizer of the tiny models;
- ``prompts``: student/teacher prompts and partial exposure of the reference (reveal ratio);
- ``models``: tiny Qwen3 configs, local checkpoint loading, LoRA, device/dtype resolution;
- ``warmstart``: the cached warm-start recipe that produces the tiny default checkpoint;
- ``rollout``: KV-cache sampling and completion scoring; ``evaluation``: Average@k, pass@k, greedy;
- ``losses``: distillation divergences on logits (chunked);
- ``config`` / ``backend``: ``BackendConfig`` and ``Qwen3DistillBackend`` (the TrainingBackend);
- ``env_factory``: ``make_qwen3_env``, the factory of ``ATESD-Qwen3-v0``;
- ``motab``: monitored, backtracking rollouts (MOTAB).
"""
