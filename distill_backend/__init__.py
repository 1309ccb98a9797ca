"""distill_backend: real on-policy self-distillation of Qwen3-architecture models behind the exposure_env seam."""
