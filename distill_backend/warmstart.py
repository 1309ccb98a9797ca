"""The warm-start recipe: a tiny Qwen3 trained from scratch to *partial* competence.

Self-distillation needs a base model that (a) solves some but not all problems as a student, leaving
room to learn, and (b) is clearly better as a teacher when it reads (part of) the reference. The
recipe, all of it in :class:`WarmStartConfig`:

1. Random-init a :class:`~distill_backend.models.TinyModelConfig` Qwen3 with the character tokenizer.
2. SFT on the train split (cross-entropy on completion tokens only, AdamW, linear warmup then
   constant lr). Each example is, with probability ``teacher_fraction``, in the **teacher format**
   (problem + the first ``k`` reference segments and the answer line + transition), otherwise in
   the student format. With ``teacher_reveal="segments"`` (default) ``k`` is uniform on ``0..m``,
   so every exposure the backend can ask for, full reveal included, is in the training
   distribution. Without teacher-format examples the model never learns to read the reference and
   revealing more of it makes it worse; with ``k`` drawn from ``0..m-1`` only (``"ratio"``, the
   first recipe) the teacher was measurably weakest exactly at full reveal. Optional one-step
   "drills" (``drill_steps``, ``drill_fraction``) teach the per-step arithmetic in a short context.
3. Every ``eval_every`` steps, measure greedy student accuracy on ``eval_size`` probe problems.
   While it is inside ``accuracy_window``, also measure teacher-role greedy accuracy at every
   reveal ratio of :data:`REPORT_ALPHAS`. The selected checkpoint is the one closest to
   ``target_accuracy`` among those whose student is inside the window and whose teacher reaches
   ``teacher_min_accuracy`` at every reveal ratio (falling back to the best teacher inside the
   window, then to the closest student). Stop once accuracy passes the upper end of the window (or
   at ``max_steps``). Competence jumps within a few dozen steps, so the checkpoint is selected on
   held-out accuracy, never on time or step count.
4. Report (``warmstart.json`` next to the weights, printed by ``atesd warmstart``): student greedy
   accuracy, teacher-role greedy accuracy and the teacher's NLL per token of the reference solution
   at each reveal ratio, the selection history and the build time.

The result is a ``save_pretrained`` directory (model + tokenizer) cached outside the repository in
``$ATESD_CACHE_DIR`` (default ``~/.cache/atesd``), named by a hash of the recipe, rebuilt
deterministically when missing, and written atomically (temporary directory + rename) so parallel
processes never see half a checkpoint. Every file's sha256 is kept in ``checksums.json``; a cached
checkpoint whose files changed or do not read back is rebuilt (with a logged warning), not fatal. MOTAB builds a stronger teacher and a weaker student from the
same recipe by changing sizes, steps or the target window.

This module knows nothing about self-distillation; it only produces a starting checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from distill_backend.evaluation import EvalConfig, evaluate_prompts, reference_logprob
from distill_backend.models import TinyModelConfig, init_tiny_qwen3
from distill_backend.prompts import PromptConfig, split_segments, student_prompt, teacher_prompt
from distill_backend.task import Problem, TaskConfig, make_problem, make_splits
from distill_backend.tokenizer import build_char_tokenizer
from exposure_env.errors import ConfigError, check_choice, check_range, store_integers

RECIPE_VERSION = "2"
"""Bump when the recipe's code changes meaning, so old cache entries are not reused."""
LOGGER = logging.getLogger(__name__)
REPORT_FILE = "warmstart.json"
CHECKSUM_FILE = "checksums.json"
REPORT_ALPHAS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
TEACHER_REVEAL_MODES: tuple[str, ...] = ("ratio", "segments")


@dataclass(frozen=True)
class WarmStartConfig:
    """The warm-start recipe (every field enters the cache key)."""

    task: TaskConfig = field(default_factory=TaskConfig)
    model: TinyModelConfig = field(default_factory=lambda: TinyModelConfig(hidden_size=128, intermediate_size=512))
    """Default: 2 layers, 128 wide (~0.5M parameters). The 64-wide model learned the operand lookups
    of the chains but sat at chance on the per-step arithmetic for 1,300-2,000 steps in our runs;
    the 128-wide one reached the partial window after ~600 steps."""
    prompts: PromptConfig = field(default_factory=PromptConfig)
    seed: int = 0
    """Seeds the initialisation and the SFT data order."""
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 20
    max_steps: int = 3000
    teacher_fraction: float = 0.6
    """Share of SFT examples in the teacher format. 0.6 rather than 0.5: with drills taking a
    quarter of the examples, 0.5 left the teacher at 0.83-0.90 greedy accuracy at alpha 0-0.25
    when the student entered the window (seeds 0 and 1); 0.6 gave 1.0 at every reveal ratio."""
    teacher_reveal: str = "segments"
    """How a teacher-format example's exposure is drawn. ``segments`` (default): ``k`` uniform on
    ``0..m``, full reveal included. ``ratio``: alpha ~ U[0, 1), so ``k = floor(alpha * m)`` is
    uniform on ``0..m-1`` and full reveal (``k = m``) is never trained (the first recipe; its
    teacher was weakest at alpha = 1, which biased every comparison against full exposure)."""
    drill_steps: int = 0
    """Optional stage 1: SFT steps on one-step problems only (batch ``drill_batch_size``) before the
    chains. Off by default. Meant for narrow models, which learn one-step arithmetic alone in ~400
    steps (measured, 64 wide, batch 256) but stall on it inside long chains."""
    drill_batch_size: int = 256
    drill_fraction: float = 0.25
    """Share of SFT examples replaced by one-step problems (``a+b`` -> ``a+b=c``). They make the
    student's jump from chance earlier and far less seed-dependent: without them the default
    model left chance at SFT step ~2,700 / ~1,150 / ~420 (seeds 0 / 1 / 2), with a quarter of
    drills at ~780 / ~660 (seeds 0 / 1)."""
    eval_every: int = 20
    eval_size: int = 200
    """Probe problems used for checkpoint selection (greedy decoding)."""
    target_accuracy: float = 0.4
    """Student greedy accuracy aimed at: partial competence with room to learn and to regress."""
    accuracy_window: tuple[float, float] = (0.25, 0.6)
    """Accuracies accepted as 'partial'; training stops once accuracy passes the upper end."""
    teacher_min_accuracy: float = 0.95
    """A checkpoint qualifies only if its teacher-role greedy accuracy reaches this at every
    reveal ratio of :data:`REPORT_ALPHAS` (a teacher that cannot use the reference it is shown
    would make every exposure comparison an artifact)."""
    teacher_eval_size: int = 100
    """Selection problems (the first ones, at most ``eval_size``) used for the teacher-role checks
    during training; the final report uses all ``eval_size``."""

    def __post_init__(self) -> None:
        store_integers(self)
        check_range("seed", self.seed, 0, None, integer=True)
        check_range("batch_size", self.batch_size, 1, None, integer=True)
        check_range("lr", self.lr, 0.0, None, low_inclusive=False)
        check_range("warmup_steps", self.warmup_steps, 0, None, integer=True)
        check_range("max_steps", self.max_steps, 1, None, integer=True)
        check_range("teacher_fraction", self.teacher_fraction, 0.0, 1.0)
        check_choice("teacher_reveal", self.teacher_reveal, TEACHER_REVEAL_MODES)
        check_range("drill_fraction", self.drill_fraction, 0.0, 1.0)
        check_range("drill_steps", self.drill_steps, 0, None, integer=True)
        check_range("drill_batch_size", self.drill_batch_size, 1, None, integer=True)
        check_range("eval_every", self.eval_every, 1, None, integer=True)
        check_range("eval_size", self.eval_size, 1, self.task.probe_size, integer=True)
        check_range("target_accuracy", self.target_accuracy, 0.0, 1.0)
        check_range("teacher_min_accuracy", self.teacher_min_accuracy, 0.0, 1.0)
        check_range("teacher_eval_size", self.teacher_eval_size, 1, None, integer=True)
        low, high = self.accuracy_window
        if not 0.0 <= low <= self.target_accuracy <= high <= 1.0:
            raise ConfigError("accuracy_window", "(low, high) with 0 <= low <= target_accuracy <= high <= 1",
                              self.accuracy_window)

    def cache_key(self) -> str:
        payload = json.dumps({"version": RECIPE_VERSION, "recipe": dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


class WarmStartReport(NamedTuple):
    selected_step: int
    student_accuracy: float
    """Greedy student-role accuracy of the selected checkpoint on the selection problems."""
    teacher_accuracy: dict[str, float]
    """Greedy teacher-role accuracy by reveal ratio (keys are ``f"{alpha:g}"``)."""
    teacher_ref_nll: dict[str, float]
    """Teacher-role NLL per token of the reference solution (+eos) by reveal ratio."""
    student_ref_nll: float
    """Student-role NLL per token of the reference solutions (the probe NLL at reset)."""
    in_window: bool
    """Student accuracy inside ``accuracy_window``."""
    teacher_ok: bool
    """Teacher-role accuracy >= ``teacher_min_accuracy`` at every reveal ratio."""
    history: list[tuple[int, float, float | None]]
    """(step, student accuracy, lowest teacher-role accuracy over the reveal ratios or None when
    not measured) at every selection evaluation."""
    wall_time: float
    cache_key: str
    recipe: dict
    """The recipe (``dataclasses.asdict`` of the config) the checkpoint was built with."""


def cache_root() -> pathlib.Path:
    return pathlib.Path(os.environ.get("ATESD_CACHE_DIR", "~/.cache/atesd")).expanduser()


def warmstart_dir(config: WarmStartConfig, root: pathlib.Path | None = None) -> pathlib.Path:
    return (root or cache_root()) / f"warmstart-{config.cache_key()}"


def ensure_warmstart(config: WarmStartConfig | None = None, root: pathlib.Path | None = None,
                     progress: bool = False) -> pathlib.Path:
    """Path of the cached warm-start checkpoint, building it first when it is missing
    (``progress``: show a progress bar while building). A cached checkpoint that fails
    :func:`cache_problem` (a file changed, truncated or unreadable) is discarded and rebuilt, with a
    logged warning."""
    config = config or WarmStartConfig()
    target = warmstart_dir(config, root)
    if target.exists():
        problem = cache_problem(target)
        if not problem:
            return target
        LOGGER.warning("the cached warm start %s is unusable (%s): rebuilding it", target, problem)
        _discard(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build_warmstart(config, tmp, progress=progress)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / REPORT_FILE).is_file():  # a concurrent build won only if it completed
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _file_digests(directory: pathlib.Path) -> dict[str, str]:
    """sha256 of every file of a checkpoint directory (but the checksum file itself)."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(directory.iterdir()) if path.is_file() and path.name != CHECKSUM_FILE}


def cache_problem(directory: pathlib.Path) -> str:
    """Why a cached warm-start directory cannot be used ('' when it can): a missing or unreadable
    report, config or tokenizer file, a file whose checksum changed since the build (checkpoints
    built before checksums were written: weights that do not read back)."""
    directory = pathlib.Path(directory)
    try:
        if not (directory / REPORT_FILE).is_file():
            return f"no {REPORT_FILE} (an interrupted or partly deleted build)"
        load_report(directory)
        for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
            json.loads((directory / name).read_text(encoding="utf-8"))
        sums = directory / CHECKSUM_FILE
        if sums.is_file():
            expected = json.loads(sums.read_text(encoding="utf-8"))
            actual = _file_digests(directory)
            changed = sorted(name for name, digest in expected.items() if actual.get(name) != digest)
            return f"files changed since the build: {', '.join(changed)}" if changed else ""
        for weights in sorted(directory.glob("*.safetensors")) or [directory / "model.safetensors"]:
            with safe_open(str(weights), framework="pt") as handle:
                for key in handle.keys():
                    handle.get_tensor(key)
    except (OSError, ValueError, TypeError, KeyError, SafetensorError) as exc:
        return " ".join(str(exc).split()) or type(exc).__name__
    return ""


def _discard(directory: pathlib.Path) -> None:
    """Move ``directory`` aside (so nobody reads it half-deleted), then delete it."""
    aside = directory.with_name(f".{directory.name}.discarded-{os.getpid()}")
    try:
        os.replace(directory, aside)
    except FileNotFoundError:  # a concurrent process discarded it first
        return
    shutil.rmtree(aside, ignore_errors=True)


def load_report(directory: pathlib.Path) -> WarmStartReport:
    data = json.loads((pathlib.Path(directory) / REPORT_FILE).read_text())
    data["history"] = [tuple(h) for h in data["history"]]
    return WarmStartReport(**data)


def format_report(report: WarmStartReport) -> str:
    """The report as a few lines of text (what ``atesd warmstart`` prints)."""
    alphas = list(report.teacher_accuracy)
    low, high = report.recipe["accuracy_window"]
    lines = [
        f"warm start {report.cache_key}: selected SFT step {report.selected_step}, built in {report.wall_time:.0f} s",
        f"student greedy accuracy {report.student_accuracy:.3f} (window [{low:g}, {high:g}]: "
        f"{'inside' if report.in_window else 'OUTSIDE'}), reference NLL {report.student_ref_nll:.3f} nats/token",
        "teacher role  | " + " | ".join(f"alpha {a:>4}" for a in alphas),
        "greedy acc.   | " + " | ".join(f"{report.teacher_accuracy[a]:10.3f}" for a in alphas),
        "ref. NLL      | " + " | ".join(f"{report.teacher_ref_nll[a]:10.3f}" for a in alphas),
        f"teacher >= {report.recipe['teacher_min_accuracy']:g} at every reveal ratio: "
        f"{'yes' if report.teacher_ok else 'NO'}",
    ]
    return "\n".join(lines)


def _drill_problem(rng: np.random.Generator, modulus: int) -> Problem:
    operands = rng.integers(0, modulus, size=2).tolist()
    return make_problem(operands, ["+" if rng.integers(0, 2) else "-"], modulus, "drill")


def _sft_example(problem: Problem, rng: np.random.Generator, config: WarmStartConfig, tokenizer,
                 drill: bool = False) -> tuple[list[int], list[int]]:
    # Draw only when drills are on, so drill-free recipes consume the data stream as before drills existed.
    if drill or (config.drill_fraction > 0 and rng.random() < config.drill_fraction):
        problem = _drill_problem(rng, config.task.modulus)
    if rng.random() < config.teacher_fraction:
        if config.teacher_reveal == "segments":
            m = len(split_segments(problem.solution).steps)
            alpha = float(rng.integers(0, m + 1)) / m if m else 1.0
        else:
            alpha = float(rng.random())
        prompt = teacher_prompt(problem.problem, problem.solution, alpha, tokenizer, config.prompts)
    else:
        prompt = student_prompt(problem.problem, tokenizer, config.prompts)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(problem.solution, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return prompt_ids, completion_ids


def _sft_batch(examples, pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(p) + len(c) for p, c in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (p, c) in enumerate(examples):
        seq = p + c
        ids[row, : len(seq)] = torch.tensor(seq)
        labels[row, len(p) : len(seq)] = torch.tensor(c)
        mask[row, : len(seq)] = 1
    return ids, mask, labels


def _greedy_accuracy(model, tokenizer, problems, prompts: list[str], device) -> float:
    config = EvalConfig(k=1, max_new_tokens=max(len(p.solution) for p in problems) + 8)
    return evaluate_prompts(model, tokenizer, prompts, problems, config, None, device, greedy=True).average_at_k


def _teacher_prompts(problems, alpha: float, tokenizer, config: WarmStartConfig) -> list[str]:
    return [teacher_prompt(p.problem, p.solution, alpha, tokenizer, config.prompts) for p in problems]


def _teacher_accuracy(model, tokenizer, problems, config: WarmStartConfig, device) -> dict[str, float]:
    """Greedy teacher-role accuracy at every reveal ratio of :data:`REPORT_ALPHAS`."""
    return {f"{alpha:g}": _greedy_accuracy(model, tokenizer, problems,
                                           _teacher_prompts(problems, alpha, tokenizer, config), device)
            for alpha in REPORT_ALPHAS}


class _Candidate(NamedTuple):
    step: int
    student: float
    teacher_min: float  # -1 when not measured (student outside the window)
    weights: dict[str, torch.Tensor]


def _better(new: _Candidate, old: _Candidate | None, config: WarmStartConfig) -> bool:
    """Selection order: qualified (student in window, teacher >= minimum) beats in-window beats
    the rest; ties within a class go to the student accuracy closest to the target, and among
    in-window unqualified ones to the stronger teacher."""
    if old is None:
        return True

    def rank(c: _Candidate) -> tuple:
        in_window = c.teacher_min >= 0.0
        qualified = in_window and c.teacher_min >= config.teacher_min_accuracy
        distance = abs(c.student - config.target_accuracy)
        return (qualified, in_window, 0.0 if qualified else c.teacher_min, -distance)

    return rank(new) > rank(old)


def build_warmstart(config: WarmStartConfig, out_dir: pathlib.Path, progress: bool = False) -> WarmStartReport:
    """Run the recipe and write model, tokenizer and ``warmstart.json`` into ``out_dir`` (CPU, fp32)."""
    start = time.perf_counter()
    device = torch.device("cpu")
    tokenizer = build_char_tokenizer(padding_side="left")
    model = init_tiny_qwen3(config.model, tokenizer, config.seed)
    splits = make_splits(config.task)
    rng = np.random.default_rng([config.seed, 0x5F7])
    selection = list(splits.probe[: config.eval_size])
    selection_prompts = [student_prompt(p.problem, tokenizer, config.prompts) for p in selection]
    teacher_checks = selection[: config.teacher_eval_size]
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(0.9, 0.99), weight_decay=0.0)
    warmup = max(1, config.warmup_steps)
    low, high = config.accuracy_window
    best: _Candidate | None = None
    history: list[tuple[int, float, float | None]] = []
    total = config.drill_steps + config.max_steps
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"warm start {config.cache_key()}", unit="step")
    model.train()
    for step in range(1, total + 1):
        for group in optimizer.param_groups:
            group["lr"] = config.lr * min(1.0, step / warmup)
        drill = step <= config.drill_steps
        indices = rng.integers(0, len(splits.train), size=config.drill_batch_size if drill else config.batch_size)
        examples = [_sft_example(splits.train[i], rng, config, tokenizer, drill) for i in indices]
        ids, mask, labels = _sft_batch(examples, tokenizer.pad_token_id)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if bar is not None:
            bar.update(1)
        if drill or step % config.eval_every:
            continue
        accuracy = _greedy_accuracy(model, tokenizer, selection, selection_prompts, device)
        teacher_min = -1.0
        if low <= accuracy <= high:
            teacher_min = min(_teacher_accuracy(model, tokenizer, teacher_checks, config, device).values())
            model.train()
        history.append((step, accuracy, teacher_min if teacher_min >= 0 else None))
        LOGGER.info("warm start step %d: loss %.3f, student greedy accuracy %.3f%s", step, loss.item(), accuracy,
                    f", lowest teacher accuracy {teacher_min:.3f}" if teacher_min >= 0 else "")
        if bar is not None:
            bar.set_postfix(loss=f"{loss.item():.3f}", student_acc=f"{accuracy:.3f}",
                            teacher_min="-" if teacher_min < 0 else f"{teacher_min:.3f}")
        candidate = _Candidate(step, accuracy, teacher_min, {})
        if _better(candidate, best, config):
            best = candidate._replace(weights={k: v.detach().clone() for k, v in model.state_dict().items()})
        if accuracy > high:
            break
    if bar is not None:
        bar.close()
    assert best is not None, "max_steps must allow at least one evaluation"
    model.load_state_dict(best.weights)
    model.eval()
    teacher_accuracy = _teacher_accuracy(model, tokenizer, selection, config, device)
    teacher_nll = {f"{alpha:g}": -reference_logprob(model, tokenizer, _teacher_prompts(selection, alpha, tokenizer, config),
                                                    selection, device)
                   for alpha in REPORT_ALPHAS}
    report = WarmStartReport(
        selected_step=best.step, student_accuracy=best.student, teacher_accuracy=teacher_accuracy,
        teacher_ref_nll=teacher_nll,
        student_ref_nll=-reference_logprob(model, tokenizer, selection_prompts, selection, device),
        in_window=low <= best.student <= high,
        teacher_ok=min(teacher_accuracy.values()) >= config.teacher_min_accuracy,
        history=history, wall_time=time.perf_counter() - start, cache_key=config.cache_key(),
        recipe=dataclasses.asdict(config),
    )
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / REPORT_FILE).write_text(json.dumps(report._asdict(), indent=2))
    (out_dir / CHECKSUM_FILE).write_text(json.dumps(_file_digests(out_dir), indent=2))
    return report
