import sys

import numpy as np
import pytest

from agents.registry import make_controller
from agents.runner import make_env_factory, rollout
from exposure_env.errors import BackendUnavailableError, ConfigError
from tests.agents.conftest import surrogate_available

pytest.importorskip("stable_baselines3", reason="SB3 agents need the sb3 extra")
pytestmark = pytest.mark.skipif(not surrogate_available(), reason="exposure_env.surrogate is not importable yet")

SURROGATE = "ATESD-Surrogate-v0"


@pytest.mark.parametrize("algo", ["ppo", "sac", "a2c", "td3", "ppo-beta"])
def test_sb3_agent_trains_and_runs_on_the_surrogate(algo, tmp_path):
    make_env = make_env_factory(SURROGATE, {"total_updates": 120, "hold_window": 2})
    controller = make_controller(algo, seed=0, n_steps=64, learning_starts=50)
    controller.train(make_env, episodes=5, seed=100)  # 300 decisions
    assert controller.timesteps_trained == 300
    result = rollout(make_env(), controller, seed=0)
    assert len(result.alphas) == 60
    assert all(0.0 <= a <= 1.0 for a in result.alphas)
    controller.save(tmp_path / f"{algo}.zip")
    clone = make_controller(algo, seed=1)
    clone.load(tmp_path / f"{algo}.zip")
    obs, _ = make_env().reset(seed=3)
    assert np.array_equal(controller.act(obs), clone.act(obs))


def test_ppo_beta_acts_natively_in_unit_interval():
    from agents.distributions import BetaDistribution

    make_env = make_env_factory(SURROGATE, {"total_updates": 40, "hold_window": 2})
    controller = make_controller("ppo-beta", seed=0, n_steps=32)
    controller.train(make_env, episodes=0, seed=0)
    policy = controller.model.policy
    assert isinstance(policy.action_dist, BetaDistribution)
    assert controller.model.action_space.low[0] == 0.0 and controller.model.action_space.high[0] == 1.0
    import torch

    obs = torch.zeros(4, 8)
    actions, values, log_prob = policy(obs)
    assert actions.shape == (4, 1) and torch.all((actions >= 0) & (actions <= 1))
    assert log_prob.shape == (4,) and torch.isfinite(log_prob).all()


def test_untrained_sb3_agent_explains_itself():
    controller = make_controller("sac")
    with pytest.raises(RuntimeError, match="train"):
        controller.begin_run(None)


def test_bad_sb3_override_is_a_config_error():
    with pytest.raises(ConfigError, match="n_steps"):
        make_controller("ppo", n_steps=1)


def test_missing_sb3_gives_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)
    with pytest.raises(BackendUnavailableError, match=r"pip install -e '\.\[sb3\]'"):
        make_controller("ppo")
