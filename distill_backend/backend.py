"""``Qwen3DistillBackend``: on-policy self-distillation with partial teacher exposure.

One student update (docs/methods.md, sections 1-2), as :meth:`Qwen3DistillBackend._update` runs it:

1. draw ``questions_per_update`` training questions (epoch-wise permutation, position saved);
2. sample ``rollouts_per_question`` completions per question from the student prompt with the one
   decoder (:func:`distill_backend.rollout.sample_completions`: KV cache, the backend's own
   ``torch.Generator``, no grad; each prompt is encoded and prefilled once for all its rollouts);
3-4. the update step (:func:`distill_backend.opsd_step.opsd_step`): the teacher scores the
   completion tokens from ``teacher_prompt(x, y*, alpha)`` under ``no_grad`` (frozen initial
   weights by default; the live student or an EMA as options; with LoRA the frozen teacher is the
   adapter-disabled model), the student from ``student_prompt(x)``; the distillation loss
   (:mod:`distill_backend.losses`, fused with the output projection, so no batch x length x
   vocabulary tensor exists); AdamW step with gradient-norm clipping;
5. statistics: loss, its 90th percentile, top-1 mismatch, student confidence, probe NLL of reference
   solutions on a fixed probe batch (encoded once; re-measured every ``probe_every`` updates), the
   teacher's mean log-prob of those reference solutions when prompted at the current exposure
   (``teacher_ref_logprob``, the grounding statistic ``G_gt`` of the reward; computed once per
   reveal ratio while the teacher is frozen), pre-clip gradient norm, mean rollout length.

With ``rollout="motab"`` a step 2b runs between 2 and 3: the teacher (same model and prompt as in
step 3) monitors each rollout; a strayed one is rewound to its root cause and finished by the
teacher, and step 4 uses the mixed loss of :mod:`distill_backend.motab.composition` (its docstring
has the table of which tokens get which loss); mismatch, confidence and the loss tail are then
measured over the distilled tokens.

Failure detection: after every applied update the run ends as diverged, with the reason in
``WindowResult.divergence_reason`` (``info["divergence_reason"]``), when the loss or gradient is not
finite (the update is then skipped), when the student collapsed (loss ~0 on degenerate rollouts, or
near-uniform predictions with a vanishing gradient, for ``collapse_patience`` updates), when
optimizer steps leave every trainable weight unchanged (``stall_patience`` updates: nothing is
being trained), or when the weights run away (norm above ``max_weight_growth`` times its value at
reset). The thresholds are :class:`~distill_backend.config.BackendConfig` fields.

``score`` (Average@k on the first ``eval_size`` test problems) is refreshed every ``eval_every``
windows with a generator derived from the run seed and the evaluation index, so how often one
evaluates never changes the training trajectory.

Nothing here touches process-global state: no global seeding, every random draw comes from the
backend's ``torch.Generator`` / ``numpy`` generator, which ``state_dict`` saves.

Data-parallel runs (one process per replica, launched by ``torchrun`` or ``accelerate launch``):
the backend joins the process group when it is built (:mod:`distill_backend.distributed` says what
is shared, split and reduced). ``reset`` and ``run_window`` take rank 0's seed and reveal ratio;
each rank samples rollouts for its share of every update's questions and scores its share of the
probe and test problems; the global batch (``questions_per_update``, ``probe_batch``,
``eval_size``) is the same as in one process. In one process none of this runs.

This module knows nothing about controllers or rewards; it implements the
:class:`exposure_env.types.TrainingBackend` protocol.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Sequence

import numpy as np
import torch

from distill_backend.config import BackendConfig
from distill_backend.distributed import DataParallel, join, rank_seed
from distill_backend.evaluation import (
    EvalConfig,
    EvalResult,
    GradedSamples,
    batch_logprob_sum,
    evaluate_prompts,
    grade_samples,
    reference_batch,
    summarize_grades,
)
from distill_backend.models import load_causal_lm
from distill_backend.motab.composition import (
    MotabOpsdBatch,
    completion_lists,
    motab_opsd_batch,
)
from distill_backend.motab.pipeline import MotabRecord, TokenizerInfo
from distill_backend.opsd_step import StepBatch, opsd_step
from distill_backend.prompts import student_prompt, teacher_prompt
from distill_backend.rollout import encode_prompts, sample_completions
from distill_backend.task import (
    Problem,
    Splits,
    make_splits,
    read_dataset,
    screen_rows,
    split_dataset,
)
from distill_backend.warmstart import ensure_warmstart
from exposure_env.errors import ConfigError, ResetNeededError, check_range
from exposure_env.types import TrainingStats, UpdateTrace, WindowResult

STATE_VERSION = 2
LOGGER = logging.getLogger(__name__)


def load_splits(config: BackendConfig, row_issue: Callable[[Problem], str] | None = None
                ) -> tuple[Splits, tuple[int, ...]]:
    """The train/probe/test splits a backend with ``config`` uses, and the dataset rows it left out:
    the task's generated splits, or the dataset at ``dataset_path`` split by the task's sizes and
    seed after screening every row with ``row_issue`` (a bad row is refused, or left out and listed
    with ``skip_bad_rows``). Without ``row_issue`` every row is kept: for what needs no tokenizer or
    model, e.g. which numbers of reasoning steps the training problems have."""
    task = config.task
    if not config.dataset_path:
        return make_splits(task), ()
    dataset = read_dataset(config.dataset_path)
    screened = screen_rows(dataset, row_issue or (lambda problem: ""), skip=config.skip_bad_rows)
    if screened.skipped_rows:
        LOGGER.warning("%s: skipped %d of %d rows that the tokenizer cannot represent or that exceed the "
                       "model's context (rows %s)", dataset.path, len(screened.skipped_rows),
                       len(dataset.rows), ", ".join(map(str, screened.skipped_rows[:20]))
                       + (", ..." if len(screened.skipped_rows) > 20 else ""))
    return split_dataset(screened.problems, task.probe_size, task.test_size, task.seed), screened.skipped_rows


class _Fingerprint(NamedTuple):
    """What the failure checks keep of the trainable weights between updates."""

    sum: float
    norm: float


class Qwen3DistillBackend:
    """Real OPSD on a causal LM (tiny warm-started Qwen3 by default) behind the TrainingBackend seam."""

    def __init__(self, config: BackendConfig | None = None) -> None:
        self.config = cfg = config if config is not None else BackendConfig()
        # Under torchrun / accelerate: join the process group (one process: no group, nothing changes).
        self.replicas = join(cfg.device)
        for name in ("questions_per_update", "probe_batch"):  # every rank needs a share of each
            self.replicas.check_share(name, getattr(cfg, name))
        # Rank 0 builds a missing warm start while the others wait, then they read its cache.
        path = self.replicas.main_first(lambda: ensure_warmstart(cfg.warmstart)) if cfg.uses_tiny_default \
            else cfg.model
        # The tiny default was trained on the warm-start recipe's prompts; other models use cfg.prompts.
        self.prompts = cfg.warmstart.prompts if cfg.uses_tiny_default else cfg.prompts
        loaded = load_causal_lm(path, self.replicas.device, cfg.dtype, lora_rank=cfg.lora_rank,
                                lora_alpha=cfg.lora_alpha)
        self.model, self.tokenizer, self.device = loaded.model, loaded.tokenizer, loaded.device
        self.skipped_rows: tuple[int, ...] = ()
        """Rows of ``dataset_path`` left out by ``skip_bad_rows`` (1-based)."""
        # Data-parallel: the student's scoring forward through DDP (None in one process). Made
        # before anything copies the weights: DDP starts every rank from rank 0's (a LoRA adapter's
        # random init may differ per rank).
        self._sync = DataParallel(self.replicas, self.model) if self.replicas.active else None
        self.splits, self.skipped_rows = load_splits(cfg, self._row_issue)
        self._params = [p for p in self.model.parameters() if p.requires_grad]
        self._initial = [p.detach().clone() for p in self._params]
        self.teacher: torch.nn.Module | None = None
        if cfg.teacher == "ema" or (cfg.teacher == "frozen" and cfg.lora_rank == 0):
            self.teacher = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.optimizer = self._new_optimizer()
        self.generator = torch.Generator(device=self.device)
        self._np_rng = np.random.default_rng(cfg.seed)
        # This rank's share of the probe set (the whole set in one process).
        self._probe: tuple[Problem, ...] = self.splits.probe[: cfg.probe_batch][self.replicas.shard(cfg.probe_batch)]
        # Encoded once: the probe statistic re-scores the same references after every update.
        self._probe_batch = reference_batch(self.tokenizer, self._student_prompts(self._probe), self._probe,
                                            self.device)
        self._ref_logprob_cache: dict[float, float] = {}
        self.eval_problems: tuple[Problem, ...] = self.splits.test[: cfg.eval_size]
        self.last_eval: EvalResult | None = None
        self._stats: TrainingStats | None = None
        self._run_seed = cfg.seed
        self._order = np.zeros(0, dtype=np.int64)
        self._cursor = 0
        self._windows = 0
        self._evals = 0
        self._collapse_count = 0
        self._uniform_count = 0
        self._stall_count = 0
        self._vocab_size = int(self.model.config.vocab_size)
        self._weights = self._weight_fingerprint()
        self._initial_norm = self._weights.norm
        # The token-text table decodes the whole vocabulary once: only built when MOTAB needs it.
        self._motab_tok = TokenizerInfo.of(self.tokenizer) if cfg.rollout == "motab" else None
        self.last_motab_records: list[MotabRecord] = []
        """Per-rollout MOTAB records (breach, root cause, oracle values) of the latest update."""

    # -- setup helpers ----------------------------------------------------------------------

    def _row_issue(self, problem: Problem) -> str:
        """Why a dataset row cannot be used with this tokenizer and model ('' when it can): text that
        would become the unknown token (an exact copy of the reference would then be graded wrong), or
        a prompt plus completion longer than the model's context."""
        unknown = self.tokenizer.unk_token_id
        if unknown is not None:
            for field in ("problem", "solution", "answer"):
                text = getattr(problem, field)
                if unknown in self._token_ids(text):
                    chars = "".join(sorted({c for c in text if unknown in self._token_ids(c)}))
                    return (f"field {field!r} has characters the tokenizer cannot represent ({chars!r} would become "
                            f"{self.tokenizer.unk_token})")
        context = getattr(self.model.config, "max_position_embeddings", None)
        if context:
            completion = max(self.config.max_new_tokens, len(self._token_ids(problem.solution)) + 1)
            prompt = max(len(self._token_ids(self._student_prompts([problem])[0])),
                         len(self._token_ids(self._teacher_prompts([problem], 1.0)[0])))
            if prompt + completion > context:
                return (f"needs {prompt + completion} tokens (prompt at full reveal {prompt} + completion "
                        f"{completion}), more than the model's context of {context} (max_position_embeddings)")
        return ""

    def _new_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self._params, lr=self.config.effective_lr, weight_decay=self.config.weight_decay)

    def _student_prompts(self, problems: Sequence[Problem]) -> list[str]:
        return [student_prompt(p.problem, self.tokenizer, self.prompts) for p in problems]

    def _teacher_prompts(self, problems: Sequence[Problem], alpha: float) -> list[str]:
        return [teacher_prompt(p.problem, p.solution, alpha, self.tokenizer, self.prompts) for p in problems]

    def _token_ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    @contextlib.contextmanager
    def _teacher_model(self) -> Iterator[torch.nn.Module]:
        if self.config.teacher == "current":
            yield self.model
        elif self.teacher is None:  # LoRA + frozen: the base model is the adapter-disabled network
            with self.model.disable_adapter():
                yield self.model
        else:
            yield self.teacher

    # -- data position ----------------------------------------------------------------------
    def _next_questions(self, count: int) -> list[Problem]:
        picked = []
        while len(picked) < count:
            if self._cursor >= len(self._order):
                self._order = self._np_rng.permutation(len(self.splits.train))
                self._cursor = 0
            take = min(count - len(picked), len(self._order) - self._cursor)
            picked.extend(self.splits.train[i] for i in self._order[self._cursor: self._cursor + take])
            self._cursor += take
        return picked

    # -- statistics -------------------------------------------------------------------------
    def _probe_nll(self) -> float:
        """Student NLL per token of the probe set's reference solutions (the progress signal)."""
        return -self.replicas.pooled_mean(*batch_logprob_sum(self.model, self._probe_batch))

    @torch.no_grad()
    def _teacher_ref_logprob(self, alpha: float) -> float:
        """``G_gt``'s statistic: the teacher's mean per-token log-prob of the probe set's reference
        solutions (reasoning, answer line and eos) as completions of its exposure-``alpha`` prompts.

        It varies with ``alpha`` (revealed steps are cheap to reproduce, hidden ones must be
        derived) and with how well the teacher reads the reference. A frozen teacher (the default)
        gives the same value for the same ``alpha`` all run long, so it is computed once per
        reveal ratio and reused; a live or EMA teacher is scored afresh every update.
        """
        cacheable = self.config.teacher == "frozen"
        if cacheable and alpha in self._ref_logprob_cache:
            return self._ref_logprob_cache[alpha]
        batch = reference_batch(self.tokenizer, self._teacher_prompts(self._probe, alpha), self._probe, self.device)
        with self._teacher_model() as teacher:
            value = self.replicas.pooled_mean(*batch_logprob_sum(teacher, batch))
        if cacheable:
            self._ref_logprob_cache[alpha] = value
        return value

    # -- one update -------------------------------------------------------------------------
    def _update(self, alpha: float, apply: bool) -> tuple[TrainingStats, str]:
        """One OPSD update (``apply=False``: measure only, no optimizer step). Returns the stats and
        a divergence reason ('' when healthy)."""
        cfg = self.config
        # Every rank draws the same questions (shared data order) and keeps its share.
        questions = self._next_questions(cfg.questions_per_update)[self.replicas.shard(cfg.questions_per_update)]
        repeats = cfg.rollouts_per_question
        # One prompt row per question: it is encoded and run once, its cache shared by its rollouts.
        student_ctx = encode_prompts(self.tokenizer, self._student_prompts(questions), self.device)
        rollouts = sample_completions(
            self.model, student_ctx, max_new_tokens=cfg.max_new_tokens, eos_id=self.tokenizer.eos_token_id,
            pad_id=self.tokenizer.pad_token_id, temperature=cfg.rollout_temperature, top_p=cfg.rollout_top_p,
            generator=self.generator, repeats=repeats,
        )
        ids, mask = rollouts.completion_ids, rollouts.completion_mask
        if cfg.rollout == "motab":  # stitched rows carry their own (re-padded) prompts
            batch = self._motab_batch([q for q in questions for _ in range(repeats)], alpha, ids, mask).step_batch()
        else:
            teacher_ctx = encode_prompts(self.tokenizer, self._teacher_prompts(questions, alpha), self.device)
            batch = StepBatch(student_ctx, teacher_ctx, ids, mask, mask, None, repeats)
        step = opsd_step(self.model, self._teacher_model, batch, cfg.loss_config,
                         optimizer=self.optimizer if apply else None, params=self._params, grad_clip=cfg.grad_clip,
                         sft_weight=cfg.motab_sft_weight, sync=self._sync)
        reason = step.reason
        if apply and not reason:
            self._advance_ema_teacher()
        out = step.loss
        loss = float(out.loss)
        # With MOTAB the statistics (mismatch, confidence, loss tail) are over the distilled tokens.
        # Data-parallel: the tail over every rank's tokens, the mean length over every rank's rollouts.
        per_token = self.replicas.gather(out.per_token.float()[batch.distill_mask])
        lengths = rollouts.lengths.float()
        length = self.replicas.pooled_mean(lengths.sum(), torch.tensor(lengths.numel())) if self.replicas.active \
            else float(lengths.mean())
        updates_done = (self._stats.updates_done if self._stats else 0) + int(apply)
        stale = self._stats is not None and updates_done % cfg.probe_every != 0
        stats = TrainingStats(
            updates_done=updates_done,
            reveal_ratio=float(alpha),
            loss=loss,
            loss_tail=float(torch.quantile(per_token, 0.9)) if per_token.numel() else 0.0,
            mismatch=float(out.mismatch),
            probe_nll=self._stats.probe_nll if stale else self._probe_nll(),
            confidence=float(out.student_confidence),
            teacher_ref_logprob=self._teacher_ref_logprob(alpha),
            grad_norm=step.grad_norm,
            rollout_length=length,
            score=self._stats.score if self._stats else 0.0,
        )
        stats = self._same_on_every_rank(stats)
        if not reason and apply:
            reason = self._check_collapse(loss, length) or self._check_training(stats)
        return stats, reason

    def _same_on_every_rank(self, stats: TrainingStats) -> TrainingStats:
        """Rank 0's record on every rank (the reduced values already agree; this makes the observation
        and reward the same on every rank by construction). One process: ``stats`` itself."""
        if not self.replicas.active:
            return stats
        values = self.replicas.broadcast([float(v) for v in stats])
        return TrainingStats(int(values[0]), *values[1:])

    def _motab_batch(self, rows: Sequence[Problem], alpha: float, ids: torch.Tensor,
                     mask: torch.Tensor) -> MotabOpsdBatch:
        """Monitor the rollouts with the teacher at exposure ``alpha``, backtrack, let it continue."""
        assert self._motab_tok is not None
        student = [self._token_ids(t) for t in self._student_prompts(rows)]
        teacher_prompts = [self._token_ids(t) for t in self._teacher_prompts(rows, alpha)]
        with self._teacher_model() as teacher:  # continuation draws come from the saved generator
            batch = motab_opsd_batch(teacher, student, teacher_prompts, completion_lists(ids, mask),
                                     self._motab_tok, self.config.motab, self.generator, self.device)
        self.last_motab_records = batch.records
        return batch

    def _advance_ema_teacher(self) -> None:
        if self.config.teacher != "ema" or self.teacher is None:
            return
        decay = self.config.teacher_ema_decay
        with torch.no_grad():
            for target, source in zip(self.teacher.parameters(), self.model.parameters()):
                target.mul_(decay).add_(source.detach(), alpha=1.0 - decay)

    def _check_collapse(self, loss: float, length: float) -> str:
        """Collapse = loss ~ 0 while rollouts degenerate (length <= 1 or at the maximum), sustained."""
        degenerate = length <= 1.0 or length >= self.config.max_new_tokens
        self._collapse_count = self._collapse_count + 1 if (loss < self.config.collapse_loss and degenerate) else 0
        if self._collapse_count >= self.config.collapse_patience:
            return f"collapse: loss {loss:.2e} with degenerate rollouts (mean length {length:.1f}) for " \
                   f"{self._collapse_count} updates"
        return ""

    def _weight_fingerprint(self) -> "_Fingerprint":
        """Sum and L2 norm of the trainable parameters, accumulated in float64: an optimizer step that
        moves any weight changes them (a float64 sum resolves one float32 ulp of any weight)."""
        with torch.no_grad():
            total = torch.zeros(2, dtype=torch.float64, device=self.device)
            for param in self._params:
                values = param.detach().to(torch.float64)
                total += torch.stack((values.sum(), values.square().sum()))
        value_sum, square_sum = total.tolist()
        return _Fingerprint(value_sum, square_sum ** 0.5)

    def _check_training(self, stats: TrainingStats) -> str:
        """Stalled, near-uniform and runaway checks of the update just applied ('' when healthy)."""
        cfg = self.config
        before, after = self._weights, self._weight_fingerprint()
        self._weights = after
        if cfg.max_weight_growth and after.norm > cfg.max_weight_growth * self._initial_norm:
            return (f"runaway weights: parameter norm {after.norm:.3g} is over max_weight_growth="
                    f"{cfg.max_weight_growth:g} times its value at reset ({self._initial_norm:.3g}); lower lr")
        self._stall_count = self._stall_count + 1 if after == before else 0
        if cfg.stall_patience and self._stall_count >= cfg.stall_patience:
            return (f"stalled: {self._stall_count} optimizer steps left every trainable weight unchanged "
                    f"(gradient norm {stats.grad_norm:.2e}); nothing is trained: check lr, lora_alpha and the loss")
        uniform = (stats.confidence < cfg.uniform_confidence / self._vocab_size
                   and stats.grad_norm < cfg.vanishing_grad_norm)
        self._uniform_count = self._uniform_count + 1 if uniform else 0
        if self._uniform_count >= cfg.collapse_patience:
            return (f"collapse: near-uniform student (mean top-1 probability {stats.confidence:.4f}, uniform is "
                    f"{1 / self._vocab_size:.4f}) with gradient norm {stats.grad_norm:.2e} for "
                    f"{self._uniform_count} updates")
        return ""

    # -- evaluation -------------------------------------------------------------------------
    def evaluate(self, problems: Sequence[Problem] | None = None, config: EvalConfig | None = None,
                 greedy: bool = False, reveal_ratio: float | None = None, seed: int | None = None) -> EvalResult:
        """Accuracy of the current student (or, with ``reveal_ratio``, of the model in the teacher
        role at that exposure). Uses a generator seeded from ``seed`` (default: run seed and the
        evaluation count), never the training generator.

        Data-parallel: a collective call (every rank must make it, with the same arguments); each
        rank answers its share of the problems with its own stream and the graded answers are
        gathered, so every rank returns the same result."""
        problems = tuple(problems if problems is not None else self.eval_problems)
        config = config or self.config.eval_config
        if seed is None:
            seed = (self._run_seed * 1_000_003 + 7_919 * self._evals) % (2**62)
            self._evals += 1
        share = problems[self.replicas.shard(len(problems))]
        prompts = self._student_prompts(share) if reveal_ratio is None else self._teacher_prompts(share, reveal_ratio)
        generator = torch.Generator(device=self.device).manual_seed(rank_seed(seed, self.replicas.rank))
        if not self.replicas.active:
            return evaluate_prompts(self.model, self.tokenizer, prompts, share, config, generator, self.device, greedy)
        graded = grade_samples(self.model, self.tokenizer, prompts, share, config, generator, self.device, greedy)
        parts = self.replicas.gather_objects(graded)
        whole = GradedSamples(np.concatenate([p.correct for p in parts]), [n for p in parts for n in p.lengths])
        return summarize_grades(whole, problems)

    def _refresh_score(self, stats: TrainingStats) -> TrainingStats:
        self.last_eval = self.evaluate()
        return stats._replace(score=self.last_eval.average_at_k)

    # -- TrainingBackend --------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> TrainingStats:
        # Data-parallel: rank 0's seed (a rank whose env drew its own seed cannot start another run).
        self._run_seed = int(self.replicas.broadcast([self.config.seed if seed is None else seed], torch.int64)[0])
        with torch.no_grad():
            for param, initial in zip(self._params, self._initial):
                param.copy_(initial)
            if self.config.teacher == "ema" and self.teacher is not None:
                self.teacher.load_state_dict(self.model.state_dict())
        self.optimizer = self._new_optimizer()
        self.generator.manual_seed(rank_seed(self._run_seed, self.replicas.rank))  # this rank's rollout stream
        self._np_rng = np.random.default_rng(self._run_seed)  # the data order: shared by every rank
        self._order, self._cursor = np.zeros(0, dtype=np.int64), 0
        self._windows, self._evals, self._collapse_count = 0, 0, 0
        self._uniform_count = self._stall_count = 0
        self._weights = self._weight_fingerprint()
        self._stats = None
        stats, _ = self._update(self.config.initial_reveal_ratio, apply=False)
        self._stats = self._refresh_score(stats)
        return self._stats

    def run_window(self, reveal_ratio: float, num_updates: int) -> WindowResult:
        if self._stats is None:
            raise ResetNeededError("call reset() before run_window()")
        # Data-parallel: every rank applies rank 0's decision, whatever its own controller chose.
        reveal_ratio, num_updates = self._decision(reveal_ratio, num_updates)
        check_range("reveal_ratio", reveal_ratio, 0.0, 1.0)
        check_range("num_updates", num_updates, 1, None, integer=True)
        per_update: list[TrainingStats] = []
        for _ in range(int(num_updates)):
            stats, reason = self._update(float(reveal_ratio), apply=True)
            per_update.append(stats)
            self._stats = stats
            if reason:
                return WindowResult(stats, UpdateTrace.from_stats(per_update), True, reason)
        self._windows += 1
        if self.config.eval_every and self._windows % self.config.eval_every == 0:
            self._stats = self._refresh_score(self._stats)
        return WindowResult(self._stats, UpdateTrace.from_stats(per_update))

    def _decision(self, reveal_ratio: float, num_updates: int) -> tuple[float, int]:
        """Rank 0's reveal ratio and window length (one process: the arguments, untouched)."""
        if not self.replicas.active:
            return reveal_ratio, num_updates
        try:
            values = [float(reveal_ratio), float(num_updates)]
        except (TypeError, ValueError):  # still join the broadcast, then fail on every rank alike
            values = [float("nan"), float("nan")]
        alpha, count = self.replicas.broadcast(values)
        return alpha, int(count) if float(count).is_integer() else count

    def state_dict(self) -> dict[str, Any]:
        if self._stats is None:
            raise ResetNeededError("call reset() before state_dict()")
        return {
            "version": STATE_VERSION,
            "params": [p.detach().cpu().clone() for p in self._params],
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "ema_teacher": (copy.deepcopy(self.teacher.state_dict())
                            if self.config.teacher == "ema" and self.teacher is not None else None),
            "torch_rng": self.generator.get_state(),
            "numpy_rng": copy.deepcopy(self._np_rng.bit_generator.state),
            "order": self._order.copy(),
            "cursor": self._cursor,
            "run_seed": self._run_seed,
            "windows": self._windows,
            "evals": self._evals,
            "collapse_count": self._collapse_count,
            "uniform_count": self._uniform_count,
            "stall_count": self._stall_count,
            "stats": self._stats._asdict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ConfigError("state version", str(STATE_VERSION), state.get("version"),
                              hint="the checkpoint comes from another version of the backend")
        with torch.no_grad():
            for param, saved in zip(self._params, state["params"], strict=True):
                param.copy_(saved.to(param.device))
        self.optimizer = self._new_optimizer()
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        if state["ema_teacher"] is not None and self.teacher is not None:
            self.teacher.load_state_dict(state["ema_teacher"])
        self.generator.set_state(state["torch_rng"])
        self._np_rng = np.random.default_rng()
        self._np_rng.bit_generator.state = copy.deepcopy(state["numpy_rng"])
        self._order = np.asarray(state["order"], dtype=np.int64).copy()
        self._cursor = int(state["cursor"])
        self._run_seed = int(state["run_seed"])
        self._windows, self._evals = int(state["windows"]), int(state["evals"])
        self._collapse_count = int(state["collapse_count"])
        self._uniform_count, self._stall_count = int(state["uniform_count"]), int(state["stall_count"])
        self._weights = self._weight_fingerprint()
        self._stats = TrainingStats(**state["stats"])

    def close(self) -> None:
        self.teacher = None
        self._stats = None
