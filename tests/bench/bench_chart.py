"""The README chart: pipeline throughput and latency, product against the hand-wired baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

LABELS = {
    "product": "Call Downloader",
    "baseline": "hand-wired, same concurrency",
    "baseline_serial": "hand-wired, one at a time",
}
COLORS = {"product": "#2b6cb0", "baseline": "#a0aec0", "baseline_serial": "#cbd5e0"}


def draw(results: dict[str, Any], path: Path) -> Path | None:
    pipeline = results.get("pipeline")
    single = results.get("latency")
    if not pipeline:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["product", "baseline", "baseline_serial"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    values = [pipeline[n]["calls_per_s"] for n in names]
    bars = left.bar([LABELS[n] for n in names], values, color=[COLORS[n] for n in names])
    left.bar_label(bars, fmt="%.1f")
    left.set_title(
        f"Throughput, {pipeline['calls']} small calls, {pipeline['concurrency']} client threads"
    )
    left.set_ylabel("calls per second (higher is better)")
    left.tick_params(axis="x", labelsize=8)

    groups = [("p50", "p50_s", pipeline), ("p99", "p99_s", pipeline)]
    if single:
        groups.append(("idle p50\n(one call)", "p50_s", single))
    width = 0.26
    for i, n in enumerate(names):
        xs = [g + (i - 1) * width for g in range(len(groups))]
        ys = [src[n][key] * 1000 for _, key, src in groups]
        b = right.bar(xs, ys, width, label=LABELS[n], color=COLORS[n])
        right.bar_label(b, fmt="%.0f", fontsize=7)
    right.set_xticks(range(len(groups)), [g[0] for g in groups])
    right.set_ylabel("ms from upload to the destination's receipt (lower is better)")
    right.set_title("Latency")
    right.legend(fontsize=8)
    fig.suptitle("Call Downloader pipeline vs a hand-wired pipeline of the same hops", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
