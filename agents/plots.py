"""PNG plots of runs and comparisons (matplotlib with the Agg backend, imported on first use).

Plots are written atomically (:func:`exposure_env.io.atomic_write`). This module knows the result
records of :mod:`agents.records`, nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from agents.records import AgentStats, RunSummary, display_name
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
    ax_alpha.step(starts, summary.alphas, where="post", color="tab:blue", label="reveal ratio alpha")
    ax_alpha.set_ylim(-0.02, 1.02)
    ax_alpha.set_xlabel("student updates")
    ax_alpha.set_ylabel("alpha", color="tab:blue")
    ax_score = ax_alpha.twinx()
    ax_score.plot([0] + summary.updates, [summary.initial_score] + summary.scores, color="tab:red", label="score")
    ax_score.set_ylabel("score", color="tab:red")
    ax_alpha.set_title(f"{display_name(summary.agent)} on {summary.env_id}, seed {summary.seed}: final score {summary.final_score:.3f}")
    save_figure(fig, path)


def plot_compare(stats: Sequence[AgentStats], mean_alpha_curves: Mapping[str, Sequence[float]],
                 reference: str, path: Path) -> None:
    """Left: IQM of the final score with 95% CIs. Right: mean alpha over the run per agent."""
    plt = pyplot()
    fig, (ax_iqm, ax_alpha) = plt.subplots(1, 2, figsize=(12, 0.45 * len(stats) + 2.5))
    names = [display_name(s.agent) for s in stats]
    y = range(len(stats))
    iqm = [s.iqm for s in stats]
    err = [[s.iqm - s.ci_low for s in stats], [s.ci_high - s.iqm for s in stats]]
    colors = ["tab:red" if s.agent == reference else "tab:blue" for s in stats]
    ax_iqm.barh(list(y), iqm, xerr=err, color=colors, alpha=0.8, capsize=3)
    ax_iqm.set_yticks(list(y), names)
    ax_iqm.invert_yaxis()
    ax_iqm.set_xlabel("final score: IQM over seeds, 95% bootstrap CI")
    low = min(s.ci_low for s in stats)
    high = max(s.ci_high for s in stats)
    pad = 0.1 * (high - low) + 1e-3
    ax_iqm.set_xlim(low - pad, high + pad)
    # tab20 keeps up to 20 agents apart (the default cycle repeats after 10).
    ax_alpha.set_prop_cycle(color=plt.get_cmap("tab20").colors[: max(1, len(mean_alpha_curves))])
    for name, curve in mean_alpha_curves.items():
        x = [(i + 0.5) / len(curve) for i in range(len(curve))]
        ax_alpha.plot(x, curve, label=display_name(name))
    ax_alpha.set_xlabel("training progress t/T")
    ax_alpha.set_ylabel("mean alpha over seeds")
    ax_alpha.set_ylim(-0.02, 1.02)
    ax_alpha.legend(fontsize=7, loc="best")
    save_figure(fig, path)
