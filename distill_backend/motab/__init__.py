"""MOTAB: monitored student rollouts with backtracking (arXiv 2605.19433), its baselines and the
dual exposure-bias measurements.

Layers, lowest first: :mod:`.config`, :mod:`.monitor`, :mod:`.backtrack`, :mod:`.stitch` (pure
algorithm on numbers and token texts), :mod:`.diagnostics` (monitor quality against verifiable step
errors); :mod:`.lm` (batched scoring and sampling of any causal LM); :mod:`.pipeline` (MOTAB
trajectories), :mod:`.skd` (step/token SKD baselines), :mod:`.training` (SFT and on-policy reverse
KL), :mod:`.pair` (the teacher–student pair), :mod:`.exposure_bias` (the two bias measurements) and
:mod:`.composition` (``rollout="motab"`` for the OPSD backend). Only the pure layers are imported
here, so ``import distill_backend.motab`` stays light.
"""

from distill_backend.motab.backtrack import Backtrack, backtrack, find_root_cause, value_drops
from distill_backend.motab.config import MotabConfig
from distill_backend.motab.monitor import (
    MonitorResult,
    StepScore,
    StepSpan,
    first_breach,
    monitor_trajectory,
    oracle_value,
    result_positions,
    safety_boundary,
    score_step,
    segment_steps,
    topk_entropy,
)
from distill_backend.motab.stitch import StitchedTokens, stitch_text, stitch_tokens

__all__ = [
    "Backtrack",
    "MonitorResult",
    "MotabConfig",
    "StepScore",
    "StepSpan",
    "StitchedTokens",
    "backtrack",
    "find_root_cause",
    "first_breach",
    "monitor_trajectory",
    "oracle_value",
    "result_positions",
    "safety_boundary",
    "score_step",
    "segment_steps",
    "stitch_text",
    "stitch_tokens",
    "topk_entropy",
    "value_drops",
]
