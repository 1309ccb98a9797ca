"""Checkpoints without pickle: the format round-trips what states hold, a crafted pickle never runs,
and a controller restored mid-run continues exactly as the original."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from agents.base import RunContext, Transition
from agents.beta_agent import BetaAgent, BetaAgentConfig
from agents.checkpoint import read_checkpoint, write_checkpoint
from agents.registry import make_controller
from exposure_env.credit import CreditSettings
from exposure_env.errors import CheckpointError, ConfigError
from tests.agents.stub_env import make_stub_env


class _RunsCode:
    """Unpickling this calls ``pathlib.Path.touch`` on the marker: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import pathlib

        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def crafted_pickles(tmp_path):
    """A plain pickle and a ``torch.save`` zip whose loading would create ``marker``."""
    marker = tmp_path / "code-ran"
    plain = tmp_path / "evil.pkl"
    plain.write_bytes(pickle.dumps({"policy": _RunsCode(marker)}))
    zipped = tmp_path / "evil.pt"
    torch.save({"policy": _RunsCode(marker)}, zipped)
    return marker, [plain, zipped]


def test_round_trip_keeps_types_tensors_and_rng_states(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    state = {
        "optimizer": optimizer.state_dict(),  # int keys, tuples, 0-d tensors
        "weights": dict(model.state_dict()),
        "bf16": torch.arange(4, dtype=torch.bfloat16),
        "generator": torch.Generator().manual_seed(3).get_state(),
        "numpy_rng": np.random.default_rng(1).bit_generator.state,  # 128-bit ints
        "array": np.arange(6, dtype=np.int64).reshape(2, 3), "empty": np.zeros(0),
        "scalar": np.float32(1.5), "nan": math.nan, "inf": -math.inf, "nested": (1, [2, (3,)], None),
        "keys": {1: "a", "__tuple__": "a key that looks like a tag"},
    }
    path = write_checkpoint(tmp_path / "state.safetensors", "test", state)
    back = read_checkpoint(path, "test")
    assert list(back["optimizer"]["state"]) == [0, 1]
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert back["bf16"].dtype == torch.bfloat16 and torch.equal(back["bf16"], state["bf16"])
    assert torch.equal(back["generator"], state["generator"]) and back["numpy_rng"] == state["numpy_rng"]
    assert back["array"].dtype == np.int64 and np.array_equal(back["array"], state["array"])
    assert back["empty"].shape == (0,)
    assert type(back["scalar"]) is np.float32 and back["scalar"] == 1.5
    assert math.isnan(back["nan"]) and back["inf"] == -math.inf
    assert back["nested"] == (1, [2, (3,)], None) and back["keys"] == state["keys"]
    clone = torch.optim.AdamW(model.parameters())
    clone.load_state_dict(back["optimizer"])  # loads as a real optimizer state
    assert clone.state_dict()["state"][0]["step"] == optimizer.state_dict()["state"][0]["step"]


def test_a_state_without_tensors_needs_no_torch(tmp_path):
    path = write_checkpoint(tmp_path / "s.safetensors", "test", {"x": np.ones(2), "n": 3})
    back = read_checkpoint(path, "test")
    assert isinstance(back["x"], np.ndarray) and back["n"] == 3


def test_unsupported_values_name_their_place(tmp_path):
    with pytest.raises(TypeError, match=r"state\.inner\[1\]"):
        write_checkpoint(tmp_path / "s.safetensors", "test", {"inner": [1, object()]})


def test_a_crafted_pickle_is_refused_and_runs_no_code(tmp_path):
    marker, files = crafted_pickles(tmp_path)
    pickle.loads(files[0].read_bytes())  # control: an unpickling loader does run the file's code
    assert marker.exists()
    marker.unlink()
    for path in files:
        with pytest.raises(CheckpointError, match="pickle") as excinfo:
            BetaAgent(BetaAgentConfig()).load(path)
        assert str(path) in str(excinfo.value)
        with pytest.raises(CheckpointError):
            read_checkpoint(path, "run")
    assert not marker.exists()


def test_a_checkpoint_of_another_kind_is_refused(tmp_path):
    path = write_checkpoint(tmp_path / "run.safetensors", "run", {"x": 1})
    with pytest.raises(CheckpointError, match="'run' checkpoint; expected 'beta-agent'"):
        BetaAgent(BetaAgentConfig()).load(path)


def test_truncated_checkpoint_is_refused_with_its_path(tmp_path):
    agent = BetaAgent(BetaAgentConfig(), seed=0)
    path = tmp_path / "beta.safetensors"
    agent.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match=str(path)):
        BetaAgent(BetaAgentConfig()).load(path)


def test_baselines_refuse_save_and_load(tmp_path):
    controller = make_controller("fixed:0.5")
    for call in (controller.save, controller.load):
        with pytest.raises(ConfigError, match="no learned state"):
            call(tmp_path / "x.safetensors")


def _transition(obs, action, step):
    progress = np.array([3.0 - 0.1 * step, 2.9 - 0.1 * step])
    info = {"progress_before": 3.05 - 0.1 * step, "diverged": False,
            "trace": {"progress": progress, "grounded": np.array([-1.0, -0.9])}}
    return Transition(obs, action, 0.0, obs, False, False, info)


def test_beta_agent_restored_mid_run_continues_exactly(tmp_path):
    """The complete state: ledger's open decisions (lookahead spans windows), unfinished batch,
    optimizer, sampling generator and the sample pending between act() and observe()."""
    config = BetaAgentConfig(batch_size=3, credit=CreditSettings(reward_mode="discounted+gt", lookahead=5))
    original = BetaAgent(config, seed=0)
    original.begin_run(RunContext(0, 40, 2, 20))
    rng = np.random.default_rng(0)
    observations = rng.random((12, 8)).astype(np.float32)
    for step in range(7):
        action = original.act(observations[step])
        original.observe(_transition(observations[step], action, step))
    pending_action = original.act(observations[7])  # a sample pending between act() and observe()
    assert original.ledger.open and original.completed and original.num_updates > 0
    path = tmp_path / "beta.safetensors"
    original.save(path)
    restored = BetaAgent(config, seed=123)
    restored.load(path)

    def continue_run(agent, first_action):
        stats = [agent.observe(_transition(observations[7], first_action, 7))]
        for step in range(8, 12):
            action = agent.act(observations[step])
            stats.append(agent.observe(_transition(observations[step], action, step)))
        return stats, agent.end_run()

    assert continue_run(original, pending_action) == continue_run(restored, pending_action)
    for a, b in zip(original.policy.parameters(), restored.policy.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(original.generator.get_state(), restored.generator.get_state())


def test_beta_checkpoint_of_another_policy_size_names_the_field(tmp_path):
    path = tmp_path / "beta.safetensors"
    BetaAgent(BetaAgentConfig(), seed=0).save(path)
    with pytest.raises(ConfigError, match="hidden_sizes") as excinfo:
        BetaAgent(BetaAgentConfig(hidden_sizes=(8,))).load(path)
    assert str(path) in str(excinfo.value)


def test_random_controller_state_resumes_its_stream():
    controller = make_controller("random")
    controller.begin_run(RunContext(4, 8, 2, 4))
    obs = np.zeros(8, dtype=np.float32)
    controller.act(obs)
    clone = make_controller("random")
    clone.load_state_dict(controller.state_dict())
    assert [controller.act(obs)[0] for _ in range(3)] == [clone.act(obs)[0] for _ in range(3)]


def test_sb3_checkpoint_is_ours_and_rebuilds_the_model(tmp_path):
    pytest.importorskip("stable_baselines3")
    make_env = lambda: make_stub_env(total_updates=40, hold_window=4)  # noqa: E731
    controller = make_controller("sac", seed=0, learning_starts=5, batch_size=8)
    controller.train(make_env, episodes=3, seed=0)
    path = tmp_path / "sac.safetensors"
    controller.save(path)
    assert path.read_bytes()[:8] != b"PK\x03\x04"  # not SB3's zip
    clone = make_controller("sac", seed=7)
    clone.load(path)
    obs = make_env().reset(seed=3)[0]
    assert np.array_equal(controller.act(obs), clone.act(obs))
    assert clone.timesteps_trained == controller.timesteps_trained
    marker, files = crafted_pickles(tmp_path)
    for bad in files:
        with pytest.raises(CheckpointError):
            make_controller("sac").load(bad)
    assert not marker.exists()
    with pytest.raises(ConfigError, match="algo"):
        make_controller("td3").load(path)
