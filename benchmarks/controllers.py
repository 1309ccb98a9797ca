"""The controller study: which controller steers a distillation run best, how fast does it get
there, and how much of what a controller learned on the surrogate survives on the real backend?

    # 1. calibrated surrogate (>= 20 seeds): pre-trains the surrogate controllers, runs the sweep
    python -m benchmarks.controllers --env ATESD-Surrogate-v0 --params tiny-qwen3 --seeds 20 \
        --out benchmarks/results/controllers_surrogate.json
    # 2. real backend (>= 5 seeds): the same pre-trained controllers (read from the surrogate
    #    result), and the sim-to-real ratio against it
    python -m benchmarks.controllers --env ATESD-Qwen3-v0 --seeds 5 \
        --surrogate-result benchmarks/results/controllers_surrogate.json \
        --out benchmarks/results/controllers_qwen3.json

Steps (a thin layer over :func:`agents.compare.run_compare`, the code behind ``atesd compare``):

1. **Best fixed alpha from other seeds**: a fixed-exposure sweep (alpha in 0, .25, .5, .75, 1) on
   seeds ``sweep_seed_offset ..`` (``--sweep PATH`` reuses a sweep file instead; the result says
   whether its seeds overlap the evaluated ones), read by the ``best-fixed:PATH`` agent.
2. **Pre-training on the surrogate** (:mod:`agents.pretrain`, parameters ``pretrain_params``, the
   episode settings of the evaluated env): the ATESD Beta policy and SB3 PPO, unless
   ``--pretrained-beta`` / ``--pretrained-ppo`` (or the surrogate result) name existing folders.
3. **Evaluation**, every agent on seeds ``seed_offset ..`` (the same runs for all) with the same
   update budget (the env's ``total_updates``; pre-training happens on surrogate runs, outside
   it): OPSD (``fixed:1.0``), best fixed, random, a linear ramp, the paper's online ATESD agent in
   each reward mode, the pre-trained ATESD agent frozen and learning online, pre-trained PPO.
4. **Report** (``out`` JSON, Markdown and PNG with the same stem): IQM of the final score with a
   95% stratified-bootstrap CI (one task: seeds resampled), the probability of improvement over
   OPSD and over the best fixed alpha (bootstrap CIs), **sample efficiency** (student updates until
   the in-run score first reaches OPSD's final score on the same seed, mean with a 95% t-CI over
   seeds; a run that never reaches it counts as the full budget, so the mean is a lower bound,
   and the number of runs that reached it is given), the learning curves (mean score over seeds
   against updates), the reward-ablation order against the paper's, the study's goals, and with
   ``--surrogate-result`` the **sim-to-real ratio**: for each surrogate-trained controller, its
   IQM gain over OPSD here divided by its IQM gain over OPSD on the surrogate (bootstrap CI).

Rows are matched across the two results by *role* (``beta-pretrained``, ``beta:immediate``, ...),
not by spec, so checkpoint paths may differ.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from agents.compare import OPSD, CompareConfig, run_compare
from agents.plots import pyplot, save_figure
from agents.pretrained import manifest_path
from agents.records import RunSummary
from agents.runner import RunConfig
from exposure_env.commandline import parse_dataclass
from exposure_env.config import ENV_CONFIG_FIELDS, ExposureEnvConfig, split_env_kwargs
from exposure_env.errors import ConfigError
from exposure_env.io import atomic_write_text, to_plain, write_json
from exposure_env.registration import QWEN3_ID, SURROGATE_ID
from exposure_env.stats import gain_ratio_interval, improvement_interval, iqm_interval, t_interval

SWEEP_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
DEFAULT_AGENTS = (
    OPSD, "best-fixed:{sweep}", "random", "{ramp}",
    "beta:immediate", "beta:discounted", "beta:discounted+gt",  # the paper's online agent, reward ablation
    "beta-pretrained:{beta}", "beta-pretrained:{beta}:online", "ppo-pretrained:{ppo}",
)
PAPER_ABLATION = ("beta:immediate", "opsd", "beta:discounted", "beta:discounted+gt")
"""The paper's order, worst to best (AIME24: 52.22 < 57.20 < 58.06 < 59.17)."""


@dataclass(frozen=True)
class Args:
    """Command-line arguments (each field is a ``--flag``)."""

    env: str = SURROGATE_ID
    """Env id of the evaluation (``ATESD-Surrogate-v0`` or ``ATESD-Qwen3-v0``)."""
    params: str | None = None
    """Surrogate parameter set: of the evaluated env when it is the surrogate, and of the
    pre-training surrogate unless ``pretrain_params`` is given."""
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """JSON object of gym.make kwargs of the evaluated env. Give ``total_updates`` and
    ``hold_window`` explicitly for the real env: pre-training copies the episode fields from here."""
    seeds: int = 20
    """Evaluated seeds per agent."""
    seed_offset: int = 0
    """First evaluated seed."""
    out: str = "benchmarks/results/controllers_surrogate.json"
    """Result JSON; the Markdown, PNG and sweep file sit next to it with the same stem."""
    runs_dir: str = "runs/controllers"
    """Per-run logs, the sweep's runs and the pre-trained controllers (git-ignored), under ``<stem>/``."""
    workers: int = 2
    """Parallel worker processes of the sweep and the evaluation."""
    sweep: str = ""
    """An existing fixed-exposure sweep JSON (``alphas``, ``final_score_mean``); empty: run one."""
    sweep_seeds: int = 10
    """Seeds of the sweep that picks the best fixed alpha."""
    sweep_seed_offset: int = 1000
    """First sweep seed (disjoint from the evaluated seeds)."""
    ramp: str = "linear:0.2:1.0"
    """The linear-ramp baseline's spec."""
    pretrained_beta: str = ""
    """Folder of a pre-trained ATESD policy; empty: the surrogate result's, else pre-train one."""
    pretrained_ppo: str = ""
    """Folder of a pre-trained PPO; empty: the surrogate result's, else pre-train one."""
    pretrain_params: str | None = None
    """Surrogate parameter set of the pre-training (default: ``params``)."""
    pretrain_agent: str | None = None
    """Spec (and so credit) of the pre-trained ATESD agent; ``None``: ``PretrainConfig``'s default
    (whose description gives the measurement behind it)."""
    pretrain_runs: int = 4096
    """Surrogate runs of the ATESD agent's pre-training."""
    ppo_pretrain_runs: int = 4096
    """Surrogate runs of PPO's pre-training."""
    pretrain_num_envs: int = 64
    """Runs side by side (and runs per REINFORCE step) in pre-training."""
    ppo_overrides: Mapping[str, Any] = field(default_factory=dict)
    """JSON object of ``SB3AgentConfig`` fields for the pre-trained PPO."""
    agents: tuple[str, ...] = ()
    """Agent specs; empty: DEFAULT_AGENTS. Placeholders: {sweep}, {ramp}, {beta}, {ppo}."""
    surrogate_result: str = ""
    """A result JSON of this script on the surrogate: adds the sim-to-real ratio, and provides the
    pre-trained controllers when none are given."""
    redraw: bool = False
    """Run nothing: rewrite the Markdown and the PNG from the result JSON at ``out``."""


# -- roles: what an agent is, independent of checkpoint paths -----------------------------------
def role(spec: str) -> str:
    """The role of an agent spec in the study (``opsd``, ``best-fixed``, ``beta-pretrained:online``...)."""
    name, _, rest = spec.partition(":")
    if spec == OPSD:
        return "opsd"
    if name in ("best-fixed", "linear"):
        return "best-fixed" if name == "best-fixed" else "ramp"
    if name.endswith("-pretrained"):
        return name + (":online" if rest.endswith(":online") else "")
    return spec


def surrogate_trained(role_name: str) -> bool:
    return "-pretrained" in role_name


# -- records ---------------------------------------------------------------------------------------
class SampleEfficiency(NamedTuple):
    """Student updates until the in-run score first reaches OPSD's final score (same seed)."""

    mean: float
    low: float
    high: float
    reached: int
    """Runs that reached it within the budget (the others count as the full budget)."""
    runs: int
    budget: int
    per_seed: list[int | None]
    """Updates per seed; None where it was never reached."""

    @property
    def fraction_of_budget(self) -> float:
        return self.mean / self.budget


@dataclass(frozen=True)
class ControllerRow:
    """One controller's results."""

    agent: str
    role: str
    n: int
    iqm: float
    ci_low: float
    ci_high: float
    pi_vs_opsd: tuple[float, float, float]
    """P(improvement) over OPSD, with its 95% bootstrap CI."""
    pi_vs_best_fixed: tuple[float, float, float]
    sample_efficiency: SampleEfficiency
    mean_alpha: float
    final_scores: list[float]
    seeds: list[int]
    curve_updates: list[int]
    curve_mean: list[float]
    """Mean score over seeds after each window (update 0 = the initial score)."""
    alpha_curve: list[float]
    """Mean reveal ratio over seeds of each decision."""


# -- steps -----------------------------------------------------------------------------------------
def evaluated_env_kwargs(args: Args) -> dict[str, Any]:
    kwargs = dict(args.env_kwargs)
    if args.params is not None and args.env == SURROGATE_ID:
        kwargs["params"] = args.params
    return kwargs


def best_fixed_sweep(args: Args, env_kwargs: Mapping[str, Any], runs_dir: Path, path: Path) -> Path:
    """Run the fixed-exposure sweep on the sweep seeds and write it as a ``best-fixed`` file."""
    specs = tuple(OPSD if alpha == 1.0 else f"fixed:{alpha:g}" for alpha in SWEEP_ALPHAS)
    result = run_compare(CompareConfig(
        env_id=args.env, agents=specs, seeds=args.sweep_seeds, seed_offset=args.sweep_seed_offset,
        out_dir=str(runs_dir / "sweep"), stem="sweep", env_kwargs=dict(env_kwargs), train_episodes=0,
        workers=args.workers))
    rows = {row.agent: row for row in result.agents}
    write_json(path, {"env_id": args.env, "env_kwargs": dict(env_kwargs), "seeds": result.seeds,
                      "alphas": list(SWEEP_ALPHAS), "final_score_mean": [rows[s].mean for s in specs],
                      "final_score_std": [rows[s].std for s in specs],
                      "final_score_iqm": [rows[s].iqm for s in specs]})
    return path


def _episode(env_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The episode fields (``ExposureEnvConfig``) of gym.make kwargs."""
    return {k: v for k, v in env_kwargs.items() if k in ENV_CONFIG_FIELDS}


def same_episodes(first: Mapping[str, Any], second: Mapping[str, Any]) -> bool:
    """Whether two study results ran episodes of the same settings: the update budget each actually
    ran (the real backend takes it from the model's recipe when not given) and every other episode
    field, defaults filled in."""
    def settings(result: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
        fields = {**dataclasses.asdict(ExposureEnvConfig()), **_episode(result["env_kwargs"])}
        fields.pop("total_updates")
        return fields, result["controllers"][0]["sample_efficiency"]["budget"]

    return settings(first) == settings(second)


def sweep_seeds(sweep: Mapping[str, Any]) -> list[int] | None:
    """The seeds a sweep file was run on: its ``seeds`` list (this script's sweeps), or ``args.seeds``
    runs from ``args.seed_offset`` (``benchmarks/fixed_exposure.py``'s files); None if it does not say."""
    if isinstance(sweep.get("seeds"), list):
        return [int(s) for s in sweep["seeds"]]
    args = sweep.get("args", {})
    if isinstance(args.get("seeds"), int):
        return list(range(int(args.get("seed_offset", 0)), int(args.get("seed_offset", 0)) + args["seeds"]))
    return None


def _overlap(sweep: list[int] | None, evaluated: Sequence[int]) -> bool | None:
    return None if sweep is None else bool(set(sweep) & set(evaluated))


def pretrained_folders(args: Args, env_kwargs: Mapping[str, Any], runs_dir: Path) -> dict[str, str]:
    """The pre-trained ATESD policy and PPO: given, from the surrogate result, or trained now."""
    # torch: imported here, when needed (the results page imports this module for its tables)
    from agents.pretrain import PretrainConfig, pretrain

    previous: Mapping[str, str] = {}
    if args.surrogate_result:
        previous = json.loads(Path(args.surrogate_result).read_text()).get("pretrained", {})
    episode = _episode(env_kwargs)
    params = args.pretrain_params if args.pretrain_params is not None else args.params
    folders = {}
    for kind, given, agent, runs, overrides in (
            ("beta", args.pretrained_beta, args.pretrain_agent or PretrainConfig.agent, args.pretrain_runs, {}),
            ("ppo", args.pretrained_ppo, "ppo", args.ppo_pretrain_runs, dict(args.ppo_overrides))):
        folder = given or previous.get(kind, "")
        if folder and not manifest_path(folder).is_file():
            raise ConfigError(f"pretrained {kind} folder", "a folder written by python -m agents.pretrain", folder)
        if not folder:
            folder = str(runs_dir / "pretrained" / kind)
            pretrain(PretrainConfig(agent=agent, params=params, env_kwargs=episode, runs=runs,
                                    num_envs=args.pretrain_num_envs, out=folder, agent_overrides=overrides,
                                    progress=False))
        folders[kind] = folder
    return folders


def read_summaries(env_id: str, runs_dir: Path, agents: Sequence[str], seeds: Sequence[int]) -> dict[str, list[RunSummary]]:
    """The evaluated runs' ``summary.json`` files (where :func:`run_compare` had them written)."""
    names = {f.name for f in dataclasses.fields(RunSummary)}
    out: dict[str, list[RunSummary]] = {}
    for agent in agents:
        out[agent] = []
        for seed in seeds:
            data = json.loads((RunConfig(env_id=env_id, agent=agent, seed=seed, out_dir=str(runs_dir)).run_dir
                               / "summary.json").read_text())
            out[agent].append(RunSummary(**{k: v for k, v in data.items() if k in names}))
    return out


def updates_to_reach(run: RunSummary, target: float) -> int | None:
    """First update count at which the run's score is at least ``target`` (0: already at reset)."""
    if run.initial_score >= target:
        return 0
    for updates, score in zip(run.updates, run.scores):
        if score >= target:
            return int(updates)
    return None


def sample_efficiency(runs: Sequence[RunSummary], opsd: Sequence[RunSummary], budget: int) -> SampleEfficiency:
    per_seed = [updates_to_reach(run, ref.final_score) for run, ref in zip(runs, opsd)]
    counted = np.array([budget if u is None else u for u in per_seed], dtype=np.float64)
    interval = t_interval(counted)  # bounded by 0 and the budget, like what it measures
    return SampleEfficiency(interval.mean, max(0.0, interval.low), min(float(budget), interval.high), sum(u is not None for u in per_seed),
                            len(per_seed), budget, per_seed)


def score_curve(runs: Sequence[RunSummary]) -> tuple[list[int], list[float]]:
    """Mean score over runs after each window, with update 0 (a run that ended early holds its last score)."""
    longest = max(runs, key=lambda r: len(r.updates))
    grid = [0] + list(longest.updates)
    rows = []
    for run in runs:
        values = [run.initial_score] + list(run.scores)
        rows.append(values + [values[-1]] * (len(grid) - len(values)))
    return grid, np.mean(rows, axis=0).tolist()


def identical_runs(by_agent: Mapping[str, Sequence[RunSummary]]) -> list[list[str]]:
    """Groups of controllers (by role) whose runs were the same on every seed: the same score after
    every window, final score and total reward. Two controllers can act differently and still run
    the same student, e.g. two reveal ratios that reveal the same steps (:func:`exposure_levels_of`);
    a difference between them is then no difference at all."""
    groups: dict[tuple, list[str]] = {}
    for agent, runs in by_agent.items():
        key = tuple((r.seed, tuple(r.scores), r.final_score, r.total_reward) for r in runs)
        groups.setdefault(key, []).append(role(agent))
    return [names for names in groups.values() if len(names) > 1]


def exposure_levels_of(env_id: str, env_kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    """On the real backend, the distinct exposures the reveal ratio can give on its training problems
    (:func:`distill_backend.prompts.exposure_levels`): the reveal ratio is continuous, the revealed
    steps are not. ``None`` for the surrogate (its reveal ratio acts continuously)."""
    if env_id != QWEN3_ID:
        return None
    from distill_backend.backend import load_splits  # the real backend's own data, only here
    from distill_backend.config import backend_config_from_kwargs
    from distill_backend.prompts import exposure_levels, split_segments

    splits, _ = load_splits(backend_config_from_kwargs(split_env_kwargs(dict(env_kwargs))[1]))
    counts = sorted({len(split_segments(p.solution).steps) for p in splits.train})
    return {"segments_per_reference": counts, "levels": [list(level) for level in exposure_levels(counts)]}


def analyse(by_agent: Mapping[str, Sequence[RunSummary]], best_fixed: str, rng: np.random.Generator) -> list[ControllerRow]:
    opsd = by_agent[OPSD]
    budget = max(max(r.updates, default=0) for runs in by_agent.values() for r in runs)
    reference = np.array([r.final_score for r in opsd])
    best = np.array([r.final_score for r in by_agent[best_fixed]]) if best_fixed in by_agent else None
    rows = []
    for agent, runs in by_agent.items():
        scores = np.array([r.final_score for r in runs])
        iqm = iqm_interval(scores, rng)
        vs_best = improvement_interval(scores, best, rng) if best is not None else (math.nan,) * 3
        grid, curve = score_curve(runs)
        length = min(len(r.alphas) for r in runs)
        rows.append(ControllerRow(
            agent=agent, role=role(agent), n=len(runs), iqm=iqm.value, ci_low=iqm.low, ci_high=iqm.high,
            pi_vs_opsd=tuple(improvement_interval(scores, reference, rng)), pi_vs_best_fixed=tuple(vs_best),
            sample_efficiency=sample_efficiency(runs, opsd, budget), mean_alpha=float(np.mean([r.mean_alpha for r in runs])),
            final_scores=scores.tolist(), seeds=[r.seed for r in runs], curve_updates=grid, curve_mean=curve,
            alpha_curve=np.mean([r.alphas[:length] for r in runs], axis=0).tolist()))
    return rows


def goals(rows: Sequence[ControllerRow]) -> dict[str, Any]:
    """The study's goals per controller: beats OPSD and the best fixed alpha with CIs that do not
    overlap; reaches OPSD's final score in at most half the updates."""
    by_role = {r.role: r for r in rows}
    opsd, best = by_role.get("opsd"), by_role.get("best-fixed")
    out = {}
    for row in rows:
        if row.role in ("opsd", "best-fixed"):
            continue
        out[row.role] = {
            "beats_opsd_ci_disjoint": bool(opsd is not None and row.ci_low > opsd.ci_high),
            "beats_best_fixed_ci_disjoint": bool(best is not None and row.ci_low > best.ci_high),
            "reaches_opsd_final_in_half_the_updates": bool(row.sample_efficiency.fraction_of_budget <= 0.5),
        }
    return out


def ablation(rows: Sequence[ControllerRow]) -> dict[str, Any] | None:
    by_role = {r.role: r for r in rows}
    if not all(name in by_role for name in PAPER_ABLATION):
        return None
    iqms = [by_role[name].iqm for name in PAPER_ABLATION]
    observed = sorted(PAPER_ABLATION, key=lambda name: by_role[name].iqm)
    # strictly increasing in the paper's order: ties do not match an order the paper reports as strict
    matches = all(low < high for low, high in zip(iqms, iqms[1:]))
    return {"paper_order_low_to_high": list(PAPER_ABLATION), "observed_order_low_to_high": observed,
            "iqm": dict(zip(PAPER_ABLATION, iqms)), "matches_paper": matches}


def keeps_gain(ratio: float, surrogate_gain: float, share: float = 0.9) -> bool:
    """The sim-to-real goal: the real backend keeps at least ``share`` of a *positive* surrogate gain
    over OPSD. A controller that loses to OPSD on the surrogate has no gain to keep, whatever the
    ratio of two losses says (a ratio of 1.4 then means it lost more on the real backend)."""
    return bool(surrogate_gain > 0 and math.isfinite(ratio) and ratio >= share)


def sim_to_real(rows: Sequence[ControllerRow], surrogate: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """Per surrogate-trained role: real gain over OPSD / surrogate gain over OPSD (IQMs, bootstrap CI)."""
    here = {r.role: r for r in rows}
    there = {row["role"]: row for row in surrogate["controllers"]}
    out = {}
    for name, row in here.items():
        if not surrogate_trained(name) or name not in there or "opsd" not in here or "opsd" not in there:
            continue
        ratio = gain_ratio_interval(np.array(row.final_scores), np.array(here["opsd"].final_scores),
                                    np.array(there[name]["final_scores"]), np.array(there["opsd"]["final_scores"]), rng)
        surrogate_gain = there[name]["iqm"] - there["opsd"]["iqm"]
        out[name] = {"ratio": ratio.value, "ci_low": ratio.low, "ci_high": ratio.high,
                     "real_gain": row.iqm - here["opsd"].iqm, "surrogate_gain": surrogate_gain,
                     "keeps_90_percent": keeps_gain(ratio.value, surrogate_gain)}
    return out


# -- outputs ---------------------------------------------------------------------------------------
def markdown(payload: Mapping[str, Any]) -> str:
    rows = sorted(payload["controllers"], key=lambda r: -r["iqm"])
    seeds = payload["seeds"]
    budget = rows[0]["sample_efficiency"]["budget"]
    lines = [
        f"Controllers on `{payload['env_id']}` ({payload['env_kwargs']}), seeds {seeds[0]}..{seeds[-1]} "
        f"(n={len(seeds)}), the same budget of {budget} student updates for all. IQM of the final score with "
        "95% stratified-bootstrap CI; P(improvement) over OPSD and over the best fixed alpha "
        f"({payload['best_fixed_alpha']:g}, from a sweep on other seeds) with bootstrap CIs; updates to reach "
        "OPSD's final score (same seed), mean [95% t-CI], a run that never reaches it counting as the full "
        "budget (a lower bound), and how many runs reached it.",
        "",
        "| controller | IQM | 95% CI | P(> OPSD) | P(> best fixed) | updates to OPSD's final | reached | mean alpha |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        pi, pb, se = r["pi_vs_opsd"], r["pi_vs_best_fixed"], r["sample_efficiency"]
        lines.append(
            f"| `{r['role']}` | {r['iqm']:.4f} | [{r['ci_low']:.4f}, {r['ci_high']:.4f}] | {pi[0]:.2f} [{pi[1]:.2f}, "
            f"{pi[2]:.2f}] | {_num(pb[0])} [{_num(pb[1])}, {_num(pb[2])}] | {se['mean']:.0f} [{se['low']:.0f}, "
            f"{se['high']:.0f}] | {se['reached']}/{se['runs']} | {r['mean_alpha']:.2f} |")
    overlap = payload.get("sweep_overlaps_evaluation")
    if overlap is not False:
        lines += ["", "**Caveat**: the sweep behind the best fixed alpha " + (
            "ran on some of the evaluated seeds." if overlap else "does not say which seeds it ran on.")]
    levels = payload.get("exposure_levels")
    if levels:
        spans = ", ".join(f"[{low:.2f}, {high:.2f})" if high > low else f"{low:g}" for low, high in levels["levels"])
        lines += ["", f"Set-up check: the training references have {'/'.join(map(str, levels['segments_per_reference']))} "
                  f"reasoning steps, so the reveal ratio gives {len(levels['levels'])} distinct teacher contexts: "
                  f"{spans} (all reveal ratios of one interval reveal the same steps)."]
    if payload.get("identical_runs"):
        groups = "; ".join(" = ".join(f"`{name}`" for name in group) for group in payload["identical_runs"])
        lines += ["", f"Identical runs on every seed (same scores, final score and reward): {groups}. Any "
                  "difference between them in the table is no difference."]
    elif "identical_runs" in payload:
        lines += ["", "No two controllers ran identical runs."]
    if payload.get("ablation"):
        ab = payload["ablation"]
        observed = " <= ".join(f"`{name}` {ab['iqm'][name]:.4f}" for name in ab["observed_order_low_to_high"])
        lines += ["", f"Reward ablation, IQM low to high: {observed}; the paper's order is "
                  f"{' < '.join(ab['paper_order_low_to_high'])} (matches: {ab['matches_paper']})."]
    if payload.get("sim_to_real"):
        same = payload.get("same_episode_settings", True)
        lines += ["", "Sim-to-real: IQM gain over OPSD here / on the surrogate "
                  f"(`{payload.get('surrogate_result', '')}`), 95% bootstrap CI (seeds paired within each env)"
                  + ("." if same else "; **the two results ran episodes of different lengths**."), "",
                  "| controller | real gain | surrogate gain | ratio | 95% CI | keeps >= 90% of a positive gain |",
                  "|---|---|---|---|---|---|"]
        for name, s in payload["sim_to_real"].items():
            kept = keeps_gain(s["ratio"] if s["ratio"] is not None else math.nan, s["surrogate_gain"])
            lines.append(f"| `{name}` | {s['real_gain']:+.4f} | {s['surrogate_gain']:+.4f} | {_num(s['ratio'])} | "
                         f"[{_num(s['ci_low'])}, {_num(s['ci_high'])}] | {'yes' if kept else 'no'} |")
    lines += ["", "Goals (CIs disjoint from OPSD's / the best fixed alpha's; OPSD's final score within half the "
              "updates): " + "; ".join(f"`{k}` " + ", ".join(n for n, ok in v.items() if ok) if any(v.values())
                                       else f"`{k}` none" for k, v in payload["goals"].items()) + "."]
    return "\n".join(lines) + "\n"


def _num(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.2f}"


def plot(payload: Mapping[str, Any], path: Path) -> None:
    """IQM bars with CIs, learning curves (mean score against updates, OPSD's final IQM dashed) and
    the mean reveal ratio of each decision."""
    plt = pyplot()
    rows = sorted(payload["controllers"], key=lambda r: -r["iqm"])
    fig, (ax_bar, ax_curve, ax_alpha) = plt.subplots(1, 3, figsize=(17, 0.35 * len(rows) + 3.2),
                                                     gridspec_kw={"width_ratios": [1.1, 1.3, 1]})
    colors = {r["role"]: plt.get_cmap("tab20").colors[i % 20] for i, r in enumerate(rows)}
    colors["opsd"] = "black"
    y = list(range(len(rows)))
    ax_bar.barh(y, [r["iqm"] for r in rows], color=[colors[r["role"]] for r in rows],
                xerr=[[r["iqm"] - r["ci_low"] for r in rows], [r["ci_high"] - r["iqm"] for r in rows]], capsize=3)
    ax_bar.set_yticks(y, [r["role"] for r in rows], fontsize=8)
    ax_bar.invert_yaxis()
    low, high = min(r["ci_low"] for r in rows), max(r["ci_high"] for r in rows)
    ax_bar.set_xlim(max(0.0, low - 0.1 * (high - low) - 1e-3), min(1.0, high + 0.1 * (high - low) + 1e-3))
    ax_bar.set_xlabel("final score (0-1): IQM over seeds, 95% bootstrap CI")
    opsd = next((r for r in rows if r["role"] == "opsd"), None)
    for r in rows:
        style = "--" if r["role"] == "opsd" else "-"
        ax_curve.plot(r["curve_updates"], r["curve_mean"], style, color=colors[r["role"]], label=r["role"], linewidth=1.2)
        x = [(i + 0.5) / len(r["alpha_curve"]) for i in range(len(r["alpha_curve"]))]
        ax_alpha.plot(x, r["alpha_curve"], style, color=colors[r["role"]], linewidth=1.0)
    if opsd is not None:
        ax_curve.axhline(opsd["iqm"], color="black", linestyle=":", linewidth=0.8, label="OPSD final (IQM)")
    ax_curve.set_xlabel("student updates")
    ax_curve.set_ylabel("score (0-1), mean over seeds")
    ax_curve.legend(fontsize=7, loc="best")
    ax_alpha.set_xlabel("training progress t/T")
    ax_alpha.set_ylabel("reveal ratio alpha, mean over seeds")
    ax_alpha.set_ylim(-0.02, 1.02)
    fig.suptitle(f"Controllers on {payload['env_id']} (n={len(payload['seeds'])} seeds)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def write_outputs(payload: Mapping[str, Any], out: Path) -> None:
    write_json(out, payload)
    atomic_write_text(out.with_suffix(".md"), markdown(payload))
    plot(payload, out.with_suffix(".png"))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_dataclass(Args, argv, __doc__)
    out = Path(args.out)
    if args.redraw:
        payload = json.loads(out.read_text())
        write_outputs(payload, out)
        return payload
    start = time.perf_counter()
    env_kwargs = evaluated_env_kwargs(args)
    runs_dir = Path(args.runs_dir) / out.stem
    seeds = list(range(args.seed_offset, args.seed_offset + args.seeds))
    sweep = Path(args.sweep) if args.sweep else best_fixed_sweep(args, env_kwargs, runs_dir,
                                                                 out.with_name(f"{out.stem}_sweep.json"))
    sweep_data = json.loads(sweep.read_text())
    needs = " ".join(args.agents or DEFAULT_AGENTS)
    folders = pretrained_folders(args, env_kwargs, runs_dir) if "{beta}" in needs or "{ppo}" in needs else {}
    specs = tuple(s.format(sweep=sweep, ramp=args.ramp, beta=folders.get("beta", ""), ppo=folders.get("ppo", ""))
                  for s in (args.agents or DEFAULT_AGENTS))
    eval_dir = runs_dir / "runs"
    run_compare(CompareConfig(env_id=args.env, agents=specs, seeds=args.seeds, seed_offset=args.seed_offset,
                              out_dir=str(runs_dir), runs_dir=str(eval_dir), stem="compare", env_kwargs=env_kwargs,
                              train_episodes=0, workers=args.workers, reference=OPSD))
    by_agent = read_summaries(args.env, eval_dir, specs, seeds)
    rng = np.random.default_rng(0)
    best_fixed = next(s for s in specs if role(s) == "best-fixed") if any(role(s) == "best-fixed" for s in specs) else ""
    rows = analyse(by_agent, best_fixed, rng)
    alphas, means = sweep_data["alphas"], sweep_data["final_score_mean"]
    payload: dict[str, Any] = {
        "env_id": args.env, "env_kwargs": env_kwargs, "seeds": seeds, "args": to_plain(dataclasses.asdict(args)),
        "sweep_file": str(sweep), "best_fixed_alpha": float(alphas[int(np.nanargmax(np.array(means, dtype=float)))]),
        "sweep_overlaps_evaluation": _overlap(sweep_seeds(sweep_data), seeds),
        "pretrained": folders, "controllers": [to_plain(dataclasses.asdict(r)) for r in rows],
        "ablation": ablation(rows), "goals": goals(rows),
        "identical_runs": identical_runs(by_agent), "exposure_levels": exposure_levels_of(args.env, env_kwargs),
    }
    for row, plain in zip(rows, payload["controllers"]):
        plain["sample_efficiency"] = to_plain(row.sample_efficiency._asdict()) | {
            "fraction_of_budget": row.sample_efficiency.fraction_of_budget}
    if args.surrogate_result:
        surrogate = json.loads(Path(args.surrogate_result).read_text())
        payload["surrogate_result"] = args.surrogate_result
        payload["sim_to_real"] = sim_to_real(rows, surrogate, rng)
        # The pre-trained controllers saw the surrogate's episodes: were they the same length here?
        payload["same_episode_settings"] = same_episodes(surrogate, payload)
    # this invocation (finished runs are reused) and the runs themselves, wherever they ran
    payload["wall_time_s"] = time.perf_counter() - start
    payload["runs_wall_time_s"] = float(sum(r.wall_time_s for runs in by_agent.values() for r in runs))
    write_outputs(payload, out)
    print(out.with_suffix(".md").read_text())
    return payload


if __name__ == "__main__":
    main()
