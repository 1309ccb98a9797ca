import numpy as np
import pytest
import torch

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


def _feed_noise_credits(agent, updates, seed, hold_window=4, decisions=50):
    """Drive the agent with probe-NLL traces whose drops are i.i.d. noise, independent of alpha: the
    credits carry no preference, so a neutral learner should not go anywhere on average."""
    rng = np.random.default_rng(seed)
    run = 0
    while agent.num_updates < updates:
        agent.begin_run(RunContext(run, decisions * hold_window, hold_window, decisions))
        level = 3.0
        for k in range(decisions):
            obs = np.zeros(8, dtype=np.float32)
            obs[0] = k / decisions
            action = agent.act(obs)
            trace = level - np.cumsum(rng.normal(0.01, 0.02, hold_window))
            info = {"progress_before": level, "diverged": False,
                    "trace": {"progress": trace, "grounded": rng.normal(-1.0, 0.1, hold_window)}}
            level = trace[-1]
            agent.observe(Transition(obs, action, 0.0, obs, k == decisions - 1, False, info))
        agent.end_run()
        run += 1


def _probe(progress):
    obs = np.zeros(8, dtype=np.float32)
    obs[0] = progress
    return obs


def test_pure_noise_credits_leave_the_mean_alpha_where_it_started():
    from agents.beta_agent import initial_entropy

    assert initial_entropy() == pytest.approx(-0.0775, abs=1e-3)
    finals = []
    for seed in range(4):
        agent = BetaAgent(seed=seed)
        assert agent.entropy_target == pytest.approx(initial_entropy())
        assert agent.policy_mean(_probe(0.5)) == pytest.approx(0.5)
        _feed_noise_credits(agent, updates=300, seed=seed)  # 2,400 decisions, 48 runs carried over
        finals.append([agent.policy_mean(_probe(p)) for p in (0.0, 0.5, 1.0)])
    finals = np.array(finals)
    assert np.abs(finals - 0.5).max() < 0.15, finals
    assert abs(finals.mean() - 0.5) < 0.05, finals
    # The same drive moves the policy into a corner with the old target of -1 nat (the test has power).
    old = BetaAgent(BetaAgentConfig(entropy_target=-1.0), seed=0)
    _feed_noise_credits(old, updates=300, seed=0)
    assert abs(old.policy_mean(_probe(0.5)) - 0.5) > 0.25


def test_the_entropy_penalty_is_inactive_at_the_initial_policy():
    obs = np.stack([_probe(p) for p in np.linspace(0, 1, 16)])
    samples = np.linspace(0.05, 0.95, 16)
    for target, moves in ((None, False), (-1.0, True)):
        agent = BetaAgent(BetaAgentConfig(entropy_target=target), seed=0)
        before = [p.detach().clone() for p in agent.policy.parameters()]
        stats = agent.policy_step(obs, samples, np.zeros(16))  # no preference between the samples
        changed = any(not torch.equal(a, b) for a, b in zip(before, agent.policy.parameters()))
        assert changed == moves and (stats["entropy_penalty"] > 0) == moves


def test_a_frozen_agent_acts_at_its_mean_and_never_learns():
    env = make_stub_env(total_updates=80, hold_window=4)
    agent = BetaAgent(BetaAgentConfig(online=False, action="mean", batch_size=2), seed=0)
    result = rollout(env, agent, seed=0)
    assert agent.num_updates == 0 and agent.completed == []
    assert np.allclose(result.alphas, 0.5, atol=1e-6)  # the initial policy's mean, every decision
    with pytest.raises(ConfigError, match="action"):
        BetaAgentConfig(online=True, action="mean")


def test_sample_batch_draws_like_act_and_respects_bounds():
    agent = BetaAgent(BetaAgentConfig(alpha_min=0.2, alpha_max=0.7), seed=3)
    obs = np.stack([_probe(p) for p in np.linspace(0, 1, 4000)])
    drawn = agent.sample_batch(obs)
    assert drawn.samples.shape == (4000,) and drawn.actions.shape == (4000, 1)
    assert drawn.actions.min() >= 0.2 - 1e-6 and drawn.actions.max() <= 0.7 + 1e-6
    # Beta(1 + ln 2, 1 + ln 2): mean 0.5, variance ab / ((a + b)^2 (a + b + 1))
    a = 1 + np.log(2)
    assert drawn.samples.mean() == pytest.approx(0.5, abs=0.02)
    assert drawn.samples.var() == pytest.approx(a * a / ((2 * a) ** 2 * (2 * a + 1)), rel=0.1)
