"""One process of the data-parallel tests (``test_data_parallel.py``): a short ATESD-Qwen3-v0 run on
the tiny test model, under ``torchrun`` (one replica per process) or alone (the reference).

Each process drives its own env with its own actions and reset seed (another rank's differ from
rank 0's on purpose: the backend must apply rank 0's), then saves what the test compares to
``OUT/<label>.pt``: observations, rewards, applied reveal ratios, the per-update statistics, the
last update's gradients and the final parameters. Under torchrun it then runs ``atesd run`` (the
command line) into ``OUT/cli`` and records which files each rank saw written.

Usage: ``python -m tests.distill_backend.data_parallel_worker OUT [LABEL]``.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import sys

import gymnasium as gym
import numpy as np
import torch

import exposure_env  # noqa: F401 - registers the env ids
from exposure_env.launch import launch_position
from tests.distill_backend.conftest import TINY_KWARGS

# The tiny test model, 4 questions x 2 rollouts per update (2 questions per rank with 2 processes).
# top-p 1e-6 keeps only the most likely token: rollouts and evaluation answers then do not depend
# on the sampling stream, so runs with different streams (1 process vs 2) can be compared value by
# value. The loss is reverse KL so every token has a gradient (the clipped forward KL zeroes most).
RUN_KWARGS = dict(TINY_KWARGS, questions_per_update=4, rollouts_per_question=2, rollout_top_p=1e-6,
                  eval_top_p=1e-6, eval_every=1, loss="reverse_kl", total_updates=6, hold_window=2)
ALPHAS = (0.25, 1.0, 0.6)
SEED = 5


def run(out: pathlib.Path, label: str, kwargs: dict | None = None) -> dict:
    """The run of this process; returns (and saves to ``out/label.pt``) what the tests compare."""
    torch.set_num_threads(1)
    rank = launch_position().rank
    env = gym.make("ATESD-Qwen3-v0", **(kwargs or RUN_KWARGS))
    backend = env.unwrapped.backend
    # Another rank resets with another seed and acts differently: rank 0's must win.
    obs, info = env.reset(seed=SEED if rank == 0 else SEED + 100 + rank)
    record = {"obs": [obs.tolist()], "rewards": [], "alphas": [], "traces": [], "scores": [info["score"]],
              "sampling_seed": backend.generator.initial_seed(), "rank": rank}
    for alpha in ALPHAS:
        action = [alpha] if rank == 0 else [1.0 - alpha]
        obs, reward, terminated, _, info = env.step(action)
        record["obs"].append(obs.tolist())
        record["rewards"].append(float(reward))
        record["alphas"].append(info["reveal_ratio"])
        record["traces"].append(info["trace"].values.tolist())
        record["scores"].append(info["score"])
        if terminated:
            break
    record["evaluation"] = backend.evaluate(greedy=True)._asdict()
    record["patterned_evaluation"] = patterned_evaluation(backend)._asdict()
    record["grads"] = [p.grad.detach().clone() for p in backend._params]
    record["params"] = [p.detach().clone() for p in backend._params]
    env.close()
    out.mkdir(parents=True, exist_ok=True)
    torch.save(record, out / f"{label}.pt")
    return record


def patterned_evaluation(backend):
    """``backend.evaluate()`` with answers graded by a fixed pattern of each problem instead of the
    model (the tiny test model answers nothing right): a wrong split or gather of the shares shows."""
    import distill_backend.backend
    import distill_backend.evaluation as evaluation

    def grade(model, tokenizer, prompts, problems, config, generator, device, greedy=False):
        k = 1 if greedy else config.k
        correct = np.array([[int(hashlib.md5(f"{p.problem}/{j}".encode()).hexdigest(), 16) % 2 for j in range(k)]
                            for p in problems], dtype=np.float64)
        return evaluation.GradedSamples(correct.reshape(len(problems), k),
                                        [len(p.problem) for p in problems for _ in range(k)])

    real = evaluation.grade_samples
    evaluation.grade_samples = distill_backend.backend.grade_samples = grade
    try:
        return backend.evaluate()
    finally:
        evaluation.grade_samples = distill_backend.backend.grade_samples = real


def run_command_line(out: pathlib.Path) -> None:
    """``atesd run`` on every rank; each rank notes where its run wrote and what it printed."""
    import contextlib
    import io

    import agents.cli

    seen = []

    def spy(config, *args, **kwargs):
        seen.append(str(config.out_dir))
        return real(config, *args, **kwargs)

    real, agents.cli.run_controlled = agents.cli.run_controlled, spy
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = agents.cli.main(["run", "--env", "ATESD-Qwen3-v0", "--agent", "fixed:0.5", "--seed", "0", "--out",
                                str(out / "cli"), "--no-progress", "--env-kwargs",
                                json.dumps(dict(RUN_KWARGS, total_updates=2))])
    agents.cli.run_controlled = real
    rank = launch_position().rank
    (out / f"cli_rank{rank}.json").write_text(json.dumps({"code": code, "out_dirs": seen,
                                                          "stdout": printed.getvalue()}))


LORA_KWARGS = dict(RUN_KWARGS, lora_rank=4, lora_alpha=8.0)


def run_lora(out: pathlib.Path) -> dict:
    """The run with a LoRA adapter, whose random init is drawn from the global RNG: each rank's is
    made different on purpose, and DDP must start every rank from rank 0's."""
    torch.manual_seed(1_000 + launch_position().rank)
    return run(out, f"lora_rank{launch_position().rank}", LORA_KWARGS)


if __name__ == "__main__":
    target = pathlib.Path(sys.argv[1])
    position = launch_position()
    run(target, sys.argv[2] if len(sys.argv) > 2 else f"rank{position.rank}")
    if position.launched:
        run_lora(target)
        run_command_line(target)
