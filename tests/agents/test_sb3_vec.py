"""The SB3 VecEnv adapter over the native batched surrogate: same-step autoreset, truncation,
action mapping, and SB3 training through it."""

import numpy as np
import pytest

from exposure_env.vector import SurrogateVectorEnv

pytest.importorskip("stable_baselines3", reason="SB3 agents need the sb3 extra")

from agents.sb3_vec import GymnasiumVecEnvAdapter  # noqa: E402

WINDOW = 4
STEP = 1.0 / 4  # progress per decision with total_updates 16 and hold_window 4


def _adapter(num_envs=8, symmetric=True, **kwargs):
    venv = SurrogateVectorEnv(num_envs, total_updates=16, hold_window=WINDOW, **kwargs)
    return GymnasiumVecEnvAdapter(venv, symmetric=symmetric, seed=0)


def test_every_step_is_a_real_step_and_episodes_restart_in_the_same_step():
    env = _adapter()
    obs = env.reset()
    assert obs.shape == (8, 8) and obs.dtype == np.float32 and (obs[:, 0] == 0).all()
    done_at = []
    for t in range(12):  # three episodes of four decisions, back to back
        obs, rewards, dones, infos = env.step(np.zeros((8, 1), dtype=np.float32))  # alpha 0.5
        assert (rewards != 0).all()  # no wasted autoreset step with reward 0
        if dones.any():
            assert dones.all()
            done_at.append(t)
            for info in infos:
                assert info["terminal_observation"][0] == 1.0 and info["TimeLimit.truncated"] is False
            assert (obs[:, 0] == 0).all()  # the new runs' first observations
        else:
            assert np.allclose(obs[:, 0], STEP * ((t % 4) + 1)) and all("terminal_observation" not in i for i in infos)
    assert done_at == [3, 7, 11]


def test_runs_that_end_early_restart_alone_and_at_once():
    # A high collapse score makes weak students diverge at alpha = 1: sub-envs end at different steps.
    env = _adapter(params={"collapse_score": 0.3})
    obs = env.reset()
    steps_in_run = np.zeros(8, dtype=int)
    early = 0
    for _ in range(10):
        obs, rewards, dones, infos = env.step(np.ones((8, 1), dtype=np.float32))  # alpha 1
        steps_in_run += 1
        for i in range(8):
            if dones[i]:
                terminal = infos[i]["terminal_observation"]
                early += int(terminal[0] < 1.0)  # diverged before its budget was spent
                assert rewards[i] == -1.0 or terminal[0] == 1.0
                assert obs[i, 0] == 0.0
                steps_in_run[i] = 0
            else:
                # a running sub-env has advanced one window per step since its (same-step) reset
                assert obs[i, 0] == pytest.approx(STEP * steps_in_run[i])
    assert early > 0 and not dones.all()


def test_truncation_is_reported_for_sb3_and_actions_are_rescaled():
    venv = SurrogateVectorEnv(3, max_episode_steps=2, total_updates=16, hold_window=WINDOW)
    env = GymnasiumVecEnvAdapter(venv, symmetric=True, seed=5)
    direct = SurrogateVectorEnv(3, total_updates=16, hold_window=WINDOW)
    env.reset()
    direct.reset(seed=5)
    obs, rewards, _, _ = env.step(np.array([[-1.0], [0.0], [1.0]], dtype=np.float32))
    obs_direct, rewards_direct, *_ = direct.step(np.array([[0.0], [0.5], [1.0]]))  # the same reveal ratios
    assert np.array_equal(obs, obs_direct.astype(np.float32)) and np.allclose(rewards, rewards_direct)
    _, _, dones, infos = env.step(np.array([[-1.0], [0.0], [1.0]], dtype=np.float32))
    assert dones.all() and all(i["TimeLimit.truncated"] for i in infos)
    assert [i["reveal_ratio"] for i in infos] == [0.0, 0.5, 1.0] and not any(i["diverged"] for i in infos)
    assert all(i["terminal_observation"][0] == pytest.approx(0.5) for i in infos)
    native = GymnasiumVecEnvAdapter(SurrogateVectorEnv(2, total_updates=16), symmetric=False)
    assert native.action_space.low[0] == 0.0 and env.action_space.low[0] == -1.0


def test_the_run_recorder_summarizes_each_group_of_finished_runs():
    from types import SimpleNamespace

    from agents.sb3_vec import RunRecorder

    env, rows = _adapter(num_envs=4), []
    recorder = RunRecorder(every=4, on_record=rows.append)
    recorder.model = SimpleNamespace(num_timesteps=0, _n_updates=7)
    env.reset()
    scores, rewards = [], []
    for step in range(8):  # two runs of 4 decisions per sub-env
        alpha = 0.25 if step < 4 else 1.0
        _, reward, dones, infos = env.step(np.full((4, 1), 2 * alpha - 1, dtype=np.float32))
        recorder.model.num_timesteps += 4
        recorder.update_locals({"infos": infos, "dones": dones, "rewards": reward})
        assert recorder.on_step()
        rewards.append(reward)
        scores += [info["score"] for info, done in zip(infos, dones) if done]
    assert [row["runs_done"] for row in rows] == [4, 8] and len(scores) == 8
    assert rows[0]["final_score"] == pytest.approx(np.mean(scores[:4]))
    assert rows[1]["final_score"] == pytest.approx(np.mean(scores[4:]))
    assert [row["mean_alpha"] for row in rows] == pytest.approx([0.25, 1.0])
    assert rows[0]["reward_mean"] == pytest.approx(np.mean(rewards[:4]))
    assert rows[1]["timesteps"] == 32 and rows[1]["policy_updates"] == 7 and rows[1]["diverged_runs"] == 0
    with pytest.raises(ValueError, match="every"):
        RunRecorder(every=0, on_record=rows.append)


def test_seeding_makes_training_reproducible():
    first, second = _adapter(), _adapter()
    first.seed(7)
    second.seed(7)
    assert np.array_equal(first.reset(), second.reset())
    assert not np.array_equal(first.reset(), _adapter().reset())  # the next reset uses seed 8, not 0


def test_sb3_trains_on_the_batched_surrogate_and_acts_on_a_single_env(tmp_path):
    import gymnasium as gym

    import exposure_env  # noqa: F401
    from agents.episode import rollout
    from agents.registry import make_controller

    kwargs = {"total_updates": 40, "hold_window": 4}
    make_vec = lambda: gym.make_vec("ATESD-Surrogate-v0", num_envs=16,  # noqa: E731
                                    vectorization_mode="vector_entry_point", **kwargs)
    for algo in ("ppo", "ppo-beta", "sac"):
        controller = make_controller(algo, seed=0, n_steps=10, batch_size=80, learning_starts=64)
        trained = controller.train_batched(make_vec, runs=32, seed=100)
        assert trained >= 32 * 10 and controller.model.n_envs == 16
        result = rollout(gym.make("ATESD-Surrogate-v0", **kwargs), controller, seed=0)
        assert len(result.alphas) == 10 and all(0.0 <= a <= 1.0 for a in result.alphas)
