"""Configuration of MOTAB (monitored rollouts with backtracking) and of its SKD baselines.

Defaults follow the paper "Backtracking When It Strays" (arXiv 2605.19433) and its public code.
Where the paper is silent, the field docstring says so and names our choice; the monitor options
marked "ours" (``value_mode``, ``boundary_scaling``) are off by default. This module knows nothing
about models or tokenizers.
"""

from __future__ import annotations

from dataclasses import dataclass

from exposure_env.errors import ConfigError, check_choice, check_range, store_integers

ENTROPY_MODES: tuple[str, ...] = ("topk", "static")
ROOT_CAUSE_V0: tuple[str, ...] = ("one", "first")
VALUE_MODES: tuple[str, ...] = ("mean", "min", "result")
BOUNDARY_SCALINGS: tuple[str, ...] = ("none", "length")


@dataclass(frozen=True)
class MotabConfig:
    """Every knob of the MOTAB pipeline and of the step/token SKD baselines.

    The paper's steps end at a blank line (``"\\n\\n"``). Our synthetic task writes one step per
    line, so :meth:`tiny` uses ``"\\n"``; a real math model keeps the paper default.
    """

    step_delimiter: str = "\n\n"
    """Text that ends a reasoning step. A token whose text completes the delimiter ends the step."""
    eps0: float = 0.2
    """Base safety boundary (paper: 0.2). A step strays when its oracle value ``V < eps``."""
    theta: float = 1.0
    """Entropy sensitivity of the boundary ``eps = eps0 * exp(-theta * H)`` (paper: 1.0)."""
    top_k: int = 20
    """k of the teacher's renormalized top-k next-token distribution whose entropy is H (paper: 20)."""
    entropy_mode: str = "topk"
    """``"topk"``: H as in the paper's formula. ``"static"``: H = 0, i.e. a fixed ``eps0`` boundary,
    which is what the public code effectively runs."""
    value_mode: str = "mean"
    """How a step's oracle value V is computed from its tokens' teacher log-probabilities.

    ``"mean"`` (paper): the geometric-mean probability of all the step's tokens. One wrong token
    among n right ones is diluted: with n = 6 and the wrong token at p = 0.01, V = 0.46 > 0.2.
    ``"min"`` (ours): the smallest token probability of the step, so one unlikely token is the
    step's value. ``"result"`` (ours): the geometric mean over the step's *result* tokens only, the
    part of a step that is computed rather than read off the context (see ``result_markers``);
    a step without a result falls back to ``"mean"``.

    The entropy H of the boundary is taken where the value is measured: at the step's first token
    (``"mean"``, as in the paper), at its first result token (``"result"``), at its least likely
    token (``"min"``)."""
    result_markers: tuple[str, ...] = ("=", "\\boxed{")
    """For ``value_mode="result"``: a step's result tokens are those with a character after the last
    occurrence (over all markers) of a marker in the step's text, minus trailing whitespace-only
    tokens (the step delimiter, EOS). In ``7+3=0\\n`` that is ``0``; in ``\\boxed{7}`` it is
    ``7}``; in ``so 3x = 15.\\n\\n`` it is `` 15.``. Why this and not "tokens the teacher could copy
    from an earlier occurrence": the left-hand side of a step restates the previous result and the
    question's operand, which the teacher reads off the context with p ~ 1 whether or not the step
    is right; but a copy rule based on earlier identical n-grams also matches result digits by
    chance on a 10-symbol task (on the default task's test split, 10% of result digits follow an
    ``=`` that was followed by the same digit earlier), hiding exactly the error. An equation's
    right-hand side and a final answer are what a verifier checks in math text too."""
    boundary_scaling: str = "none"
    """``"none"`` (paper): the boundary is eps. ``"length"`` (ours): eps ** (1/n) for a value that is a
    geometric mean over n tokens, i.e. a step breaches when the *product* of its scored tokens'
    probabilities falls below eps, whatever the step's length (a single token at p < eps breaches a
    step of right tokens). With ``value_mode="min"`` n = 1 and nothing changes. Strict for long
    natural-language steps, whose joint probability is small even when they are right."""
    root_cause_v0: str = "one"
    """Value ``V_0`` before the first step in ``t* = argmin_k (V_k - V_{k-1})``. The paper leaves it
    implicit. ``"one"`` (ours): the bare question is a fully safe context, so a weak first step can
    itself be the root cause. ``"first"``: ``V_0 = V_1`` (step 1 is blamed only when no later step
    drops)."""
    revise_marker: str = "However,"
    """Text inserted between the student's steps and the teacher's continuation (paper: "However,")."""
    marker_separator: str = "\n"
    """Text between the revise marker and the teacher continuation (ours: the marker sits on its
    own line, so the continuation starts a fresh step as it did when the teacher wrote it)."""
    max_steps: int = 32
    """Steps monitored per trajectory; later steps are kept but never judged (ours)."""
    student_max_new_tokens: int = 96
    """Token budget of one student rollout."""
    teacher_max_new_tokens: int = 96
    """Token budget of the teacher's continuation from the safe context."""
    student_temperature: float = 1.0
    """Sampling temperature of the student's rollouts and step proposals (MOTAB, step/token SKD)."""
    teacher_temperature: float = 0.6
    """Sampling temperature of the teacher's writing: MOTAB's continuations and step-level SKD's
    rewrites (0.6 as in the public code). Token-level SKD samples both models at
    ``student_temperature``."""
    loss_on_strayed_steps: bool = True
    """Whether SFT trains on the student's strayed steps ``t*..t`` kept before the revise marker.
    The paper trains on the whole stitched text (True). False masks them out (they are still
    context), so the student learns to recover without imitating the error."""
    skd_gamma: float = 0.9
    """Step-level SKD: accept a student step when ``V_T > gamma * V_S`` (paper code: 0.9)."""
    skd_token_top_k: int = 20
    """Token-level SKD: a student token outside the teacher's top-K is resampled by the teacher."""

    def __post_init__(self) -> None:
        store_integers(self)
        if not isinstance(self.step_delimiter, str) or self.step_delimiter == "":
            raise ConfigError("step_delimiter", "a non-empty string", self.step_delimiter)
        check_range("eps0", self.eps0, 0.0, 1.0, low_inclusive=False)
        check_range("theta", self.theta, 0.0, None)
        check_range("top_k", self.top_k, 1, None, integer=True)
        check_choice("entropy_mode", self.entropy_mode, ENTROPY_MODES)
        check_choice("root_cause_v0", self.root_cause_v0, ROOT_CAUSE_V0)
        check_choice("value_mode", self.value_mode, VALUE_MODES)
        markers = self.result_markers
        if isinstance(markers, list):  # JSON-ish input
            markers = tuple(markers)
            object.__setattr__(self, "result_markers", markers)
        if not (isinstance(markers, tuple) and markers and all(isinstance(m, str) and m for m in markers)):
            raise ConfigError("result_markers", "a non-empty tuple of non-empty strings", self.result_markers)
        check_choice("boundary_scaling", self.boundary_scaling, BOUNDARY_SCALINGS)
        if not isinstance(self.revise_marker, str):
            raise ConfigError("revise_marker", "a string", self.revise_marker)
        if not isinstance(self.marker_separator, str):
            raise ConfigError("marker_separator", "a string", self.marker_separator)
        check_range("max_steps", self.max_steps, 1, None, integer=True)
        check_range("student_max_new_tokens", self.student_max_new_tokens, 1, None, integer=True)
        check_range("teacher_max_new_tokens", self.teacher_max_new_tokens, 1, None, integer=True)
        check_range("student_temperature", self.student_temperature, 0.0, None, low_inclusive=False)
        check_range("teacher_temperature", self.teacher_temperature, 0.0, None, low_inclusive=False)
        if not isinstance(self.loss_on_strayed_steps, bool):
            raise ConfigError("loss_on_strayed_steps", "a bool", self.loss_on_strayed_steps)
        check_range("skd_gamma", self.skd_gamma, 0.0, None, low_inclusive=False)
        check_range("skd_token_top_k", self.skd_token_top_k, 1, None, integer=True)

    @classmethod
    def tiny(cls, **overrides: object) -> "MotabConfig":
        """Defaults for the synthetic one-step-per-line task: steps end at ``"\\n"``.

        Token budgets shrink to the task's solution length (a chain of a few steps is ~30 tokens).
        """
        base: dict[str, object] = dict(
            step_delimiter="\n", student_max_new_tokens=64, teacher_max_new_tokens=64, max_steps=16
        )
        base.update(overrides)
        return cls(**base)  # type: ignore[arg-type]
