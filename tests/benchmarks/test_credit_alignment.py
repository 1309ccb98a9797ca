"""Credit alignment: the counterfactual isolates one decision, and the comparison detects both a credit
that ranks reveal ratios as their effect on the final score does and one that does not."""

import dataclasses
import json

import numpy as np
import pytest

from benchmarks import credit_alignment
from exposure_env.surrogate import SurrogateParams

QUIET = dict(learning_noise=0.0, observation_noise=(0.0,) * 8)


def _args(tmp_path, params: SurrogateParams, **overrides) -> credit_alignment.Args:
    path = tmp_path / "params.json"
    path.write_text(json.dumps(params.to_dict()))
    base = credit_alignment.Args(params=str(path), seeds=16, total_updates=48, hold_window=4, lookahead=16,
                                 decision_points=(1, 5), out=str(tmp_path / "out.json"))
    return dataclasses.replace(base, **overrides)


def test_candidates_differ_only_in_the_decision(tmp_path):
    """Common random numbers: two identical candidates give identical finals and credits, and a
    decision point past the end of the run changes nothing."""
    args = _args(tmp_path, SurrogateParams())
    finals, credits = credit_alignment.counterfactuals(credit_alignment.load_params(args.params), args, 3,
                                                       np.array([0.5, 0.5, 1.0]))
    assert np.array_equal(finals[0], finals[1])
    assert not np.array_equal(finals[0], finals[2])
    for credit in credits.values():
        assert np.array_equal(credit[0], credit[1])


def test_progress_credit_ranks_like_the_effect_when_the_probe_tracks_competence(tmp_path):
    """Without a transient or noise the probe NLL is a linear function of competence, so the
    discounted credit (probe-NLL drops over the lookahead) must order reveal ratios as their effect
    on the final score does."""
    params = dataclasses.replace(SurrogateParams(), shallow_gain=0.0, **QUIET)
    result = credit_alignment.run(_args(tmp_path, params))
    candidates = result["candidates"]
    for entry in result["points"].values():
        effect, mode = np.array(entry["effect_mean"]), entry["modes"]["discounted"]
        assert mode["spearman_of_means"] >= 0.8
        # the credit's favourite is the effect's, or one the effect cannot tell from it (near ties)
        chosen = effect[candidates.index(mode["best_by_credit"])]
        assert chosen >= effect.max() - 0.1 * (effect.max() - effect.min())


def test_a_fast_transient_makes_the_immediate_credit_prefer_more_exposure_than_helps(tmp_path):
    """A surface-imitation transient that lowers the probe NLL at once under high exposure (and
    carries no competence) pays the one-window credit for exposure the final score does not want."""
    params = dataclasses.replace(SurrogateParams(), shallow_gain=0.5, shallow_persistence=0.5, **QUIET)
    result = credit_alignment.run(_args(tmp_path, params))
    early = result["points"]["1"]
    assert early["modes"]["immediate"]["best_by_credit"] > early["best_by_effect"]
    assert early["modes"]["immediate"]["spearman_of_means"] < early["modes"]["discounted"]["spearman_of_means"] \
        or early["modes"]["immediate"]["spearman_of_means"] < 0.5


@pytest.mark.parametrize("name", ["default"])
def test_main_writes_the_result(tmp_path, name):
    args = _args(tmp_path, SurrogateParams())
    out = credit_alignment.main(["--params", name, "--seeds", "4", "--total-updates", "16", "--decision-points", "0",
                                 "--out", args.out])
    stored = json.loads((tmp_path / "out.json").read_text())
    assert stored["spearman_of_means_by_mode"] == out["spearman_of_means_by_mode"]
    assert set(stored["spearman_of_means_by_mode"]) == {"immediate", "discounted", "discounted+gt"}
