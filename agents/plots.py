"""PNG plots of runs and comparisons (matplotlib with the Agg backend, imported on first use).

Plots are written atomically (:func:`exposure_env.io.atomic_write`). This module knows the result
records of :mod:`agents.records`, nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from agents.records import AgentStats, RunSummary, display_name
from agents.registry import FAMILIES, agent_family
from exposure_env.io import atomic_write


def pyplot():  # noqa: ANN201 - matplotlib.pyplot
    """matplotlib's pyplot on the file-only Agg backend (matplotlib is an optional extra, so it is
    imported here, on first use, and never by importing this module)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:  # noqa: ANN001 - a matplotlib Figure
    """Write ``fig`` as a PNG atomically and close it."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight"))
    pyplot().close(fig)


def plot_run(summary: RunSummary, path: Path) -> None:
    """Reveal ratio per window (steps) and the score curve, against student updates."""
    plt = pyplot()
    fig, ax_alpha = plt.subplots(figsize=(7, 3.5))
    starts = [0] + summary.updates[:-1]
    ax_alpha.step(starts, summary.alphas, where="post", color="tab:blue")
    ax_alpha.set_ylim(-0.02, 1.02)
    ax_alpha.set_xlabel("student updates")
    ax_alpha.set_ylabel("reveal ratio alpha (fraction of the reference shown)", color="tab:blue", fontsize=8)
    ax_score = ax_alpha.twinx()
    ax_score.plot([0] + summary.updates, [summary.initial_score] + summary.scores, color="tab:red")
    ax_score.set_ylabel("score (accuracy, 0-1)", color="tab:red", fontsize=8)
    ax_alpha.set_title(f"{display_name(summary.agent)} on {summary.env_id}, seed {summary.seed}: "
                       f"final score {summary.final_score:.3f}", fontsize=9)
    save_figure(fig, path)


FAMILY_COLORS = {"fixed": "tab:gray", "schedules": "tab:olive", "learned": "tab:blue"}


def curves_to_show(stats: Sequence[AgentStats], reference: str, featured: Sequence[str] = ("beta",)) -> list[str]:
    """The agents whose alpha curves a reader compares: the reference, the ``featured`` agents that
    were compared (by default the ATESD agent ``beta``) and the best (highest IQM) agent of each
    family. The other curves stay in the result JSON."""
    present = {s.agent for s in stats}
    chosen = [reference] + [a for a in featured if a in present and a != reference]
    for family in FAMILIES:
        members = [s for s in stats if agent_family(s.agent) == family and s.agent not in chosen]
        if members:
            chosen.append(max(members, key=lambda s: s.iqm).agent)
    return chosen


def plot_compare(stats: Sequence[AgentStats], mean_alpha_curves: Mapping[str, Sequence[float]],
                 reference: str, path: Path) -> None:
    """Left: IQM of the final score with 95% CIs, grouped by family (fixed / schedules / learned) and
    sorted by IQM inside each. Right: the mean reveal ratio over the run of the agents of
    :func:`curves_to_show`."""
    plt = pyplot()
    ordered = sorted(stats, key=lambda s: (FAMILIES.index(agent_family(s.agent)), -s.iqm))
    fig, (ax_iqm, ax_alpha) = plt.subplots(1, 2, figsize=(12, 0.4 * len(ordered) + 2.2),
                                           gridspec_kw={"width_ratios": [1.3, 1]})
    y = list(range(len(ordered)))
    colors = [FAMILY_COLORS[agent_family(s.agent)] for s in ordered]
    err = [[s.iqm - s.ci_low for s in ordered], [s.ci_high - s.iqm for s in ordered]]
    ax_iqm.barh(y, [s.iqm for s in ordered], xerr=err, color=colors, alpha=0.85, capsize=3)
    labels = [display_name(s.agent) + ("  (reference)" if s.agent == reference else "") for s in ordered]
    ax_iqm.set_yticks(y, labels, fontsize=8)
    ax_iqm.invert_yaxis()
    for i in range(1, len(ordered)):  # a line between families
        if agent_family(ordered[i].agent) != agent_family(ordered[i - 1].agent):
            ax_iqm.axhline(i - 0.5, color="black", linewidth=0.6)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in FAMILY_COLORS.values()]
    ax_iqm.legend(handles, list(FAMILY_COLORS), fontsize=7, loc="lower right")
    ax_iqm.set_xlabel("final score (accuracy, 0-1): IQM over seeds with 95% bootstrap CI")
    low, high = min(s.ci_low for s in ordered), max(s.ci_high for s in ordered)
    pad = 0.1 * (high - low) + 1e-3
    ax_iqm.set_xlim(max(0.0, low - pad), min(1.0, high + pad))
    for index, name in enumerate(curves_to_show(stats, reference)):
        curve = mean_alpha_curves.get(name)
        if curve:
            x = [(i + 0.5) / len(curve) for i in range(len(curve))]
            ax_alpha.plot(x, curve, label=f"{display_name(name)} ({agent_family(name)})",
                          color=plt.get_cmap("tab10").colors[index % 10], linestyle="--" if name == reference else "-")
    ax_alpha.set_xlabel("training progress t/T (fraction of the update budget)")
    ax_alpha.set_ylabel("reveal ratio alpha, mean over seeds")
    ax_alpha.set_ylim(-0.02, 1.02)
    ax_alpha.legend(fontsize=7, loc="best", title="reference, ATESD agent, best of each family", title_fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def plot_calibration(trajectories: Sequence[Mapping], path: Path, max_runs: int = 8) -> None:
    """Predicted against real trajectories of a surrogate fit: the probe NLL per update (top) and
    the in-run score per window (bottom), for up to ``max_runs`` runs (one colour each)."""
    plt = pyplot()
    runs = list(trajectories)[:max_runs]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    for i, run in enumerate(runs):
        colour = f"C{i % 10}"
        name = f"{run['label']} seed {run['seed']}"
        updates = range(1, len(run["probe_nll"]) + 1)
        top.plot(updates, run["probe_nll"], color=colour, alpha=0.45, lw=1, label=f"{name} (real)")
        top.plot(updates, run["probe_nll_predicted"], color=colour, lw=2, ls="--")
        ends = run["window_ends"]
        real = [(t, s) for t, s in zip(ends, run["score"]) if s is not None]
        bottom.plot([t for t, _ in real], [s for _, s in real], "o", color=colour, ms=3, alpha=0.6)
        bottom.plot(ends, run["score_predicted"], color=colour, lw=2, ls="--")
    top.set(ylabel="probe NLL (nats/token)", title="surrogate fit: real (thin, dots) vs predicted (dashed)")
    bottom.set(xlabel="student updates", ylabel="in-run score (Average@k)")
    top.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    save_figure(fig, path)
