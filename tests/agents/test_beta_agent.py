import numpy as np
import pytest

from agents.base import RunContext, Transition
from agents.beta_agent import BetaAgent, BetaAgentConfig
from agents.episode import rollout
from exposure_env.credit import CreditLedger, CreditSettings
from exposure_env.errors import ConfigError
from exposure_env.rewards import RewardSettings, discounted_progress, grounded_score
from tests.agents.stub_env import make_stub_env


@pytest.mark.parametrize("peak", [0.2, 0.8])
def test_beta_agent_finds_the_best_constant_alpha_of_a_stub(peak):
    env = make_stub_env(peak=peak, total_updates=400, hold_window=4)
    agent = BetaAgent(BetaAgentConfig(credit=CreditSettings(reward_mode="discounted", lookahead=16)), seed=0)
    obs, _ = env.reset(seed=123)
    assert abs(agent.policy_mean(obs) - peak) > 0.25  # the initial policy (mean 0.5) is far off
    for episode in range(8):  # 800 decisions, learning online and carried over between runs
        result = rollout(env, agent, seed=episode)
    assert abs(agent.policy_mean(obs) - peak) < 0.15
    assert abs(float(np.mean(result.alphas[-30:])) - peak) < 0.15


def _info(l_before, progress, grounded, diverged=False):
    return {"progress_before": l_before, "diverged": diverged,
            "trace": {"progress": np.array(progress), "grounded": np.array(grounded)}}


def test_credit_spans_later_windows():
    ledger = CreditLedger(RewardSettings("discounted+gt", gamma=0.8, lambda_gt=0.1), lookahead=6)
    assert ledger.record("a", 0.0, _info(3.0, [2.9, 2.8, 2.85, 2.7], [-1, -1, -1, -1]), False) == []
    done = ledger.record("b", 0.0, _info(2.7, [2.6, 2.65, 2.5, 2.4], [-0.5] * 4), False)
    assert len(done) == 1  # the first decision has seen 8 >= 6 updates; the second only 4
    l_trace = np.array([2.9, 2.8, 2.85, 2.7, 2.6, 2.65])
    g_trace = np.array([-1, -1, -1, -1, -0.5, -0.5])
    expected = discounted_progress(3.0, l_trace, 0.8) + 0.1 * grounded_score(g_trace, 0.8)
    assert done[0].credit == pytest.approx(float(expected))
    assert done[0].payload == "a" and done[0].updates_seen == 6
    # The episode ends: the second decision is completed with the updates it got.
    last = ledger.record("c", 0.0, _info(2.4, [2.3, 2.2], [-0.2, -0.2]), True)
    assert [d.updates_seen for d in last] == [6, 2]
    assert ledger.open == []


def test_immediate_credit_and_diverged_window():
    ledger = CreditLedger(RewardSettings("immediate"), lookahead=4)
    done = ledger.record("a", 0.0, _info(3.0, [2.9, 3.1, 2.8, 2.95], [0, 0, 0, 0]), False)
    assert done[0].credit == pytest.approx(0.05)
    # A diverged window is known by info["diverged"], whatever its trace holds: the penalty is its credit.
    diverged = ledger.record("b", -1.0, _info(2.95, [2.9], [0.0], diverged=True), True)
    assert diverged[0].credit == -1.0 and diverged[0].updates_seen == 0


def test_ledger_credit_over_the_own_window_is_the_env_reward():
    import gymnasium as gym

    import exposure_env  # noqa: F401

    for mode in ("immediate", "discounted", "discounted+gt"):
        env = gym.make("ATESD-Surrogate-v0", reward_mode=mode, total_updates=40)
        ledger = CreditLedger(env.unwrapped.config.reward_settings, lookahead=4)
        env.reset(seed=0)
        for alpha in (0.2, 0.9, 0.5):
            _, reward, terminated, _, info = env.step(np.array([alpha], dtype=np.float32))
            (done,) = ledger.record(alpha, reward, info, terminated)
            assert done.credit == pytest.approx(reward, rel=1e-12, abs=1e-15)


def test_save_load_round_trip_reproduces_actions(tmp_path):
    env = make_stub_env(total_updates=80, hold_window=4)
    agent = BetaAgent(BetaAgentConfig(batch_size=4), seed=1)
    rollout(env, agent, seed=0)  # learn a little so the weights are not the initial ones
    agent.save(tmp_path / "beta.pt")
    clone = BetaAgent(BetaAgentConfig(batch_size=4), seed=999)
    clone.load(tmp_path / "beta.pt")
    context = RunContext(5, 80, 4, 20)
    agent.begin_run(context)
    clone.begin_run(context)
    obs, _ = env.reset(seed=5)
    for _ in range(5):
        assert np.array_equal(agent.act(obs), clone.act(obs))
    assert clone.num_updates == agent.num_updates > 0
    with pytest.raises(ConfigError, match="hidden_sizes"):
        BetaAgent(BetaAgentConfig(hidden_sizes=(8,))).load(tmp_path / "beta.pt")


def test_actions_respect_the_alpha_bounds():
    env = make_stub_env(total_updates=40, hold_window=2)
    agent = BetaAgent(BetaAgentConfig(alpha_min=0.3, alpha_max=0.6), seed=0)
    result = rollout(env, agent, seed=0)
    assert min(result.alphas) >= 0.3 - 1e-6 and max(result.alphas) <= 0.6 + 1e-6  # float32 actions
    assert len(set(result.alphas)) > 3


def test_observe_without_act_scores_the_applied_action():
    agent = BetaAgent(BetaAgentConfig(batch_size=2, credit=CreditSettings(lookahead=None)), seed=0)
    agent.begin_run(RunContext(0, 8, 2, 4))
    obs = np.zeros(8, dtype=np.float32)
    for step in range(2):
        info = _info(3.0 - step, [2.5 - step, 2.0 - step], [-1.0, -1.0])
        agent.observe(Transition(obs, np.array([0.4 + 0.2 * step], np.float32), 0.0, obs, False, False, info))
    assert agent.num_updates == 1


@pytest.mark.parametrize("field, value", [
    ("batch_size", 1), ("alpha_min", -0.1), ("entropy_target", 0.5), ("hidden_sizes", ()),
    ("optimizer", "rmsprop"), ("learning_rate", 0.0), ("dtype", "bfloat16"), ("credit", "full"),
])
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ConfigError) as excinfo:
        BetaAgentConfig(**{field: value})
    assert field in str(excinfo.value) and repr(value) in str(excinfo.value)


@pytest.mark.parametrize("field, value", [("reward_mode", "delayed"), ("lookahead", 0), ("gamma", 1.5),
                                          ("lambda_gt", -0.1)])
def test_credit_settings_validation_names_the_field(field, value):
    with pytest.raises(ConfigError) as excinfo:
        BetaAgentConfig(credit={field: value})
    assert field in str(excinfo.value) and repr(value) in str(excinfo.value)


def test_alpha_max_below_alpha_min_is_rejected():
    with pytest.raises(ConfigError, match="alpha_max"):
        BetaAgentConfig(alpha_min=0.6, alpha_max=0.4)
