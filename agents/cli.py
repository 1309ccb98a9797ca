"""The ``atesd`` command: ``atesd run`` (one controlled run), ``atesd compare`` (agents x seeds) and
``atesd warmstart`` (build or inspect the tiny default's cached warm-start checkpoint).

Examples::

    atesd run --env ATESD-Surrogate-v0 --agent beta --seed 0 --out runs/
    atesd run --env ATESD-Surrogate-v0 --agent ppo --train-episodes 40 --env-kwargs '{"total_updates": 100}'
    atesd compare --env ATESD-Surrogate-v0 --agents beta,fixed:1.0,fixed:0.5,random --seeds 10 --out runs/cmp
    atesd warmstart                      # build (or find) the tiny default's warm start, print its report

SB3 agents (ppo, sac, a2c, td3, ppo-beta) first train for ``--train-episodes`` full runs on seeds
disjoint from the evaluated one, then act deterministically in one evaluated run. The ATESD agent
(``beta``...) learns online inside the evaluated run, as in the paper; ``--load``/``--save`` carry
its policy across runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from exposure_env.errors import AtesdError, ConfigError
from exposure_env.registration import SURROGATE_ID


def _env_kwargs(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--env-kwargs must be a JSON object; {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"--env-kwargs must be a JSON object; received {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atesd", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--env", default=SURROGATE_ID, help="env id (default: %(default)s)")
    common.add_argument("--env-kwargs", type=_env_kwargs, default={},
                        help='JSON object of gym.make kwargs, e.g. \'{"total_updates": 100}\'')
    common.add_argument("--train-episodes", type=int, default=20,
                        help="training runs before the evaluated run, SB3 agents only (default: %(default)s)")

    run = sub.add_parser("run", parents=[common], help="one controlled run with log, plot and summary")
    run.add_argument("--agent", default="beta", help="agent spec, e.g. beta, fixed:0.5, ppo (default: beta)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--out", default="runs", help="parent output directory (default: %(default)s)")
    run.add_argument("--name", default=None, help="run directory name (default: <agent>_seed<seed>)")
    run.add_argument("--tensorboard", action="store_true", help="also write TensorBoard scalars")
    run.add_argument("--no-plot", action="store_true", help="skip the PNG")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--load", default=None, help="controller checkpoint to start from")
    run.add_argument("--save", default=None, help="write the controller checkpoint here after the run")

    compare = sub.add_parser("compare", parents=[common], help="agents x seeds with IQM, CIs, P(improvement)")
    compare.add_argument("--agents", default="beta,fixed:1.0,fixed:0.5,random",
                         help="comma-separated agent specs (default: %(default)s)")
    compare.add_argument("--seeds", type=int, default=10, help="seeds per agent (default: %(default)s)")
    compare.add_argument("--seed-offset", type=int, default=0)
    compare.add_argument("--workers", type=int, default=2, help="parallel processes (default: %(default)s)")
    compare.add_argument("--reference", default="fixed:1.0", help="baseline for P(improvement) (default: OPSD)")
    compare.add_argument("--out", default="runs/compare", help="output directory (default: %(default)s)")

    warm = sub.add_parser("warmstart", help="build or inspect the cached warm start of ATESD-Qwen3-v0's tiny default")
    warm.add_argument("--env-kwargs", type=_env_kwargs, default={},
                      help="JSON object of ATESD-Qwen3-v0 backend kwargs that shape the recipe "
                           "(warmstart, task, model_size); the default recipe without it")
    warm.add_argument("--inspect", action="store_true",
                      help="only print the report of an already cached checkpoint (error if none)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "warmstart":
            return _warmstart(args)
        return _compare(args)
    except (AtesdError, ConfigError) as exc:
        print(f"atesd {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from agents.runner import RunConfig, run_controlled

    config = RunConfig(env_id=args.env, agent=args.agent, seed=args.seed, out_dir=args.out,
                       env_kwargs=args.env_kwargs, train_episodes=args.train_episodes, run_name=args.name,
                       tensorboard=args.tensorboard, progress_bar=not args.no_progress, plot=not args.no_plot,
                       load_path=args.load, save_path=args.save)
    summary = run_controlled(config)
    print(f"{summary.agent} seed {summary.seed}: final score {summary.final_score:.4f} "
          f"(initial {summary.initial_score:.4f}), mean alpha {summary.mean_alpha:.3f}, "
          f"controller/env time {summary.controller_share:.2%}; outputs in {summary.run_dir}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from agents.compare import CompareConfig, markdown_table, run_compare

    agents = tuple(a.strip() for a in args.agents.split(",") if a.strip())
    config = CompareConfig(env_id=args.env, agents=agents, seeds=args.seeds, seed_offset=args.seed_offset,
                           out_dir=args.out, env_kwargs=args.env_kwargs, train_episodes=args.train_episodes,
                           workers=args.workers, reference=args.reference)
    result = run_compare(config)
    print(markdown_table(result))
    print(f"wrote {args.out}/compare.json, compare.md, compare.png ({result.wall_time_s:.0f} s)")
    return 0


def _warmstart(args: argparse.Namespace) -> int:
    # The command line is the application layer: this one subcommand reaches the real backend,
    # lazily, so `atesd run` on the surrogate never imports torch's model stack.
    from distill_backend.config import backend_config_from_kwargs
    from distill_backend.warmstart import REPORT_FILE, ensure_warmstart, format_report, load_report, warmstart_dir

    recipe = backend_config_from_kwargs(args.env_kwargs).warmstart
    path = warmstart_dir(recipe)
    if args.inspect and not (path / REPORT_FILE).is_file():
        raise ConfigError("--inspect", "the key of an already built warm start", recipe.cache_key(),
                          hint=f"nothing cached at {path}; run `atesd warmstart` without --inspect to build it")
    if not (path / REPORT_FILE).is_file():
        print(f"building the warm start into {path} (cached for later runs)", file=sys.stderr)
    path = ensure_warmstart(recipe, progress=True)
    print(format_report(load_report(path)))
    print(f"checkpoint: {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
