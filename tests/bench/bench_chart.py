"""The README chart: pipeline throughput and latency, product against the hand-wired baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

LABELS = {
    "product": "Call Downloader",
    "baseline": "hand-wired,\nsame concurrency",
    "baseline_serial": "hand-wired,\none at a time",
}
COLORS = {"product": "#2b6cb0", "baseline": "#a0aec0", "baseline_serial": "#cbd5e0"}
NAMES = ("product", "baseline", "baseline_serial")


def draw(results: dict[str, Any], path: Path) -> Path | None:
    pipeline = results.get("pipeline")
    single = results.get("latency")
    if not pipeline:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 3 if single else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 4.4))
    labels = [LABELS[n] for n in NAMES]
    colors = [COLORS[n] for n in NAMES]

    ax = axes[0]
    bars = ax.bar(labels, [pipeline[n]["calls_per_s"] for n in NAMES], color=colors)
    ax.bar_label(bars, fmt="%.1f")
    ax.set_title(f"Throughput ({pipeline['calls']} calls)\ncalls/s, higher is better", fontsize=10)

    ax = axes[1]
    width = 0.26
    for i, n in enumerate(NAMES):
        ys = [pipeline[n]["p50_s"] * 1000, pipeline[n]["p99_s"] * 1000]
        b = ax.bar([x + (i - 1) * width for x in (0, 1)], ys, width, color=COLORS[n])
        ax.bar_label(b, fmt="%.0f", fontsize=7)
    ax.set_yscale("log")
    ax.set_xticks([0, 1], ["p50", "p99"])
    ax.set_title("Upload to receipt under that load\nms (log scale), lower is better", fontsize=10)

    if single:
        ax = axes[2]
        bars = ax.bar(labels, [single[n]["p50_s"] * 1000 for n in NAMES], color=colors)
        ax.bar_label(bars, fmt="%.0f")
        ax.set_title("One call on an idle system, p50\nms, lower is better", fontsize=10)
    for ax in axes:
        ax.tick_params(axis="x", labelsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLORS[n]) for n in NAMES]
    fig.legend(handles, [LABELS[n].replace("\n", " ") for n in NAMES], loc="lower center", ncol=3)
    fig.suptitle(
        "Pipeline: Call Downloader (make run) vs a hand-wired pipeline of the same hops, "
        f"same machine and run ({results.get('machine', {}).get('cpus', '?')} CPUs)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.07, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
