"""End-of-run credit: decisions still open when a run ends are credited without a bias tied to
their position (``CreditSettings.end_of_run``)."""

import numpy as np
import pytest

from exposure_env.credit import CreditLedger, CreditSettings, complete_partial
from exposure_env.errors import ConfigError
from exposure_env.rewards import REWARD_MODES

HOLD, DECISIONS, LOOKAHEAD = 4, 10, 16  # the last 3 decisions see 12, 8 and 4 of their 16 updates


def _stationary_runs(settings, runs, seed=0):
    """Credit per (run, decision) when the per-update drops of the progress signal and the grounded
    values are i.i.d. (progress is stationary): every decision deserves the same expected credit."""
    rng = np.random.default_rng(seed)
    credits = np.full((runs, DECISIONS), np.nan)
    seen = np.zeros((runs, DECISIONS), dtype=int)
    for run in range(runs):
        ledger = CreditLedger(settings, LOOKAHEAD)
        level = 3.0
        for k in range(DECISIONS):
            trace = level - np.cumsum(rng.normal(0.01, 0.03, HOLD))
            info = {"progress_before": level, "diverged": False,
                    "trace": {"progress": trace, "grounded": rng.normal(-1.0, 0.3, HOLD)}}
            level = trace[-1]
            for done in ledger.record(k, 0.0, info, k == DECISIONS - 1):
                credits[run, done.payload] = done.credit
                seen[run, done.payload] = done.updates_seen
        assert ledger.open == []
    return credits, seen


@pytest.mark.parametrize("mode", REWARD_MODES)
def test_expected_credit_does_not_depend_on_position_when_progress_is_stationary(mode):
    settings = CreditSettings(reward_mode=mode, gamma=0.9, lambda_gt=0.05, lookahead=LOOKAHEAD)
    credits, seen = _stationary_runs(settings, runs=600)
    assert seen[0].tolist() == [16] * 7 + [12, 8, 4]
    full = credits[:, :7].reshape(-1)
    sem_full = full.std(ddof=1) / np.sqrt(full.size)
    for k in (7, 8, 9):  # open when the run ended
        late = credits[:, k]
        sem = late.std(ddof=1) / np.sqrt(late.size)
        assert abs(late.mean() - full.mean()) < 4 * np.hypot(sem, sem_full), (k, late.mean(), full.mean())
    # The test can see the bias it guards against: the last decision's credit over its 4 updates
    # as they are (no end-of-run rule) is far from the full-lookahead credit, except in
    # discounted+gt where the normalized G_gt term dominates the scale.
    if mode != "discounted+gt":
        scale = 16 / 4 if mode == "immediate" else (1 - 0.9 ** 16) / (1 - 0.9 ** 4)
        assert (credits[:, 9] / scale).mean() < 0.5 * full.mean()


def test_drop_rule_credits_only_decisions_whose_lookahead_filled():
    settings = CreditSettings(reward_mode="discounted", lookahead=LOOKAHEAD, end_of_run="drop")
    credits, seen = _stationary_runs(settings, runs=3)
    assert np.isfinite(credits[:, :7]).all() and np.isnan(credits[:, 7:]).all()
    assert (seen[:, :7] == LOOKAHEAD).all()


def test_a_diverged_decision_keeps_the_penalty_under_both_rules():
    for rule in ("rescale", "drop"):
        ledger = CreditLedger(CreditSettings(reward_mode="discounted", lookahead=8, end_of_run=rule), 8)
        ok = {"progress_before": 3.0, "diverged": False, "trace": {"progress": np.array([2.9, 2.8]),
                                                                    "grounded": np.zeros(2)}}
        assert ledger.record("a", 0.1, ok, False) == []
        done = ledger.record("b", -1.0, {"progress_before": 2.8, "diverged": True,
                                         "trace": {"progress": np.array([np.nan]), "grounded": np.zeros(1)}}, True)
        by_payload = {d.payload: d for d in done}
        assert by_payload["b"].credit == -1.0
        if rule == "drop":
            assert set(by_payload) == {"b"}
        else:  # drops 0.1, 0.1 -> G_lp over 2 updates = 0.1 + 0.9 * 0.1, rescaled to the mass of 8
            assert by_payload["a"].updates_seen == 2
            assert by_payload["a"].credit == pytest.approx(0.19 * sum(0.9 ** i for i in range(8)) / 1.9)


def test_complete_partial_scales_by_the_observed_weight_mass():
    from exposure_env.rewards import RewardComponents

    parts = complete_partial(RewardComponents(np.array(1.0), np.array(1.0), np.array(-2.0)), 2, 8, 0.5)
    assert float(parts.immediate) == pytest.approx(4.0)
    assert float(parts.discounted) == pytest.approx((2 - 0.5 ** 7) / 1.5)
    assert float(parts.grounded) == -2.0


def test_end_of_run_rule_is_validated():
    with pytest.raises(ConfigError) as excinfo:
        CreditSettings(end_of_run="truncate")
    assert "end_of_run" in str(excinfo.value) and "'truncate'" in str(excinfo.value)
