"""The surrogate reproduces the phenomena the papers and the real-backend probe report.

Every test runs the batched surrogate functions directly (all seeds and all schedules of a test
in one batch), with the default env config (``total_updates=200``, ``hold_window=4``), so the
whole module takes about a second. Seeds are students: seed ``s`` draws the initial student
``initial(params, default_rng(s), 1)``, as ``env.reset(seed=s)`` does.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest

from exposure_env.config import ExposureEnvConfig
from exposure_env.rewards import window_reward
from exposure_env.surrogate import (
    SurrogateParams,
    SurrogateState,
    competence,
    expected_accuracy,
    initial_for_seeds,
    observe,
    stack_states,
    tile_state,
    transition,
)
from exposure_env.types import TRACE_FIELDS

PARAMS = SurrogateParams()
CONFIG = ExposureEnvConfig()
ALPHAS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
NUM_SEEDS = 20
WINDOWS = CONFIG.total_updates // CONFIG.hold_window
PROBE_NLL = TRACE_FIELDS.index("probe_nll")
MISMATCH = TRACE_FIELDS.index("mismatch")
REF_LOGPROB = TRACE_FIELDS.index("teacher_ref_logprob")

Schedule = Callable[[int, SurrogateState], np.ndarray]


def students(seeds: range = range(NUM_SEEDS)) -> SurrogateState:
    return initial_for_seeds(PARAMS, seeds)


def run(state: SurrogateState, schedule: Schedule, seed: int = 1, windows: int = WINDOWS,
        params: SurrogateParams = PARAMS) -> SurrogateState:
    rng = np.random.default_rng(seed)
    for w in range(windows):
        state = transition(params, state, schedule(w, state), CONFIG.hold_window, rng).state
    return state


def fixed_sweep(state: SurrogateState) -> SurrogateState:
    """Final states of every (alpha, seed) pair, alphas on the slow axis.

    Each alpha runs as its own batch with the same noise seed, so run ``i`` of every schedule
    sees the same learning noise (common random numbers): differences between schedules are
    paired on the student *and* on the noise.
    """
    return stack_states([run(state, lambda w, s, a=alpha: np.full(s.shallow.size, a)) for alpha in ALPHAS])


def ramp(low: float, high: float) -> Schedule:
    return lambda w, s: np.full(s.shallow.size, low + (high - low) * w / (WINDOWS - 1))


def standard_error(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / np.sqrt(x.size))


@pytest.fixture(scope="module")
def sweep():
    start = students()
    final = fixed_sweep(start)
    scores = expected_accuracy(PARAMS, final).reshape(ALPHAS.size, NUM_SEEDS)
    levels = competence(final).reshape(PARAMS.num_levels, ALPHAS.size, NUM_SEEDS)
    return start, scores, levels


def test_1_best_fixed_alpha_is_interior_and_full_exposure_is_worse_beyond_seed_noise(sweep):
    _, scores, _ = sweep
    means = scores.mean(axis=1)
    best = int(means.argmax())
    assert ALPHAS[best] in (0.25, 0.5, 0.75)
    noise = np.hypot(standard_error(scores[best]), standard_error(scores[-1]))
    assert means[best] - means[-1] > 2 * noise


def test_2_mismatch_increases_strictly_with_alpha_and_shrinks_as_the_student_improves(sweep):
    start, scores, _ = sweep
    grid = np.linspace(0.0, 1.0, 21)
    for state in (start, fixed_sweep(start)):  # at the start of runs and at their ends
        batch = state.shallow.size
        mismatch = observe(PARAMS, tile_state(state, grid.size), np.repeat(grid, batch)).stats[MISMATCH]
        assert np.all(np.diff(mismatch.reshape(grid.size, batch), axis=0) > 0)
    # Same exposure, the same students made more competent on every level -> smaller mismatch.
    for alpha in (0.25, 0.75, 1.0):
        exposure = np.full(NUM_SEEDS, alpha)
        before = observe(PARAMS, start, exposure).stats[MISMATCH]
        improved = SurrogateState(start.logit + 0.5, start.shallow)
        assert np.all(observe(PARAMS, improved, exposure).stats[MISMATCH] < before)
    # Also in the per-update traces a run reports (noise switched off).
    quiet = PARAMS.replace(observation_noise=(0.0,) * len(TRACE_FIELDS), learning_noise=0.0)
    traces = transition(quiet, tile_state(start, grid.size), np.repeat(grid, NUM_SEEDS), 4,
                        np.random.default_rng(0)).traces[MISMATCH][:, 0]
    assert np.all(np.diff(traces.reshape(grid.size, NUM_SEEDS), axis=0) > 0)


def test_3_easy_levels_prefer_more_exposure_than_hard_levels(sweep):
    _, _, levels = sweep
    best_alpha_per_level = ALPHAS[levels.mean(axis=2).argmax(axis=1)]
    easy, hard = best_alpha_per_level[0], best_alpha_per_level[-1]
    assert easy > hard
    assert np.all(np.diff(best_alpha_per_level) <= 0)  # monotone from easy to hard


def test_4_greedy_immediate_reward_loses_while_an_adaptive_schedule_beats_every_fixed_alpha(sweep):
    start, scores, _ = sweep
    means = scores.mean(axis=1)
    best = int(means.argmax())

    # Greedy: each window, try every alpha of the grid on a copy of the state (expected values,
    # no noise) and keep the one with the highest immediate reward (plain probe-NLL change).
    quiet = PARAMS.replace(observation_noise=(0.0,) * len(TRACE_FIELDS), learning_noise=0.0)
    candidates = np.repeat(ALPHAS, NUM_SEEDS)

    def greedy(w: int, state: SurrogateState) -> np.ndarray:
        before = np.tile(observe(quiet, state, np.full(NUM_SEEDS, 0.5)).stats[PROBE_NLL], ALPHAS.size)
        look = transition(quiet, tile_state(state, ALPHAS.size), candidates, CONFIG.hold_window,
                          np.random.default_rng(w))
        reward = window_reward("immediate", before, look.traces[PROBE_NLL], look.traces[REF_LOGPROB], CONFIG.gamma,
                               CONFIG.lambda_gt)
        return ALPHAS[reward.reshape(ALPHAS.size, NUM_SEEDS).argmax(axis=0)]

    greedy_scores = expected_accuracy(PARAMS, run(start, greedy))
    noise = np.hypot(standard_error(greedy_scores), standard_error(scores[best]))
    assert means[best] - greedy_scores.mean() > 2 * noise

    # A linear ramp of exposure beats every fixed alpha, paired over the same students and noise.
    ramp_scores = expected_accuracy(PARAMS, run(start, ramp(0.25, 0.75)))
    for fixed in scores:
        gain = ramp_scores - fixed
        assert gain.mean() > 2 * standard_error(gain)


def test_probe_facts_best_alpha_rises_with_competence():
    """Real probe: full reveal hurt a ~20% student and was best for a strong one."""
    grid = np.linspace(-6, 6, 2401)
    offsets = np.array(PARAMS.level_offset)[:, None]
    mix_scores = np.array(PARAMS.difficulty_mix) @ (1 / (1 + np.exp(-(grid - offsets))))
    targets = np.array([0.2, 0.4, 0.6, 0.8])
    ability = np.interp(targets, mix_scores, grid)
    state = SurrogateState(ability[None, :] - offsets, np.zeros(targets.size))
    alphas = np.repeat(ALPHAS, targets.size)
    final = expected_accuracy(PARAMS, run(tile_state(state, ALPHAS.size), lambda w, s: alphas, windows=150 // 4))
    final = final.reshape(ALPHAS.size, targets.size)
    best = ALPHAS[final.argmax(axis=0)]
    assert np.all(np.diff(best) >= 0) and best[0] < best[-1]
    assert final[-1, 0] < 0.2 < final[2, 0]  # full reveal hurts the weak student, 0.5 helps it
    assert best[-1] == 1.0  # and is best for the strong one
