"""Pre-training on the batched surrogate and deploying what it learned (agents.pretrain,
agents.pretrained, the beta-pretrained / ppo-pretrained specs)."""

import json

import gymnasium as gym
import numpy as np
import pytest

import exposure_env  # noqa: F401
from agents.base import RunContext, Transition
from agents.beta_agent import BetaAgent, BetaAgentConfig
from agents.episode import rollout
from agents.pretrain import PretrainConfig, main, per_decision_advantages, pretrain, run_generation
from agents.registry import make_controller
from exposure_env.credit import CreditLedger
from exposure_env.errors import ConfigError

EPISODE = {"total_updates": 16, "hold_window": 4}


@pytest.fixture(scope="module")
def beta_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrained") / "beta"
    manifest = pretrain(PretrainConfig(agent="beta:immediate:8", env_kwargs=EPISODE, runs=40, num_envs=16,
                                       out=str(out), progress=False))
    return out, manifest


def test_pretraining_writes_a_manifest_and_a_checkpoint(beta_folder):
    out, manifest = beta_folder
    assert manifest.runs == 48 and manifest.policy_updates == 3 and len(manifest.curve) == 3  # 3 generations of 16
    assert manifest.agent_config["credit"]["reward_mode"] == "immediate"
    assert manifest.agent_config["credit"]["lookahead"] == 8
    data = json.loads((out / "pretrain.json").read_text())
    assert data["checkpoint"] == "checkpoint.safetensors" and (out / "checkpoint.safetensors").is_file()
    assert [row["runs_done"] for row in data["curve"]] == [16, 32, 48]
    assert all(0.0 <= row["final_score"] <= 1.0 for row in data["curve"])


def test_a_pretrained_spec_reads_its_checkpoint_and_says_so(beta_folder, tmp_path):
    import shutil

    from agents.registry import spec_inputs

    copy = tmp_path / "beta"
    shutil.copytree(beta_folder[0], copy)
    inputs = spec_inputs(f"beta-pretrained:{copy}")
    assert inputs == spec_inputs(f"beta-pretrained:{copy}:online") == spec_inputs(f"beta-pretrained:{beta_folder[0]}")
    assert len(inputs["checkpoint_sha256"]) == 64
    checkpoint = copy / "checkpoint.safetensors"
    checkpoint.write_bytes(checkpoint.read_bytes() + b" ")
    assert spec_inputs(f"beta-pretrained:{copy}") != inputs
    assert spec_inputs("fixed:0.5") == {} and spec_inputs("beta:immediate") == {}


def test_the_frozen_pretrained_policy_acts_at_its_mean_and_does_not_learn(beta_folder):
    out, manifest = beta_folder
    agent = make_controller(f"beta-pretrained:{out}", seed=3)
    assert isinstance(agent, BetaAgent) and not agent.trains_before_run
    assert (agent.config.online, agent.config.action) == (False, "mean")
    assert agent.config.credit.lookahead == 8  # the credit it was pre-trained with
    assert agent.num_updates == manifest.policy_updates
    env = gym.make("ATESD-Surrogate-v0", **EPISODE)
    first, second = rollout(env, agent, seed=0), rollout(env, make_controller(f"beta-pretrained:{out}", seed=9), seed=0)
    assert first.alphas == second.alphas  # deterministic, whatever the controller's seed
    assert agent.num_updates == manifest.policy_updates
    obs, _ = env.reset(seed=0)
    assert first.alphas[0] == pytest.approx(agent.policy_mean(obs), abs=1e-6)


def test_the_online_pretrained_policy_keeps_learning(beta_folder):
    out, manifest = beta_folder
    agent = make_controller(f"beta-pretrained:{out}:online", seed=0)
    assert (agent.config.online, agent.config.action) == (True, "sample") and agent.name.endswith(":online")
    rollout(gym.make("ATESD-Surrogate-v0", total_updates=80, hold_window=4), agent, seed=0)
    assert agent.num_updates > manifest.policy_updates


def test_batched_credit_is_the_single_env_ledger_credit():
    """One run of the vector env (num_envs=1 replays the single env's first episode) credited by
    run_generation equals the credit a CreditLedger gives the same decisions on the single env."""
    config = BetaAgentConfig(online=False, action="mean")  # deterministic decisions on both paths
    agent = BetaAgent(config, seed=0)
    kwargs = {"total_updates": 22, "hold_window": 4, "reward_mode": "discounted"}  # a last window of 2
    venv = gym.make_vec("ATESD-Surrogate-v0", num_envs=1, vectorization_mode="vector_entry_point", **kwargs)
    decisions, ends, _ = run_generation(agent, venv, seed=7)
    env = gym.make("ATESD-Surrogate-v0", **kwargs)
    ledger = CreditLedger(config.credit, config.credit.lookahead)
    credits, obs, done, step = {}, env.reset(seed=7)[0], False, 0
    while not done:
        action = agent.act(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        for d in ledger.record(step, reward, info, done):
            credits[d.payload] = d.credit
        step += 1
    assert [d.payload.step for d in decisions] == sorted(credits)
    np.testing.assert_allclose([d.credit for d in decisions], [credits[k] for k in sorted(credits)], rtol=1e-9)
    assert ends.score[0] == pytest.approx(info["score"])


def test_per_decision_advantages_compare_decisions_at_the_same_step():
    credits = np.array([1.0, 3.0, 10.0, 30.0])
    steps = np.array([0, 0, 1, 1])
    advantages = per_decision_advantages(credits, steps)
    # within each step the better decision gets the positive advantage, whatever the step's scale
    np.testing.assert_allclose(advantages, [-0.7071, 0.7071, -0.7071, 0.7071], atol=1e-4)


def test_policy_steps_move_the_policy_towards_better_credited_alphas():
    agent = BetaAgent(BetaAgentConfig(learning_rate=0.01), seed=0)
    obs = np.random.default_rng(0).uniform(0, 1, (256, 8)).astype(np.float32)
    assert agent.policy_mean(obs[0]) == pytest.approx(0.5)
    for _ in range(40):
        drawn = agent.sample_batch(obs)
        credits = -(drawn.samples - 0.85) ** 2
        agent.policy_step(obs, drawn.samples, per_decision_advantages(credits, np.zeros(256)))
    assert agent.policy_mean(obs[0]) > 0.65


def test_ppo_pretrained_on_the_batched_surrogate_is_deployed_as_is(tmp_path):
    pytest.importorskip("stable_baselines3")
    out = tmp_path / "ppo"
    manifest = pretrain(PretrainConfig(agent="ppo", env_kwargs=EPISODE, runs=32, num_envs=16, out=str(out),
                                       agent_overrides={"n_steps": 4, "batch_size": 32}, progress=False))
    assert manifest.kind == "ppo" and manifest.policy_updates >= 32 * 4 and (out / "model.zip").is_file()
    # a training curve like the Beta policy's: one record per 16 finished runs
    assert [row["runs_done"] for row in manifest.curve] == [16, 32]
    assert all(0.0 <= row["final_score"] <= 1.0 and 0.0 <= row["mean_alpha"] <= 1.0 for row in manifest.curve)
    assert manifest.curve[1]["policy_updates"] > manifest.curve[0]["policy_updates"] >= 0
    controller = make_controller(f"ppo-pretrained:{out}", seed=0)
    assert not controller.trains_before_run and controller.config.n_steps == 4
    result = rollout(gym.make("ATESD-Surrogate-v0", **EPISODE), controller, seed=0)
    assert len(result.alphas) == 4
    controller.begin_run(RunContext(0, 16, 4, 4))
    obs = np.zeros(8, dtype=np.float32)
    assert np.array_equal(controller.act(obs), make_controller(f"ppo-pretrained:{out}").act(obs))
    with pytest.raises(ConfigError, match="online"):
        make_controller(f"ppo-pretrained:{out}:online")
    with pytest.raises(ConfigError, match="ppo"):
        make_controller(f"sac-pretrained:{out}")
    with pytest.raises(ConfigError, match="ppo"):
        make_controller(f"beta-pretrained:{out}")
    assert controller.observe(Transition(obs, obs[:1], 0.0, obs, False, False, {})) == {}


def test_bad_pretrained_specs_and_configs_name_the_problem(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        make_controller(f"beta-pretrained:{tmp_path / 'missing'}")
    assert "agents.pretrain" in str(excinfo.value) and "missing" in str(excinfo.value)
    with pytest.raises(ConfigError, match="agent"):
        PretrainConfig(agent="fixed:0.5")
    with pytest.raises(ConfigError, match="advantage"):
        PretrainConfig(advantage="global")
    with pytest.raises(ConfigError, match="params"):
        PretrainConfig(params="tiny-qwen3", env_kwargs={"params": {}})


def test_the_command_line_pretrains(tmp_path, capsys):
    assert main(["--runs", "8", "--num-envs", "8", "--env-kwargs", json.dumps(EPISODE), "--out",
                 str(tmp_path / "cli"), "--no-progress"]) == 0
    assert "pre-trained beta on 8 runs (1 policy updates)" in capsys.readouterr().out
    assert (tmp_path / "cli" / "pretrain.json").is_file()


def test_the_command_line_reports_bad_input_without_a_traceback(tmp_path, capsys):
    # a params name the surrogate does not ship: the env's error, naming the field
    assert main(["--params", "no-such-set", "--runs", "8", "--num-envs", "8", "--out", str(tmp_path / "bad"),
                 "--no-progress"]) == 2
    assert "params" in capsys.readouterr().err
