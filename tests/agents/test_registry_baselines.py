import json

import numpy as np
import pytest

from agents import check_spec, make_controller
from agents.base import RunContext
from agents.baselines import FixedController, LinearController, RandomController, best_fixed_alpha
from agents.beta_agent import BetaAgent
from exposure_env.errors import ConfigError
from exposure_env.rewards import RewardSettings


@pytest.mark.parametrize("spec, allowed_fragment", [
    ("fixed:1.7", "[0, 1]"), ("fixed:-0.1", "[0, 1]"), ("fixed:abc", "a number"),
    ("linear:0.2:1.5", "[0, 1]"), ("step:0.2:1.5", "[0, 1]"), ("step:0.2", "step:"), ("beta:delayed", "immediate"), ("beta:discounted:2.5", "integer"),
])
def test_bad_specs_name_the_spec_the_allowed_values_and_the_value(spec, allowed_fragment):
    with pytest.raises(ConfigError) as excinfo:
        make_controller(spec)
    message = str(excinfo.value)
    assert repr(spec) in message and allowed_fragment in message
    received = spec.split(":")[-1]
    assert received in message


@pytest.mark.parametrize("spec", ["dqn", "fixed", "fixed:0.1:0.2", "random:3", "", "ppo:fast"])
def test_unknown_or_malformed_specs_list_the_allowed_forms(spec):
    with pytest.raises(ConfigError) as excinfo:
        check_spec(spec)
    assert "fixed:ALPHA" in str(excinfo.value) and "ppo-beta" in str(excinfo.value)


def test_specs_build_the_right_controllers():
    assert isinstance(make_controller("fixed:0.5"), FixedController)
    assert isinstance(make_controller("linear:0.2:1.0"), LinearController)
    assert isinstance(make_controller("random"), RandomController)
    immediate = make_controller("beta:immediate")
    assert isinstance(immediate, BetaAgent) and immediate.config.credit.lookahead is None
    assert immediate.config.credit.reward_mode == "immediate"
    full = make_controller("beta").config.credit
    assert (full.reward_mode, full.lookahead) == ("discounted+gt", 16)
    assert full.lambda_gt == RewardSettings().lambda_gt and full.gamma == RewardSettings().gamma  # shared settings
    assert make_controller("beta:discounted:8").config.credit.lookahead == 8
    assert make_controller("beta-carry").trains_before_run and not make_controller("beta").trains_before_run


def test_baseline_actions():
    obs = np.zeros(8, dtype=np.float32)
    assert make_controller("fixed:1.0").act(obs).tolist() == [1.0]
    linear = make_controller("linear:0.2:1.0")
    obs[0] = 0.5
    assert linear.act(obs)[0] == pytest.approx(0.6)
    step = make_controller("step:0.25:1.0:0.5")
    assert step.act(obs)[0] == 1.0 and make_controller("step:0.25:1.0:0.75").act(obs)[0] == 0.25
    obs[0] = 0.49
    assert step.act(obs)[0] == 0.25 and make_controller("step:0:1").at == 0.5
    a, b = make_controller("random"), make_controller("random")
    a.begin_run(RunContext(3, 10, 1, 10))
    b.begin_run(RunContext(3, 10, 1, 10))
    draws = [a.act(obs)[0] for _ in range(5)]
    assert draws == [b.act(obs)[0] for _ in range(5)] and len(set(draws)) == 5


def test_best_fixed_reads_a_sweep_file(tmp_path):
    top = tmp_path / "sweep.json"
    top.write_text(json.dumps({"alphas": [0, 0.25, 0.5, 1.0], "final_score_mean": [0.2, 0.6, 0.5, 0.4]}))
    assert best_fixed_alpha(top) == 0.25
    nested = tmp_path / "nested.json"
    nested.write_text(json.dumps({"surrogate": {"alphas": [0.5, 0.75], "final_score_mean": [0.1, 0.3]}}))
    controller = make_controller(f"best-fixed:{nested}")
    assert controller.act(np.zeros(8))[0] == 0.75
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"alpha": [0.5]}))
    with pytest.raises(ConfigError, match="final_score_mean"):
        make_controller(f"best-fixed:{bad}")
    with pytest.raises(ConfigError, match="readable JSON"):
        make_controller(f"best-fixed:{tmp_path / 'missing.json'}")


def test_importing_agents_is_cheap_and_never_imports_the_backend():
    import subprocess
    import sys

    code = ("import sys, agents, agents.runner, agents.compare, agents.cli; "
            "heavy = [m for m in ('stable_baselines3', 'matplotlib', 'distill_backend') if m in sys.modules]; "
            "print(heavy); import agents.beta_agent, agents.sb3_agents, agents.sb3_beta; "
            "print('distill_backend' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[]" and out[1] == "False"
    code = "import sys, agents; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
