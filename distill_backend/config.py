"""Configuration of the real self-distillation backend (:class:`BackendConfig`).

Plain-data keyword arguments (from ``gym.make``) become this frozen dataclass through
:func:`backend_config_from_kwargs`; nested parts (task, tiny-model sizes, warm-start recipe, prompts)
may be given as dicts there and are converted into their own dataclasses (a ``motab`` dict overrides
the fields of :meth:`MotabConfig.tiny`). Defaults are ours unless
marked (paper); each is documented on its field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from distill_backend.evaluation import EvalConfig
from distill_backend.losses import LossConfig
from distill_backend.models import DEVICE_CHOICES, DTYPE_CHOICES, TinyModelConfig, resolve_device
from distill_backend.motab.config import MotabConfig
from distill_backend.prompts import PromptConfig
from distill_backend.task import TaskConfig
from distill_backend.warmstart import WarmStartConfig
from exposure_env.errors import ConfigError, check_choice, check_range, store_integers
from exposure_env.types import INITIAL_REVEAL_RATIO

TEACHER_MODES: tuple[str, ...] = ("frozen", "current", "ema")
ROLLOUT_MODES: tuple[str, ...] = ("plain", "motab")
TINY_DEFAULT = "tiny-default"

CHECKPOINT_RECIPE: Mapping[str, Any] = {"loss": "forward_kl", "lr": 5e-6, "total_updates": 100}
"""Defaults for a real checkpoint: the OPSD paper's clipped forward KL (``tau`` 0.05), its
learning rate (with LoRA r64 / alpha 128 on Qwen3-1.7B to 8B) and its 100 steps as the episode's
update budget (``ATESD-Qwen3-v0``'s ``total_updates`` when not given)."""

TINY_RECIPE: Mapping[str, Any] = {"loss": "reverse_kl", "lr": 3e-4, "total_updates": 400}
"""Defaults for the embedded tiny model, chosen by ``benchmarks/loss_study.py``
(``benchmarks/results/loss_study.json``: full exposure, 200 updates, 3 seeds, Average@8 on 600
test problems; warm start 0.302 [0.294, 0.311]). Reverse KL at lr 3e-4 reached 0.442
[0.333, 0.551], +0.140 [+0.027, +0.252] over the warm start paired by seed: the only one of 15
settings (5 divergences x lr 1e-4 / 3e-4 / 1e-3) whose 95% interval lies above it. The paper's
clipped forward KL made the student worse at every learning rate (0.115-0.145): with a
~100-symbol vocabulary and a teacher whose top token has probability 0.95-0.999, ``tau = 0.05``
removes 98% of the first update's loss, exactly the terms where the student has nearly ruled out
the teacher's token (a clip at 2 still removes 57%). The unclipped forward KL was worse than the
warm start too; JSD (beta 0.5) and the clip at 2 were better on average at 3e-4 and 1e-3 but
bimodal across seeds, and at 1e-3 reverse KL was as well.

The episode's update budget (``total_updates`` of ``ATESD-Qwen3-v0`` when not given) is 400: under
reverse KL the tiny student's in-run score first sags (0.30 -> ~0.27) and takes off only after
roughly 170-250 updates, then climbs steeply (one ATESD-controlled run, seed 0: 0.33 at reset,
0.27 after 200 updates, 0.97 after 400). A 200-update budget cut every run in the middle of its
take-off, so comparisons measured when it began rather than where it led
(``benchmarks/results/fixed_exposure_qwen3_200.json``)."""


@dataclass(frozen=True)
class BackendConfig:
    """One self-distillation run of :class:`~distill_backend.backend.Qwen3DistillBackend`.

    ``rollout="motab"`` monitors each student rollout with the exposure-conditioned teacher, cuts it
    at the first breach and lets that teacher finish from the safe context; the table of which
    tokens get which loss is in the docstring of :mod:`distill_backend.motab.composition`.
    """

    model: str = TINY_DEFAULT
    """``"tiny-default"`` (the cached warm start of ``warmstart``) or a local checkpoint directory."""
    warmstart: WarmStartConfig = field(default_factory=WarmStartConfig)
    """Recipe of the tiny default (ignored for a checkpoint path). Its task is the run's task."""
    dataset_path: str = ""
    """Local JSONL/Parquet with problem/solution/answer; empty = the synthetic task."""
    skip_bad_rows: bool = False
    """Dataset rows with text the tokenizer cannot represent (it would become the unknown token) or
    longer than the model's context raise ``DatasetError`` naming the row; True leaves them out
    instead and logs how many (``Qwen3DistillBackend.skipped_rows`` lists them)."""
    prompts: PromptConfig = field(default_factory=PromptConfig)
    """Prompt templates; for the tiny default they must match the warm start's (they are then taken
    from the warm-start recipe)."""
    questions_per_update: int = 16
    """Training questions of one update: the global batch, split across the processes of a
    data-parallel run (``torchrun``; see :mod:`distill_backend.distributed`)."""
    rollouts_per_question: int = 4
    max_new_tokens: int = 48
    rollout_temperature: float = 1.0
    """Sampling temperature of the student's rollouts (paper recipe: 1.1)."""
    rollout_top_p: float = 1.0
    rollout: str = "plain"
    """``plain``: distil on the student's whole rollouts (docs/methods.md, section 1). ``motab``:
    MOTAB-monitored, backtracked rollouts (ATESD x MOTAB, docs/methods.md, section 3): the teacher
    at the current reveal ratio judges each step, a strayed rollout is rewound to the root cause and
    completed by that teacher (every ``motab`` field applies except ``student_max_new_tokens``,
    ``student_temperature`` and the SKD ones: the student's rollout keeps ``max_new_tokens`` /
    ``rollout_temperature`` / ``rollout_top_p``). The per-update
    statistics (mismatch, confidence, loss tail) are then over the distilled tokens only, ``loss``
    is the total, and ``rollout_length`` stays the student's own rollout length."""
    motab: MotabConfig = field(default_factory=MotabConfig.tiny)
    """MOTAB knobs for ``rollout="motab"`` (ignored otherwise). Default: :meth:`MotabConfig.tiny`
    (steps end at a newline, as in the synthetic task); a real math model wants the paper's
    ``step_delimiter="\\n\\n"``."""
    motab_sft_weight: float = 1.0
    """Weight of the cross-entropy on the revise marker + teacher continuation (``rollout="motab"``):
    the loss is ``distill + motab_sft_weight * sft`` (ours: 1.0, equal footing)."""
    lr: float | None = None
    """AdamW learning rate of the student. ``None`` takes the model's recipe
    (:data:`TINY_RECIPE` for the tiny default, :data:`CHECKPOINT_RECIPE`, the paper's 5e-6 with
    LoRA on 1.7B-8B models, for a checkpoint path)."""
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    """Gradient-norm clip (paper: 0.1 for LoRA on large models)."""
    loss: str | None = None
    """Divergence: ``forward_kl`` (clipped by ``tau``; the OPSD paper's choice), ``reverse_kl``,
    ``jsd`` (with ``beta``) or ``sampled_token``. ``None`` takes the model's recipe: the paper's
    clipped forward KL for a checkpoint path (:data:`CHECKPOINT_RECIPE`), the measured choice for
    the tiny default (:data:`TINY_RECIPE`, which says why)."""
    tau: float = 0.05
    """Pointwise clip of the forward-KL terms (paper: 0.05, chosen for a 151,936-token vocabulary;
    on the tiny model's 100 symbols it removes ~98% of the loss, see :data:`TINY_RECIPE`)."""
    beta: float = 0.5
    """Generalized-JSD interpolation (0 = forward KL, 1 = reverse KL)."""
    loss_temperature: float | None = None
    """Both logits are divided by this before the divergence. ``None`` (default) uses
    ``rollout_temperature``, as the OPSD code does; 1.0 scores the raw distributions."""
    loss_chunk_size: int = 256
    teacher: str = "frozen"
    """``frozen`` (initial weights, the paper's choice), ``current`` (the live student), or ``ema``."""
    teacher_ema_decay: float = 0.99
    lora_rank: int = 0
    """> 0: train a LoRA adapter (peft); the teacher is then the adapter-disabled base model."""
    lora_alpha: float = 16.0
    """LoRA scale numerator (the update is scaled by ``lora_alpha / lora_rank``); must be > 0."""
    eval_k: int = 4
    eval_temperature: float = 1.0
    eval_top_p: float = 0.95
    eval_size: int = 200
    """Test problems of the in-run score (Average@k); split across the processes of a data-parallel run."""
    eval_every: int = 1
    """Refresh ``score`` every this many windows (0: only at reset)."""
    probe_batch: int = 32
    """Probe problems whose reference-solution NLL is the probe statistic; split across the processes
    of a data-parallel run."""
    probe_every: int = 1
    """Measure the probe NLL after every this many updates and repeat the last value in between
    (1, the default: after every update). The default reward (``progress_signal="probe_nll"``) is
    built from its update-to-update changes, so keep 1 unless the env uses
    ``progress_signal="loss"``; the probe forward is ~1/6 of an update's time on the tiny default
    (``benchmarks/update_speed.py --profile-updates``)."""
    initial_reveal_ratio: float = INITIAL_REVEAL_RATIO
    """Reveal ratio at which the reset statistics are measured; every backend's neutral default
    (:data:`exposure_env.types.INITIAL_REVEAL_RATIO`, which says why 0.5)."""
    collapse_loss: float = 1e-4
    """Collapse: loss below this while rollouts are degenerate (length <= 1 or at the maximum)..."""
    collapse_patience: int = 8
    """...for this many consecutive updates ends the run as diverged; the same patience applies to
    the near-uniform student (``uniform_confidence``)."""
    uniform_confidence: float = 1.25
    """A near-uniform student: its mean top-1 probability below this multiple of ``1 / vocabulary
    size`` (a uniform student's) while the gradient norm is below ``vanishing_grad_norm``, for
    ``collapse_patience`` consecutive updates, ends the run as diverged (0 disables). The tiny test
    warm start, barely trained, sits at ~1.8x with gradient norms ~1e-2; ``lr=1e4`` drives it to 1.0x with
    gradient norm 0."""
    vanishing_grad_norm: float = 1e-8
    """Gradient norm below which the near-uniform check counts an update as not learning."""
    stall_patience: int = 8
    """Optimizer steps in a row that leave every trainable parameter exactly unchanged (nothing is
    trained: a LoRA scale of 0, updates below float precision) before the run ends as diverged
    (0 disables). A healthy update always moves some weight."""
    max_weight_growth: float = 100.0
    """Runaway weights: the trainable parameters' L2 norm above this multiple of its value at reset
    ends the run as diverged (0 disables). Healthy runs of the tiny models move it by a few percent."""
    device: str = "auto"
    dtype: str = "auto"
    seed: int = 0
    """Default run seed when ``reset`` gets none."""

    def __post_init__(self) -> None:
        store_integers(self)
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError("model", "'tiny-default' or a path to a local checkpoint directory", self.model)
        for name in ("questions_per_update", "rollouts_per_question", "max_new_tokens", "eval_size",
                     "probe_batch", "probe_every", "collapse_patience", "loss_chunk_size"):
            check_range(name, getattr(self, name), 1, None, integer=True)
        check_range("rollout_temperature", self.rollout_temperature, 0.0, None, low_inclusive=False)
        check_range("rollout_top_p", self.rollout_top_p, 0.0, 1.0, low_inclusive=False)
        check_choice("rollout", self.rollout, ROLLOUT_MODES)
        if not isinstance(self.motab, MotabConfig):
            raise ConfigError("motab", "a MotabConfig (or, through backend_config_from_kwargs, a dict)", self.motab)
        check_range("motab_sft_weight", self.motab_sft_weight, 0.0, None)
        if self.lr is not None:
            check_range("lr", self.lr, 0.0, None, low_inclusive=False)
        check_range("weight_decay", self.weight_decay, 0.0, None)
        check_range("grad_clip", self.grad_clip, 0.0, None, low_inclusive=False)
        check_choice("teacher", self.teacher, TEACHER_MODES)
        check_range("teacher_ema_decay", self.teacher_ema_decay, 0.0, 1.0)
        check_range("lora_rank", self.lora_rank, 0, None, integer=True)
        # LoRA's output is scaled by lora_alpha / lora_rank: at 0 the adapter and its gradients are 0 and nothing
        # trains; a negative scale is refused as a likely mistake.
        check_range("lora_alpha", self.lora_alpha, 0.0, None, low_inclusive=False)
        check_range("eval_every", self.eval_every, 0, None, integer=True)
        check_range("initial_reveal_ratio", self.initial_reveal_ratio, 0.0, 1.0)
        check_range("collapse_loss", self.collapse_loss, 0.0, None)
        check_range("uniform_confidence", self.uniform_confidence, 0.0, None)
        check_range("vanishing_grad_norm", self.vanishing_grad_norm, 0.0, None)
        check_range("stall_patience", self.stall_patience, 0, None, integer=True)
        check_range("max_weight_growth", self.max_weight_growth, 0.0, None)
        if 0.0 < self.max_weight_growth <= 1.0:
            raise ConfigError("max_weight_growth", "0 (off) or a number above 1", self.max_weight_growth)
        check_choice("device", self.device.split(":")[0], DEVICE_CHOICES)
        resolve_device(self.device)  # cuda on a machine without it: refused here, before any work
        check_choice("dtype", self.dtype, DTYPE_CHOICES)
        check_range("seed", self.seed, 0, None, integer=True)
        _ = (self.loss_config, self.eval_config)  # building them validates loss / tau / beta and the eval fields

    @property
    def recipe(self) -> Mapping[str, Any]:
        """The model's defaults for the fields left at ``None`` (``loss``, ``lr``)."""
        return TINY_RECIPE if self.uses_tiny_default else CHECKPOINT_RECIPE

    @property
    def effective_loss(self) -> str:
        return self.loss if self.loss is not None else self.recipe["loss"]

    @property
    def effective_lr(self) -> float:
        return float(self.lr if self.lr is not None else self.recipe["lr"])

    @property
    def loss_config(self) -> LossConfig:
        temperature = self.rollout_temperature if self.loss_temperature is None else self.loss_temperature
        return LossConfig(kind=self.effective_loss, tau=self.tau, beta=self.beta, temperature=temperature,
                          chunk_size=self.loss_chunk_size)

    @property
    def eval_config(self) -> EvalConfig:
        return EvalConfig(k=self.eval_k, temperature=self.eval_temperature, top_p=self.eval_top_p,
                          max_new_tokens=self.max_new_tokens)

    @property
    def task(self) -> TaskConfig:
        return self.warmstart.task

    @property
    def uses_tiny_default(self) -> bool:
        return self.model == TINY_DEFAULT


def _tuples(data: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-ish lists -> tuples, so dict kwargs match tuple-typed fields."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


def _build(cls, value: Any, name: str):
    if value is None or isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(name, f"a {cls.__name__} or a dict of its fields", value)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ConfigError(name, "fields among " + ", ".join(sorted(known)), unknown)
    return cls(**_tuples(value))


def _motab(value: Any) -> MotabConfig:
    """A ``motab`` kwarg: a MotabConfig, or a dict of overrides of :meth:`MotabConfig.tiny`."""
    if isinstance(value, Mapping):  # unknown keys are reported by _build, as for the other nested configs
        return _build(MotabConfig, {**dataclasses.asdict(MotabConfig.tiny()), **value}, "motab")
    return value


def backend_config_from_kwargs(kwargs: Mapping[str, Any]) -> BackendConfig:
    """Build a :class:`BackendConfig` from plain data.

    Top-level keys are :class:`BackendConfig` fields, plus the shortcuts ``task`` (TaskConfig
    fields) and ``model_size`` (TinyModelConfig fields), which are folded into the warm-start
    recipe. Unknown keys raise ``ConfigError`` naming them.
    """
    data = dict(kwargs)
    task = _build(TaskConfig, data.pop("task", None), "task")
    sizes = _build(TinyModelConfig, data.pop("model_size", None), "model_size")
    warmstart_data = data.pop("warmstart", None)
    if isinstance(warmstart_data, Mapping):
        warmstart_data = dict(warmstart_data)
        for key, cls in (("task", TaskConfig), ("model", TinyModelConfig), ("prompts", PromptConfig)):
            if key in warmstart_data:
                warmstart_data[key] = _build(cls, warmstart_data[key], f"warmstart.{key}")
    warmstart = _build(WarmStartConfig, warmstart_data, "warmstart") or WarmStartConfig()
    if task is not None or sizes is not None:
        warmstart = dataclasses.replace(warmstart, task=task or warmstart.task, model=sizes or warmstart.model)
    if "prompts" in data:
        data["prompts"] = _build(PromptConfig, data["prompts"], "prompts")
    if "motab" in data:
        data["motab"] = _motab(data["motab"])
    known = {f.name for f in dataclasses.fields(BackendConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError("env kwargs", "ExposureEnvConfig or BackendConfig fields (or task, model_size)", unknown)
    return BackendConfig(warmstart=warmstart, **data)
