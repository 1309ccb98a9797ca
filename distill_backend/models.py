"""Model construction and loading: tiny Qwen3 configs, local checkpoints, optional LoRA.

``load_causal_lm`` loads any local causal-LM directory with ``AutoModelForCausalLM``
(``trust_remote_code=False``: no code from a checkpoint ever runs) and its tokenizer, on the
device and dtype from config. ``"auto"`` means CUDA + bf16 when CUDA is available, CPU + fp32
otherwise. With ``lora_rank > 0`` the model is wrapped in a peft LoRA adapter; the teacher of
self-distillation is then the same network with the adapter disabled.

This module knows nothing about the task, prompts or the training loop.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError

from exposure_env.errors import BackendUnavailableError, ConfigError, check_choice, check_range, store_integers

DEVICE_CHOICES = ("auto", "cpu", "cuda")
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; ``"cuda"`` without CUDA is a ConfigError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device", "'cpu' or 'auto' on a machine without CUDA", device)
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``"auto"`` -> bf16 on CUDA (when supported), fp32 on CPU."""
    check_choice("dtype", dtype, DTYPE_CHOICES)
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, dtype)


@dataclass(frozen=True)
class TinyModelConfig:
    """Sizes of a from-scratch Qwen3 (defaults: ~130k parameters, the TINY-SETUP-NOTES model)."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 256
    max_positions: int = 256

    def __post_init__(self) -> None:
        store_integers(self)
        check_range("hidden_size", self.hidden_size, 8, None, integer=True)
        check_range("num_layers", self.num_layers, 1, None, integer=True)
        check_range("num_heads", self.num_heads, 1, None, integer=True)
        check_range("num_kv_heads", self.num_kv_heads, 1, self.num_heads, integer=True)
        check_range("intermediate_size", self.intermediate_size, 8, None, integer=True)
        check_range("max_positions", self.max_positions, 16, None, integer=True)
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ConfigError("hidden_size/num_heads/num_kv_heads", "hidden divisible by heads, heads by kv heads",
                              (self.hidden_size, self.num_heads, self.num_kv_heads))


def tiny_qwen3_config(sizes: TinyModelConfig, tokenizer) -> Any:
    """A ``Qwen3Config`` of the given sizes for ``tokenizer``'s vocabulary."""
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=sizes.hidden_size,
        intermediate_size=sizes.intermediate_size,
        num_hidden_layers=sizes.num_layers,
        num_attention_heads=sizes.num_heads,
        num_key_value_heads=sizes.num_kv_heads,
        head_dim=sizes.hidden_size // sizes.num_heads,
        max_position_embeddings=sizes.max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )


def init_tiny_qwen3(sizes: TinyModelConfig, tokenizer, seed: int) -> torch.nn.Module:
    """A randomly initialised Qwen3ForCausalLM; the init is drawn under a fork of the RNG so the
    caller's global torch RNG state is left untouched."""
    from transformers import Qwen3ForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(tiny_qwen3_config(sizes, tokenizer))
    return model


class LoadedModel(NamedTuple):
    model: torch.nn.Module
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype
    lora: bool


def load_causal_lm(
    path: str | pathlib.Path,
    device: str = "auto",
    dtype: str = "auto",
    lora_rank: int = 0,
    lora_alpha: float = 16.0,
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj"),
) -> LoadedModel:
    """Load a local causal-LM checkpoint and its tokenizer (offline; no code from the checkpoint).

    Raises ``ConfigError`` naming ``path`` when it is not a directory with a ``config.json``, or when
its files cannot be loaded (missing, unreadable or corrupt).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = pathlib.Path(path).expanduser()
    if not (directory / "config.json").is_file():
        raise ConfigError("model", "a local checkpoint directory containing config.json (or 'tiny-default')",
                          str(path), hint="nothing is downloaded: save the model with save_pretrained first")
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=False, padding_side="left")
        model = AutoModelForCausalLM.from_pretrained(directory, trust_remote_code=False, dtype=torch_dtype)
    except (OSError, ValueError, SafetensorError) as exc:  # missing, unreadable or corrupt files
        reason = " ".join(str(exc).split())[:300]
        raise ConfigError("model", "a loadable local checkpoint directory (config, weights, tokenizer)", str(path),
                          hint=f"loading it failed: {reason}") from exc
    if tokenizer.pad_token_id is None:  # many causal LMs ship without a pad token
        tokenizer.pad_token = tokenizer.eos_token
    model.to(torch_device)
    if lora_rank > 0:
        model = add_lora(model, lora_rank, lora_alpha, lora_targets)
    return LoadedModel(model, tokenizer, torch_device, torch_dtype, lora_rank > 0)


def add_lora(model: torch.nn.Module, rank: int, alpha: float, targets: tuple[str, ...]) -> torch.nn.Module:
    """Wrap ``model`` in a LoRA adapter (peft). Adapter weights start so the output is unchanged."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise BackendUnavailableError("LoRA needs peft: pip install -e '.[lora]'") from exc
    check_range("lora_rank", rank, 1, None, integer=True)
    config = LoraConfig(r=int(rank), lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0,
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
